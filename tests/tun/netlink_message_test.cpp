// SPDX-License-Identifier: MIT
// rtnetlink message bytes. Expected requests are iproute2's own bytes (captured with
// `strace -e write=3 ip ...` on Linux 6.x, sequence 0x6b033ba5, ifindex 2) unless a comment
// says where we differ; received messages are kernel captures (`strace -e read=3`) or are
// built field by field from linux/rtnetlink.h. Netlink is host byte order: these bytes are
// those of a little-endian host.
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code with it

#include <bit>
#include <cstring>
#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string>
#include <variant>
#include <vector>

#include "tests/support/hex.hpp"
#include "tun/netlink_message.hpp"

static_assert(std::endian::native == std::endian::little, "expected bytes below are little-endian netlink");

using namespace mipsec;
using namespace mipsec::test;
using tun::NetlinkMessageView;

namespace {

constexpr std::uint32_t seq = 0x6b033ba5;
constexpr std::size_t rtm_type_offset = 16 + 7;  // nlmsghdr, then rtmsg's rtm_type
const core::Ipv4Prefix addr_10_1_2_3_24{core::Ipv4Address::from_octets(10, 1, 2, 3), 24};

/// The first n bytes of a message with nlmsg_len patched to n: a message that is
/// self-consistent at the netlink level but cut short inside its payload.
Bytes cut(const Bytes& msg, std::size_t n) {
    Bytes out(msg.begin(), msg.begin() + static_cast<std::ptrdiff_t>(n));
    auto len = static_cast<std::uint32_t>(n);
    std::memcpy(out.data(), &len, 4);
    return out;
}

NetlinkMessageView view(const Bytes& b) {
    auto v = NetlinkMessageView::check(b);
    REQUIRE(v);
    return *v;
}

Bytes value(core::Result<std::vector<std::uint8_t>> r) {
    REQUIRE(r);
    return std::move(r).value();
}

// Kernel notification for `ip addr add 10.1.2.3/24 dev d0` (ifindex 2): IFA_ADDRESS,
// IFA_LOCAL, IFA_LABEL "d0", IFA_FLAGS permanent, IFA_CACHEINFO.
const Bytes captured_newaddr =
    "4c000000 1400 0000 af3b036b 5d1b0000"
    "02 18 80 00 02000000"
    "0800 0100 0a010203"
    "0800 0200 0a010203"
    "0700 0300 64300000"
    "0800 0800 80000000"
    "1400 0600 ffffffff ffffffff 7e830200 7e830200"_hex;

// RTM_NEWLINK built by hand: ifindex 7, ARPHRD_NONE, flags UP|POINTOPOINT|RUNNING|NOARP|
// MULTICAST|LOWER_UP, IFLA_IFNAME "mtun0", IFLA_MTU 1400, IFLA_TXQLEN 500 (ignored).
const Bytes built_newlink =
    "3c000000 1000 0000 00000000 00000000"
    "00 00 feff 07000000 d1100100 00000000"
    "0a00 0300 6d74756e30 000000"
    "0800 0400 78050000"
    "0800 0d00 f4010000"_hex;

Bytes link_message(std::uint16_t type, std::uint32_t ifindex, std::uint32_t flags, std::string_view name) {
    tun::NetlinkRequest m(type, 0, 0);
    auto ifi = m.add_fixed(16);
    std::memcpy(ifi.data() + 4, &ifindex, 4);
    std::memcpy(ifi.data() + 8, &flags, 4);
    m.add_attr_string(IFLA_IFNAME, name);
    return std::move(m).finish();
}

}  // namespace

TEST_CASE("NetlinkMessageView reads the header of a captured RTM_NEWADDR") {
    auto v = view(captured_newaddr);
    CHECK(v.length() == 76);
    CHECK(v.type() == RTM_NEWADDR);
    CHECK(v.flags() == 0);
    CHECK(v.seq() == 0x6b033baf);
    CHECK(v.port_id() == 0x1b5d);
    CHECK(v.payload().size() == 60);
    CHECK(v.message().size() == 76);
}

TEST_CASE("NetlinkMessageView rejects every truncation and impossible lengths") {
    for (std::size_t n = 0; n < captured_newaddr.size(); ++n) {
        CAPTURE(n);
        CHECK_FALSE(NetlinkMessageView::check(std::span(captured_newaddr).first(n)));
    }
    CHECK(NetlinkMessageView::check(captured_newaddr));
    struct Row {
        const char* name;
        Bytes bytes;
    };
    const Row rows[] = {
        {"nlmsg_len below the header", "0f000000 0000 0000 00000000 00000000"_hex},
        {"nlmsg_len zero", "00000000 0000 0000 00000000 00000000"_hex},
        {"nlmsg_len past the end", "11000000 0000 0000 00000000 00000000"_hex},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        CHECK_FALSE(NetlinkMessageView::check(row.bytes));
    }
    // A longer buffer is fine: the view covers nlmsg_len bytes only.
    Bytes longer = captured_newaddr;
    longer.resize(100, 0xEE);
    CHECK(view(longer).message().size() == 76);
}

TEST_CASE("MessageReader walks a multipart datagram and stops at garbage") {
    Bytes two = built_newlink;
    two.insert(two.end(), captured_newaddr.begin(), captured_newaddr.end());
    tun::MessageReader r(two);
    auto first = r.next();
    auto second = r.next();
    REQUIRE(first);
    REQUIRE(second);
    CHECK(first->type() == RTM_NEWLINK);
    CHECK(second->type() == RTM_NEWADDR);
    CHECK_FALSE(r.next());
    CHECK_FALSE(r.malformed());

    // A message whose length is not a multiple of 4 is followed by padding.
    Bytes odd = "11000000 0300 0000 00000000 00000000 aa 000000"_hex;
    odd.insert(odd.end(), captured_newaddr.begin(), captured_newaddr.end());
    tun::MessageReader r2(odd);
    REQUIRE(r2.next());
    auto after = r2.next();
    REQUIRE(after);
    CHECK(after->type() == RTM_NEWADDR);

    Bytes garbage = captured_newaddr;
    garbage.insert(garbage.end(), {0x01, 0x02, 0x03});
    tun::MessageReader r3(garbage);
    CHECK(r3.next());
    CHECK_FALSE(r3.next());
    CHECK(r3.malformed());
}

TEST_CASE("AttributeReader: values, padding, flags masked, malformed runs") {
    const Bytes run = "0800 0400 78050000  0700 0300 643000 00  0800 0180 0a000001  0400 0900"_hex;
    tun::AttributeReader r(run);
    auto mtu = r.next();
    auto name = r.next();
    auto nested = r.next();
    auto empty = r.next();
    REQUIRE(mtu);
    REQUIRE(name);
    REQUIRE(nested);
    REQUIRE(empty);
    CHECK_FALSE(r.next());
    CHECK_FALSE(r.malformed());
    CHECK(mtu->type == 4);
    CHECK(mtu->as_u32() == 1400u);
    CHECK(name->type == 3);
    CHECK(name->as_string() == "d0");
    CHECK_FALSE(name->as_u32());
    CHECK(nested->type == 1);  // NLA_F_NESTED (0x8000) masked off
    CHECK(nested->as_ipv4() == core::Ipv4Address::from_octets(10, 0, 0, 1));
    CHECK(empty->payload.empty());

    struct Row {
        const char* name;
        Bytes bytes;
    };
    const Row rows[] = {
        {"half a header", "0800"_hex},
        {"length below the header", "0300 0100 00000000"_hex},
        {"length past the end", "0900 0100 00000000"_hex},
        {"good then cut", "0800 0400 78050000 0800 0400 7805"_hex},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        tun::AttributeReader bad(row.bytes);
        while (bad.next()) {
        }
        CHECK(bad.malformed());
    }
}

TEST_CASE("NetlinkRequest writes header, fixed part and padded attributes") {
    tun::NetlinkRequest m(0x1234, 0x0105, 0x01020304);
    auto fixed = m.add_fixed(5);  // padded to 8
    CHECK(fixed.size() == 5);
    fixed[0] = 0xAA;
    fixed[4] = 0xBB;
    m.add_attr(7, "010203"_hex);
    m.add_attr_u32(8, 0x11223344);
    m.add_attr_ipv4(9, core::Ipv4Address::from_octets(192, 0, 2, 1));
    m.add_attr_string(10, "tun");
    CHECK(to_hex(std::move(m).finish()) ==
          to_hex("38000000 3412 0501 04030201 00000000"
                 "aa000000 bb000000"
                 "0700 0700 010203 00"
                 "0800 0800 44332211"
                 "0800 0900 c0000201"
                 "0800 0a00 74756e00"_hex));
}

TEST_CASE("request encoders produce iproute2's bytes") {
    const auto ifx = 2u;
    struct Row {
        const char* name;
        Bytes got;
        Bytes want;
    };
    const Row rows[] = {
        {"ip addr add 10.1.2.3/24 dev d0",
         value(tun::encode_address(seq, tun::NetlinkOp::Add, ifx, addr_10_1_2_3_24)),
         "28000000 1400 0506 a53b036b 00000000 02180000 02000000 0800 0200 0a010203 0800 0100 0a010203"_hex},
        {"ip addr del 10.1.2.3/24 dev d0",
         value(tun::encode_address(seq, tun::NetlinkOp::Delete, ifx, addr_10_1_2_3_24)),
         "28000000 1500 0500 a53b036b 00000000 02180000 02000000 0800 0200 0a010203 0800 0100 0a010203"_hex},
        {"ip link set d0 up", tun::encode_set_link(seq, ifx, {.mtu = std::nullopt, .up = true}),
         "20000000 1000 0500 a53b036b 00000000 00000000 02000000 01000000 01000000"_hex},
        {"ip link set d0 down", tun::encode_set_link(seq, ifx, {.mtu = std::nullopt, .up = false}),
         "20000000 1000 0500 a53b036b 00000000 00000000 02000000 00000000 01000000"_hex},
        {"ip link set d0 mtu 1400", tun::encode_set_link(seq, ifx, {.mtu = 1400, .up = std::nullopt}),
         "28000000 1000 0500 a53b036b 00000000 00000000 02000000 00000000 00000000 0800 0400 78050000"_hex},
        // iproute2 marks routes RTPROT_BOOT (03); ours are RTPROT_STATIC (04).
        {"ip route add 10.9.0.0/16 dev d0 src 10.1.2.3",
         value(tun::encode_route(seq, tun::NetlinkOp::Add,
                                 {.destination = *core::Ipv4Prefix::parse("10.9.0.0/16"),
                                  .ifindex = ifx,
                                  .gateway = std::nullopt,
                                  .table = std::nullopt,
                                  .source = core::Ipv4Address::parse("10.1.2.3")})),
         "34000000 1800 0506 a53b036b 00000000 02 10 00 00 fe 04 fd 01 00000000"
         "0800 0100 0a090000 0800 0700 0a010203 0800 0400 02000000"_hex},
        {"ip route add 10.8.0.0/16 via 10.1.2.1 table 1000",
         value(tun::encode_route(seq, tun::NetlinkOp::Add,
                                 {.destination = *core::Ipv4Prefix::parse("10.8.0.0/16"),
                                  .ifindex = 0,
                                  .gateway = core::Ipv4Address::parse("10.1.2.1"),
                                  .table = 1000,
                                  .source = std::nullopt})),
         "34000000 1800 0506 a53b036b 00000000 02 10 00 00 00 04 00 01 00000000"
         "0800 0100 0a080000 0800 0500 0a010201 0800 0f00 e8030000"_hex},
        {"ip route del 10.9.0.0/16 dev d0",
         value(tun::encode_route(seq, tun::NetlinkOp::Delete,
                                 {.destination = *core::Ipv4Prefix::parse("10.9.0.0/16"), .ifindex = ifx})),
         "2c000000 1900 0500 a53b036b 00000000 02 10 00 00 fe 00 ff 00 00000000"
         "0800 0100 0a090000 0800 0400 02000000"_hex},
        // Not from iproute2 (it adds RTEXT_FILTER_VF too); built from linux/rtnetlink.h.
        {"RTM_GETLINK by name d0", value(tun::encode_get_link(seq, "d0")),
         "30000000 1200 0100 a53b036b 00000000 00000000 00000000 00000000 00000000"
         "0800 1d00 08000000 0700 0300 64300000"_hex},
        {"RTM_GETLINK by index 2", tun::encode_get_link(seq, ifx),
         "28000000 1200 0100 a53b036b 00000000 00000000 02000000 00000000 00000000 0800 1d00 08000000"_hex},
        {"RTM_GETADDR dump, IPv4", tun::encode_get_addresses(seq),
         "18000000 1600 0103 a53b036b 00000000 02000000 00000000"_hex},
        {"default route via 10.1.2.1, no RTA_DST",
         value(tun::encode_route(seq, tun::NetlinkOp::Add,
                                 {.destination = *core::Ipv4Prefix::parse("0.0.0.0/0"),
                                  .gateway = core::Ipv4Address::parse("10.1.2.1")})),
         "24000000 1800 0506 a53b036b 00000000 02 00 00 00 fe 04 00 01 00000000 0800 0500 0a010201"_hex},
        {"ip rule add not fwmark 0x6d69 table 1000 priority 32000",
         value(tun::encode_rule(seq, tun::NetlinkOp::Add, {.table = 1000, .priority = 32000, .fwmark = 0x6d69, .invert = true})),
         "34000000 2000 0506 a53b036b 00000000 02 00 00 00 00 00 00 01 02000000"
         "0800 0a00 696d0000 0800 0f00 e8030000 0800 0600 007d0000"_hex},
        {"ip rule del not fwmark 0x6d69 table 1000 priority 32000",
         value(tun::encode_rule(seq, tun::NetlinkOp::Delete, {.table = 1000, .priority = 32000, .fwmark = 0x6d69, .invert = true})),
         "34000000 2100 0500 a53b036b 00000000 02 00 00 00 00 00 00 01 02000000"
         "0800 0a00 696d0000 0800 0f00 e8030000 0800 0600 007d0000"_hex},
        // Not from iproute2 (table < 256 also goes in the header; mask given): linux/fib_rules.h.
        {"rule fwmark 0x10/0xf0 table 100",
         value(tun::encode_rule(seq, tun::NetlinkOp::Add, {.table = 100, .fwmark = 0x10, .fwmask = 0xf0})),
         "34000000 2000 0506 a53b036b 00000000 02 00 00 00 64 00 00 01 00000000"
         "0800 0a00 10000000 0800 1000 f0000000 0800 0f00 64000000"_hex},
        {"ip route add default via 198.51.100.1 dev d0 onlink",
         value(tun::encode_route(seq, tun::NetlinkOp::Add,
                                 {.destination = *core::Ipv4Prefix::parse("0.0.0.0/0"),
                                  .ifindex = ifx,
                                  .gateway = core::Ipv4Address::parse("198.51.100.1"),
                                  .onlink = true})),
         "2c000000 1800 0506 a53b036b 00000000 02 00 00 00 fe 04 00 01 04000000"
         "0800 0500 c6336401 0800 0400 02000000"_hex},
        // iproute2 sends RTPROT_BOOT (03) where we send RTPROT_STATIC (04).
        {"ip route add unreachable 10.9.0.0/16 metric 4095",
         value(tun::encode_route(seq, tun::NetlinkOp::Add,
                                 {.destination = *core::Ipv4Prefix::parse("10.9.0.0/16"),
                                  .type = tun::RouteType::Unreachable,
                                  .metric = 4095})),
         "2c000000 1800 0506 a53b036b 00000000 02 10 00 00 fe 04 00 07 00000000"
         "0800 0100 0a090000 0800 0600 ff0f0000"_hex},
        {"ip route add unreachable 10.8.0.0/16 metric 4095 table 1000",
         value(tun::encode_route(seq, tun::NetlinkOp::Add,
                                 {.destination = *core::Ipv4Prefix::parse("10.8.0.0/16"),
                                  .table = 1000,
                                  .type = tun::RouteType::Unreachable,
                                  .metric = 4095})),
         "34000000 1800 0506 a53b036b 00000000 02 10 00 00 00 04 00 07 00000000"
         "0800 0100 0a080000 0800 0600 ff0f0000 0800 0f00 e8030000"_hex},
        {"ip route del unreachable 10.9.0.0/16 metric 4095",
         value(tun::encode_route(seq, tun::NetlinkOp::Delete,
                                 {.destination = *core::Ipv4Prefix::parse("10.9.0.0/16"),
                                  .type = tun::RouteType::Unreachable,
                                  .metric = 4095})),
         "2c000000 1900 0500 a53b036b 00000000 02 10 00 00 fe 00 ff 07 00000000"
         "0800 0100 0a090000 0800 0600 ff0f0000"_hex},
        {"host bits of the destination are cleared",
         value(tun::encode_route(seq, tun::NetlinkOp::Delete,
                                 {.destination = *core::Ipv4Prefix::parse("10.9.1.1/16"), .ifindex = ifx})),
         "2c000000 1900 0500 a53b036b 00000000 02 10 00 00 fe 00 ff 00 00000000"
         "0800 0100 0a090000 0800 0400 02000000"_hex},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        CHECK(to_hex(row.got) == to_hex(row.want));
    }
}

TEST_CASE("request encoders refuse what the kernel would refuse") {
    CHECK(tun::encode_get_link(1, "").error() == core::Errc::InvalidArgument);
    CHECK(tun::encode_get_link(1, "sixteen-chars-xx").error() == core::Errc::InvalidArgument);
    CHECK(tun::encode_get_link(1, "fifteen-chars-x"));
    CHECK(tun::encode_address(1, tun::NetlinkOp::Add, 2, {core::Ipv4Address{1}, 33}).error() ==
          core::Errc::InvalidArgument);
    CHECK(tun::encode_address(1, tun::NetlinkOp::Add, 0, addr_10_1_2_3_24).error() == core::Errc::InvalidArgument);
    CHECK(tun::encode_route(1, tun::NetlinkOp::Add, {.destination = addr_10_1_2_3_24}).error() ==
          core::Errc::InvalidArgument);
    CHECK(tun::encode_route(1, tun::NetlinkOp::Add, {.destination = {core::Ipv4Address{1}, 40}, .ifindex = 2})
              .error() == core::Errc::InvalidArgument);
    // An unreachable route goes nowhere: an interface or a gateway makes no sense on it.
    CHECK(tun::encode_route(1, tun::NetlinkOp::Add, {.destination = addr_10_1_2_3_24, .ifindex = 2, .type = tun::RouteType::Unreachable})
              .error() == core::Errc::InvalidArgument);
    CHECK(tun::encode_route(1, tun::NetlinkOp::Add,
                            {.destination = addr_10_1_2_3_24, .gateway = core::Ipv4Address::parse("10.1.2.1"), .type = tun::RouteType::Unreachable})
              .error() == core::Errc::InvalidArgument);
    CHECK(tun::encode_rule(1, tun::NetlinkOp::Add, {.table = 0, .fwmark = 1}).error() == core::Errc::InvalidArgument);
    CHECK(tun::encode_rule(1, tun::NetlinkOp::Add, {.table = 100, .fwmark = 0}).error() == core::Errc::InvalidArgument);
}

TEST_CASE("parse_ack: a capped success ack captured from the kernel") {
    const Bytes ack = "24000000 0200 0001 183e036b f12c0000 00000000 28000000 1400 0506 183e036b 00000000"_hex;
    auto a = tun::parse_ack(view(ack));
    REQUIRE(a);
    CHECK(a->seq == 0x6b033e18);
    CHECK(a->error == 0);
    CHECK(a->message.empty());
}

// `ip route add 10.8.0.0/16 via 10.99.0.1` with no route to 10.99.0.1: -ENETUNREACH, the
// request echoed back (not capped), then NLMSGERR_ATTR_MSG.
const Bytes captured_error =
    "60000000 0200 0002 173e036b eb2c0000"
    "9bffffff"
    "2c000000 1800 0506 173e036b 00000000 02100000 fe030001 00000000"
    "0800 0100 0a080000 0800 0500 0a630001"
    "2000 0100 4e657874686f702068617320696e76616c696420676174657761790 0"_hex;

TEST_CASE("parse_ack: kernel error with the request echoed and an extended-ack message") {
    auto a = tun::parse_ack(view(captured_error));
    REQUIRE(a);
    CHECK(a->seq == 0x6b033e17);
    CHECK(a->error == ENETUNREACH);
    CHECK(a->message == "Nexthop has invalid gateway");
}

TEST_CASE("parse_ack: capped error with an extended-ack message") {
    const Bytes capped =
        "44000000 0200 0003 173e036b eb2c0000"
        "9bffffff 2c000000 1800 0506 173e036b 00000000"
        "2000 0100 4e657874686f702068617320696e76616c696420676174657761790 0"_hex;
    auto a = tun::parse_ack(view(capped));
    REQUIRE(a);
    CHECK(a->error == ENETUNREACH);
    CHECK(a->message == "Nexthop has invalid gateway");
}

TEST_CASE("parse_ack rejects cut and impossible replies") {
    for (std::size_t n = 16; n < 36; ++n) {
        CAPTURE(n);
        CHECK(tun::parse_ack(view(cut(captured_error, n))).error() == core::Errc::Truncated);
    }
    // Error code and echoed header present, echoed payload cut: the TLVs cannot be found.
    for (std::size_t n = 36; n < 64; ++n) {
        CAPTURE(n);
        CHECK(tun::parse_ack(view(cut(captured_error, n))).error() == core::Errc::Truncated);
    }
    // TLV area cut inside the message attribute.
    for (std::size_t n = 65; n < captured_error.size(); ++n) {
        CAPTURE(n);
        CHECK(tun::parse_ack(view(cut(captured_error, n))).error() == core::Errc::Malformed);
    }
    Bytes positive = captured_error;
    positive[16] = 0x65;
    positive[17] = positive[18] = positive[19] = 0;  // +101
    CHECK(tun::parse_ack(view(positive)).error() == core::Errc::Malformed);
    CHECK(tun::parse_ack(view(captured_newaddr)).error() == core::Errc::Malformed);
}

TEST_CASE("parse_address: captured RTM_NEWADDR and RTM_DELADDR") {
    auto a = tun::parse_address(view(captured_newaddr));
    REQUIRE(a);
    CHECK(a->ifindex == 2);
    CHECK(a->prefix == addr_10_1_2_3_24);
    CHECK_FALSE(a->deleted);

    Bytes del = captured_newaddr;
    del[4] = RTM_DELADDR;
    auto d = tun::parse_address(view(del));
    REQUIRE(d);
    CHECK(d->deleted);
    CHECK(d->prefix == addr_10_1_2_3_24);
}

TEST_CASE("parse_address: IFA_LOCAL wins over a point-to-point peer in IFA_ADDRESS") {
    Bytes p2p = captured_newaddr;
    p2p[31] = 0x63;  // IFA_ADDRESS 10.1.2.99: the peer
    auto a = tun::parse_address(view(p2p));
    REQUIRE(a);
    CHECK(a->prefix.address == core::Ipv4Address::from_octets(10, 1, 2, 3));

    // Only IFA_ADDRESS (the first attribute): it stands in for the local address.
    auto only = tun::parse_address(view(cut(captured_newaddr, 32)));
    REQUIRE(only);
    CHECK(only->prefix.address == core::Ipv4Address::from_octets(10, 1, 2, 3));
}

TEST_CASE("parse_address rejects cut, foreign and broken messages") {
    for (std::size_t n = 16; n < 24; ++n) {
        CAPTURE(n);
        CHECK(tun::parse_address(view(cut(captured_newaddr, n))).error() == core::Errc::Truncated);
    }
    for (std::size_t n = 24; n < 32; ++n) {  // no whole address attribute
        CAPTURE(n);
        CHECK(tun::parse_address(view(cut(captured_newaddr, n))).error() == core::Errc::Malformed);
    }
    Bytes v6 = captured_newaddr;
    v6[16] = AF_INET6;
    CHECK(tun::parse_address(view(v6)).error() == core::Errc::Unsupported);
    Bytes long_prefix = captured_newaddr;
    long_prefix[17] = 33;
    CHECK(tun::parse_address(view(long_prefix)).error() == core::Errc::Malformed);
    Bytes bad_len = captured_newaddr;
    bad_len[24] = 0x07;  // IFA_ADDRESS with 3 bytes
    CHECK(tun::parse_address(view(bad_len)).error() == core::Errc::Malformed);
    CHECK(tun::parse_address(view(built_newlink)).error() == core::Errc::Malformed);
}

TEST_CASE("parse_link reads index, flags, name and MTU") {
    auto l = tun::parse_link(view(built_newlink));
    REQUIRE(l);
    CHECK(l->ifindex == 7);
    CHECK(l->name == "mtun0");
    CHECK(l->mtu == 1400);
    CHECK(l->flags == 0x110d1u);
    CHECK(l->up());
    CHECK_FALSE(l->deleted);

    Bytes down = built_newlink;
    down[24] = 0xd0;  // IFF_UP cleared
    CHECK_FALSE(tun::parse_link(view(down))->up());
    Bytes not_running = built_newlink;
    not_running[24] = 0x91;  // IFF_RUNNING cleared: administratively up, no carrier
    CHECK_FALSE(tun::parse_link(view(not_running))->up());
    Bytes del = built_newlink;
    del[4] = RTM_DELLINK;
    CHECK(tun::parse_link(view(del))->deleted);

    for (std::size_t n = 16; n < 32; ++n) {
        CAPTURE(n);
        CHECK(tun::parse_link(view(cut(built_newlink, n))).error() == core::Errc::Truncated);
    }
    for (std::size_t n : {33, 36, 41, 45, 47, 48, 51}) {  // inside IFLA_IFNAME or IFLA_MTU
        CAPTURE(n);
        CHECK(tun::parse_link(view(cut(built_newlink, n))).error() == core::Errc::Malformed);
    }
    for (std::size_t n : {42, 44}) {  // the last attribute may go without its padding
        CAPTURE(n);
        auto ok = tun::parse_link(view(cut(built_newlink, n)));
        REQUIRE(ok);
        CHECK(ok->name == "mtun0");
        CHECK(ok->mtu == 0);
    }
    Bytes bad_mtu = built_newlink;
    bad_mtu[44] = 0x06;  // IFLA_MTU with 2 bytes
    CHECK(tun::parse_link(view(bad_mtu)).error() == core::Errc::Malformed);
}

TEST_CASE("encoders and parsers round-trip") {
    auto addr = value(tun::encode_address(9, tun::NetlinkOp::Add, 42, *core::Ipv4Prefix::parse("192.0.2.77/28")));
    auto a = tun::parse_address(view(addr));
    REQUIRE(a);
    CHECK(a->ifindex == 42);
    CHECK(a->prefix == *core::Ipv4Prefix::parse("192.0.2.77/28"));

    auto link = tun::encode_set_link(9, 42, {.mtu = 1280, .up = true});
    auto l = tun::parse_link(view(link));
    REQUIRE(l);
    CHECK(l->ifindex == 42);
    CHECK(l->mtu == 1280);
    CHECK(l->flags == IFF_UP);

    auto by_name = value(tun::encode_get_link(9, "mip-tun0"));
    Bytes as_newlink = by_name;
    as_newlink[4] = RTM_NEWLINK;
    CHECK(tun::parse_link(view(as_newlink))->name == "mip-tun0");
}

TEST_CASE("NetlinkEventDecoder raises a LinkChanged only when up() changes") {
    constexpr std::uint32_t up_running = IFF_UP | IFF_RUNNING | IFF_LOWER_UP;
    struct Step {
        const char* name;
        Bytes datagram;
        int events;        // LinkChanged raised
        bool up = false;   // its up value, if raised
    };
    const Step steps[] = {
        {"first sight, down", link_message(RTM_NEWLINK, 5, 0, "eth1"), 1, false},
        {"repeat, down", link_message(RTM_NEWLINK, 5, 0, "eth1"), 0},
        {"admin up, no carrier yet", link_message(RTM_NEWLINK, 5, IFF_UP, "eth1"), 0},
        {"carrier", link_message(RTM_NEWLINK, 5, up_running, "eth1"), 1, true},
        {"MTU change, still up", link_message(RTM_NEWLINK, 5, up_running, "eth1"), 0},
        {"other interface", link_message(RTM_NEWLINK, 6, up_running, "wlan0"), 1, true},
        {"carrier lost", link_message(RTM_NEWLINK, 5, IFF_UP, "eth1"), 1, false},
        {"deleted", link_message(RTM_DELLINK, 6, up_running, "wlan0"), 1, false},
        {"re-created, seen anew", link_message(RTM_NEWLINK, 6, 0, "wlan0"), 1, false},
    };
    tun::NetlinkEventDecoder dec;
    for (const auto& s : steps) {
        CAPTURE(s.name);
        std::vector<core::ControlEvent> out;
        REQUIRE(dec.decode(s.datagram, out) == static_cast<std::size_t>(s.events));
        REQUIRE(out.size() == static_cast<std::size_t>(s.events));
        if (s.events == 1) {
            auto* ev = std::get_if<core::LinkChanged>(&out[0]);
            REQUIRE(ev);
            CHECK(ev->up == s.up);
            CHECK_FALSE(ev->ifname.empty());
        }
    }
    CHECK(dec.malformed_count() == 0);
}

TEST_CASE("NetlinkEventDecoder turns address notifications into AddressChanged") {
    tun::NetlinkEventDecoder dec;
    std::vector<core::ControlEvent> out;
    Bytes both = captured_newaddr;
    Bytes del = captured_newaddr;
    del[4] = RTM_DELADDR;
    both.insert(both.end(), del.begin(), del.end());
    REQUIRE(dec.decode(both, out) == 2);
    auto* added = std::get_if<core::AddressChanged>(&out[0]);
    auto* removed = std::get_if<core::AddressChanged>(&out[1]);
    REQUIRE(added);
    REQUIRE(removed);
    CHECK(added->ifindex == 2);
    CHECK(added->prefix == addr_10_1_2_3_24);
    CHECK(added->added);
    CHECK_FALSE(removed->added);
    CHECK(removed->prefix == addr_10_1_2_3_24);
}

TEST_CASE("NetlinkEventDecoder turns main-table unicast routes into RouteChanged") {
    tun::NetlinkEventDecoder dec;
    std::vector<core::ControlEvent> out;
    // A kernel notification has the layout of the request that made the route.
    const tun::Route dflt{.destination = *core::Ipv4Prefix::parse("0.0.0.0/0"), .ifindex = 3,
                          .gateway = core::Ipv4Address::parse("192.0.2.1")};
    Bytes add = value(tun::encode_route(seq, tun::NetlinkOp::Add, dflt));
    Bytes del = value(tun::encode_route(seq, tun::NetlinkOp::Delete, dflt));
    del[rtm_type_offset] = RTN_UNICAST;  // the kernel's RTM_DELROUTE names the type; our request does not
    Bytes other_table = value(tun::encode_route(seq, tun::NetlinkOp::Add,
                                                {.destination = addr_10_1_2_3_24, .ifindex = 3, .table = 100}));
    REQUIRE(dec.decode(add, out) == 1);
    REQUIRE(dec.decode(del, out) == 1);
    CHECK(dec.decode(other_table, out) == 0);
    auto* a = std::get_if<core::RouteChanged>(&out[0]);
    auto* d = std::get_if<core::RouteChanged>(&out[1]);
    REQUIRE(a);
    REQUIRE(d);
    CHECK(a->ifindex == 3);
    CHECK(a->destination.length == 0);
    CHECK(a->added);
    CHECK_FALSE(d->added);
    CHECK(dec.decode(cut(add, 20), out) == 0);
    CHECK(dec.malformed_count() == 1);
}

TEST_CASE("NetlinkEventDecoder ignores the irrelevant and counts the malformed") {
    tun::NetlinkEventDecoder dec;
    std::vector<core::ControlEvent> out;
    Bytes v6 = captured_newaddr;
    v6[16] = AF_INET6;
    CHECK(dec.decode(v6, out) == 0);
    CHECK(dec.decode("14000000 0300 0200 00000000 00000000 00000000"_hex, out) == 0);  // NLMSG_DONE
    CHECK(dec.malformed_count() == 0);

    CHECK(dec.decode(cut(captured_newaddr, 20), out) == 0);  // truncated RTM_NEWADDR
    CHECK(dec.malformed_count() == 1);
    CHECK(dec.decode("deadbeef"_hex, out) == 0);  // not even a header
    CHECK(dec.malformed_count() == 2);
    CHECK(out.empty());
}
