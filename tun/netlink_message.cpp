// SPDX-License-Identifier: MIT
#include "tun/netlink_message.hpp"

#include <cstddef>
#include <cstring>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include "core/endian.hpp"

namespace mipsec::tun {
namespace {

// Named offsets of the kernel's fixed headers, checked against the kernel's own structs so
// the byte layout can never drift from the uapi headers.
namespace nlmsghdr_off {
constexpr std::size_t len = 0, type = 4, flags = 6, seq = 8, pid = 12;
static_assert(offsetof(nlmsghdr, nlmsg_len) == len && offsetof(nlmsghdr, nlmsg_type) == type &&
              offsetof(nlmsghdr, nlmsg_flags) == flags && offsetof(nlmsghdr, nlmsg_seq) == seq &&
              offsetof(nlmsghdr, nlmsg_pid) == pid && sizeof(nlmsghdr) == NetlinkMessageView::header_len);
}  // namespace nlmsghdr_off
namespace ifinfomsg_off {
constexpr std::size_t family = 0, type = 2, index = 4, flags = 8, change = 12, size = 16;
static_assert(offsetof(ifinfomsg, ifi_family) == family && offsetof(ifinfomsg, ifi_type) == type &&
              offsetof(ifinfomsg, ifi_index) == index && offsetof(ifinfomsg, ifi_flags) == flags &&
              offsetof(ifinfomsg, ifi_change) == change && sizeof(ifinfomsg) == size);
}  // namespace ifinfomsg_off
namespace ifaddrmsg_off {
constexpr std::size_t family = 0, prefixlen = 1, flags = 2, scope = 3, index = 4, size = 8;
static_assert(offsetof(ifaddrmsg, ifa_family) == family && offsetof(ifaddrmsg, ifa_prefixlen) == prefixlen &&
              offsetof(ifaddrmsg, ifa_flags) == flags && offsetof(ifaddrmsg, ifa_scope) == scope &&
              offsetof(ifaddrmsg, ifa_index) == index && sizeof(ifaddrmsg) == size);
}  // namespace ifaddrmsg_off
namespace rtmsg_off {
constexpr std::size_t family = 0, dst_len = 1, src_len = 2, tos = 3, table = 4, protocol = 5, scope = 6,
                      type = 7, flags = 8, size = 12;
static_assert(offsetof(rtmsg, rtm_family) == family && offsetof(rtmsg, rtm_dst_len) == dst_len &&
              offsetof(rtmsg, rtm_src_len) == src_len && offsetof(rtmsg, rtm_tos) == tos &&
              offsetof(rtmsg, rtm_table) == table && offsetof(rtmsg, rtm_protocol) == protocol &&
              offsetof(rtmsg, rtm_scope) == scope && offsetof(rtmsg, rtm_type) == type &&
              offsetof(rtmsg, rtm_flags) == flags && sizeof(rtmsg) == size);
}  // namespace rtmsg_off
namespace nlmsgerr_off {
constexpr std::size_t error = 0, request = 4, size = 20;
static_assert(offsetof(nlmsgerr, error) == error && offsetof(nlmsgerr, msg) == request && sizeof(nlmsgerr) == size);
}  // namespace nlmsgerr_off

// Netlink is host byte order: memcpy is the alignment-safe load/store.
std::uint16_t load16(const std::uint8_t* p) noexcept {
    std::uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
std::uint32_t load32(const std::uint8_t* p) noexcept {
    std::uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
void store16(std::uint8_t* p, std::uint16_t v) noexcept { std::memcpy(p, &v, sizeof v); }
void store32(std::uint8_t* p, std::uint32_t v) noexcept { std::memcpy(p, &v, sizeof v); }

constexpr std::size_t align4(std::size_t n) noexcept { return (n + 3) & ~std::size_t{3}; }

constexpr std::uint16_t request_ack = NLM_F_REQUEST | NLM_F_ACK;
constexpr std::uint16_t request_create = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;

}  // namespace

// --- Readers ---------------------------------------------------------------------------------

std::optional<NetlinkMessageView> NetlinkMessageView::check(std::span<const std::uint8_t> bytes) noexcept {
    if (bytes.size() < header_len) return std::nullopt;
    std::uint32_t len = load32(bytes.data() + nlmsghdr_off::len);
    if (len < header_len || len > bytes.size()) return std::nullopt;
    return NetlinkMessageView(bytes.first(len));
}
std::uint32_t NetlinkMessageView::length() const noexcept { return load32(b_.data() + nlmsghdr_off::len); }
std::uint16_t NetlinkMessageView::type() const noexcept { return load16(b_.data() + nlmsghdr_off::type); }
std::uint16_t NetlinkMessageView::flags() const noexcept { return load16(b_.data() + nlmsghdr_off::flags); }
std::uint32_t NetlinkMessageView::seq() const noexcept { return load32(b_.data() + nlmsghdr_off::seq); }
std::uint32_t NetlinkMessageView::port_id() const noexcept { return load32(b_.data() + nlmsghdr_off::pid); }

std::optional<NetlinkMessageView> MessageReader::next() noexcept {
    if (rest_.empty() || malformed_) return std::nullopt;
    auto msg = NetlinkMessageView::check(rest_);
    if (!msg) {
        malformed_ = true;
        return std::nullopt;
    }
    // The last message of a datagram need not carry its alignment padding.
    std::size_t step = std::min(align4(msg->length()), rest_.size());
    rest_ = rest_.subspan(step);
    return msg;
}

std::optional<std::uint32_t> NetlinkAttribute::as_u32() const noexcept {
    if (payload.size() != 4) return std::nullopt;
    return load32(payload.data());
}
std::optional<core::Ipv4Address> NetlinkAttribute::as_ipv4() const noexcept {
    if (payload.size() != 4) return std::nullopt;
    return core::Ipv4Address{core::load_be32(payload.data())};
}
std::string_view NetlinkAttribute::as_string() const noexcept {
    std::string_view s(reinterpret_cast<const char*>(payload.data()), payload.size());
    return s.substr(0, s.find('\0'));
}

std::optional<NetlinkAttribute> AttributeReader::next() noexcept {
    if (rest_.empty() || malformed_) return std::nullopt;
    if (rest_.size() < header_len) {
        malformed_ = true;
        return std::nullopt;
    }
    std::size_t len = load16(rest_.data());
    if (len < header_len || len > rest_.size()) {
        malformed_ = true;
        return std::nullopt;
    }
    NetlinkAttribute attr{static_cast<std::uint16_t>(load16(rest_.data() + 2) & NLA_TYPE_MASK),
                          rest_.subspan(header_len, len - header_len)};
    rest_ = rest_.subspan(std::min(align4(len), rest_.size()));
    return attr;
}

// --- Request builder -------------------------------------------------------------------------

NetlinkRequest::NetlinkRequest(std::uint16_t type, std::uint16_t flags, std::uint32_t seq)
    : b_(NetlinkMessageView::header_len, 0) {
    b_.reserve(128);
    store16(b_.data() + nlmsghdr_off::type, type);
    store16(b_.data() + nlmsghdr_off::flags, flags);
    store32(b_.data() + nlmsghdr_off::seq, seq);
    // nlmsg_pid stays 0: the kernel is the destination and fills in our port itself.
}

std::span<std::uint8_t> NetlinkRequest::add_fixed(std::size_t len) {
    std::size_t at = b_.size();
    b_.resize(at + align4(len), 0);
    return {b_.data() + at, len};
}

void NetlinkRequest::add_attr(std::uint16_t type, std::span<const std::uint8_t> payload) {
    std::size_t at = b_.size();
    std::size_t len = AttributeReader::header_len + payload.size();
    b_.resize(at + align4(len), 0);
    store16(b_.data() + at, static_cast<std::uint16_t>(len));
    store16(b_.data() + at + 2, type);
    std::memcpy(b_.data() + at + AttributeReader::header_len, payload.data(), payload.size());
}

void NetlinkRequest::add_attr_u32(std::uint16_t type, std::uint32_t value) {
    std::uint8_t v[4];
    store32(v, value);
    add_attr(type, v);
}

void NetlinkRequest::add_attr_ipv4(std::uint16_t type, core::Ipv4Address address) {
    std::uint8_t v[4];
    core::store_be32(v, address.value);
    add_attr(type, v);
}

void NetlinkRequest::add_attr_string(std::uint16_t type, std::string_view text) {
    std::vector<std::uint8_t> v(text.begin(), text.end());
    v.push_back(0);
    add_attr(type, v);
}

std::vector<std::uint8_t> NetlinkRequest::finish() && {
    store32(b_.data() + nlmsghdr_off::len, static_cast<std::uint32_t>(b_.size()));
    return std::move(b_);
}

// --- Encoders --------------------------------------------------------------------------------

std::vector<std::uint8_t> encode_set_link(std::uint32_t seq, std::uint32_t ifindex, const LinkChange& change) {
    NetlinkRequest req(RTM_NEWLINK, request_ack, seq);
    auto ifi = req.add_fixed(ifinfomsg_off::size);
    ifi[ifinfomsg_off::family] = AF_UNSPEC;
    store32(ifi.data() + ifinfomsg_off::index, ifindex);
    if (change.up) {
        // ifi_change selects which flag bits the kernel applies; the others stay as they are.
        store32(ifi.data() + ifinfomsg_off::flags, *change.up ? std::uint32_t{IFF_UP} : 0u);
        store32(ifi.data() + ifinfomsg_off::change, IFF_UP);
    }
    if (change.mtu) req.add_attr_u32(IFLA_MTU, *change.mtu);
    return std::move(req).finish();
}

std::vector<std::uint8_t> encode_get_link(std::uint32_t seq, std::uint32_t ifindex) {
    NetlinkRequest req(RTM_GETLINK, NLM_F_REQUEST, seq);
    auto ifi = req.add_fixed(ifinfomsg_off::size);
    store32(ifi.data() + ifinfomsg_off::index, ifindex);
    req.add_attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    return std::move(req).finish();
}

core::Result<std::vector<std::uint8_t>> encode_get_link(std::uint32_t seq, std::string_view name) {
    if (name.empty() || name.size() >= IFNAMSIZ) return core::Errc::InvalidArgument;
    NetlinkRequest req(RTM_GETLINK, NLM_F_REQUEST, seq);
    (void)req.add_fixed(ifinfomsg_off::size);
    req.add_attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    req.add_attr_string(IFLA_IFNAME, name);
    return std::move(req).finish();
}

core::Result<std::vector<std::uint8_t>> encode_address(std::uint32_t seq, NetlinkOp op, std::uint32_t ifindex,
                                                       core::Ipv4Prefix prefix) {
    if (prefix.length > 32 || ifindex == 0) return core::Errc::InvalidArgument;
    NetlinkRequest req(op == NetlinkOp::Add ? RTM_NEWADDR : RTM_DELADDR,
                       op == NetlinkOp::Add ? request_create : request_ack, seq);
    auto ifa = req.add_fixed(ifaddrmsg_off::size);
    ifa[ifaddrmsg_off::family] = AF_INET;
    ifa[ifaddrmsg_off::prefixlen] = prefix.length;
    ifa[ifaddrmsg_off::scope] = RT_SCOPE_UNIVERSE;
    store32(ifa.data() + ifaddrmsg_off::index, ifindex);
    // On a non-point-to-point interface IFA_ADDRESS equals IFA_LOCAL; the kernel derives the
    // connected route to prefix.network() from the pair.
    req.add_attr_ipv4(IFA_LOCAL, prefix.address);
    req.add_attr_ipv4(IFA_ADDRESS, prefix.address);
    return std::move(req).finish();
}

std::vector<std::uint8_t> encode_get_addresses(std::uint32_t seq) {
    NetlinkRequest req(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
    auto ifa = req.add_fixed(ifaddrmsg_off::size);
    ifa[ifaddrmsg_off::family] = AF_INET;
    return std::move(req).finish();
}

core::Result<std::vector<std::uint8_t>> encode_route(std::uint32_t seq, NetlinkOp op, const Route& route) {
    if (route.destination.length > 32) return core::Errc::InvalidArgument;
    const bool unreachable = route.type == RouteType::Unreachable;
    if (unreachable ? route.ifindex != 0 || route.gateway || route.source : route.ifindex == 0 && !route.gateway)
        return core::Errc::InvalidArgument;
    bool add = op == NetlinkOp::Add;
    NetlinkRequest req(add ? RTM_NEWROUTE : RTM_DELROUTE, add ? request_create : request_ack, seq);
    auto rtm = req.add_fixed(rtmsg_off::size);
    std::uint32_t table = route.table.value_or(RT_TABLE_MAIN);
    rtm[rtmsg_off::family] = AF_INET;
    rtm[rtmsg_off::dst_len] = route.destination.length;
    // rtm_table is 8 bits; larger table ids go in RTA_TABLE with rtm_table = RT_TABLE_UNSPEC.
    rtm[rtmsg_off::table] = table < 256 ? static_cast<std::uint8_t>(table) : std::uint8_t{RT_TABLE_UNSPEC};
    if (add) {
        rtm[rtmsg_off::protocol] = RTPROT_STATIC;
        // Without a gateway the destination is directly on the link.
        rtm[rtmsg_off::scope] = route.gateway || unreachable ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
        rtm[rtmsg_off::type] = unreachable ? RTN_UNREACHABLE : RTN_UNICAST;
        if (route.onlink) store32(rtm.data() + rtmsg_off::flags, RTNH_F_ONLINK);
    } else {
        // Deletion matches on what we pass; NOWHERE / UNSPEC are the kernel's wildcards for
        // scope, protocol and type (fib_table_delete), as `ip route del` sends them.
        rtm[rtmsg_off::scope] = RT_SCOPE_NOWHERE;
        // ...but an unreachable route is named as one, so a unicast route to the same
        // destination and metric is not the one deleted.
        if (unreachable) rtm[rtmsg_off::type] = RTN_UNREACHABLE;
    }
    if (route.destination.length > 0) req.add_attr_ipv4(RTA_DST, route.destination.network());
    if (route.gateway) req.add_attr_ipv4(RTA_GATEWAY, *route.gateway);
    if (route.source) req.add_attr_ipv4(RTA_PREFSRC, *route.source);
    if (route.ifindex != 0) req.add_attr_u32(RTA_OIF, route.ifindex);
    if (route.metric) req.add_attr_u32(RTA_PRIORITY, *route.metric);
    if (route.table) req.add_attr_u32(RTA_TABLE, table);
    return std::move(req).finish();
}

namespace fib_rule_off {
constexpr std::size_t family = 0, table = 4, action = 7, flags = 8, size = 12;
static_assert(offsetof(fib_rule_hdr, family) == family && offsetof(fib_rule_hdr, table) == table &&
              offsetof(fib_rule_hdr, action) == action && offsetof(fib_rule_hdr, flags) == flags &&
              sizeof(fib_rule_hdr) == size);
}  // namespace fib_rule_off

core::Result<std::vector<std::uint8_t>> encode_rule(std::uint32_t seq, NetlinkOp op, const Rule& rule) {
    if (rule.table == 0 || rule.fwmark == 0 || rule.fwmask == 0) return core::Errc::InvalidArgument;
    const bool add = op == NetlinkOp::Add;
    NetlinkRequest req(add ? RTM_NEWRULE : RTM_DELRULE, add ? request_create : request_ack, seq);
    auto hdr = req.add_fixed(fib_rule_off::size);
    hdr[fib_rule_off::family] = AF_INET;
    hdr[fib_rule_off::table] = rule.table < 256 ? static_cast<std::uint8_t>(rule.table) : std::uint8_t{RT_TABLE_UNSPEC};
    hdr[fib_rule_off::action] = FR_ACT_TO_TBL;
    store32(hdr.data() + fib_rule_off::flags, rule.invert ? FIB_RULE_INVERT : 0u);
    // iproute2's attribute order, and like it no mask when it is all ones (the kernel's default).
    req.add_attr_u32(FRA_FWMARK, rule.fwmark);
    if (rule.fwmask != 0xFFFFFFFF) req.add_attr_u32(FRA_FWMASK, rule.fwmask);
    req.add_attr_u32(FRA_TABLE, rule.table);
    if (rule.priority != 0) req.add_attr_u32(FRA_PRIORITY, rule.priority);
    return std::move(req).finish();
}

// --- Parsers ---------------------------------------------------------------------------------

core::Result<NetlinkAck> parse_ack(const NetlinkMessageView& msg) {
    if (msg.type() != NLMSG_ERROR) return core::Errc::Malformed;
    auto p = msg.payload();
    if (p.size() < nlmsgerr_off::size) return core::Errc::Truncated;
    NetlinkAck ack;
    ack.seq = msg.seq();
    auto error = static_cast<std::int32_t>(load32(p.data() + nlmsgerr_off::error));
    // The kernel sends -errno; an ack is 0. Anything positive, or too negative to be an errno
    // (INT32_MIN cannot even be negated), is not a valid reply.
    if (error > 0 || error < -4095) return core::Errc::Malformed;
    ack.error = -error;
    if (msg.flags() & NLM_F_ACK_TLVS) {
        std::size_t tlv_at = nlmsgerr_off::size;
        if (!(msg.flags() & NLM_F_CAPPED)) {
            // Uncapped: the whole request is echoed before the TLVs.
            std::uint32_t echoed = load32(p.data() + nlmsgerr_off::request + nlmsghdr_off::len);
            if (echoed < NetlinkMessageView::header_len) return core::Errc::Malformed;
            tlv_at = nlmsgerr_off::request + align4(echoed);
        }
        if (tlv_at > p.size()) return core::Errc::Truncated;
        AttributeReader attrs(p.subspan(tlv_at));
        while (auto a = attrs.next()) {
            if (a->type == NLMSGERR_ATTR_MSG) ack.message = std::string(a->as_string());
        }
        if (attrs.malformed()) return core::Errc::Malformed;
    }
    return ack;
}

bool LinkInfo::up() const noexcept { return (flags & IFF_UP) && (flags & IFF_RUNNING); }

core::Result<LinkInfo> parse_link(const NetlinkMessageView& msg) {
    if (msg.type() != RTM_NEWLINK && msg.type() != RTM_DELLINK) return core::Errc::Malformed;
    auto p = msg.payload();
    if (p.size() < ifinfomsg_off::size) return core::Errc::Truncated;
    LinkInfo link;
    link.ifindex = load32(p.data() + ifinfomsg_off::index);
    link.flags = load32(p.data() + ifinfomsg_off::flags);
    link.deleted = msg.type() == RTM_DELLINK;
    AttributeReader attrs(p.subspan(ifinfomsg_off::size));
    while (auto a = attrs.next()) {
        if (a->type == IFLA_IFNAME) {
            link.name = std::string(a->as_string());
        } else if (a->type == IFLA_MTU) {
            auto mtu = a->as_u32();
            if (!mtu) return core::Errc::Malformed;
            link.mtu = *mtu;
        }
    }
    if (attrs.malformed()) return core::Errc::Malformed;
    return link;
}

core::Result<AddressInfo> parse_address(const NetlinkMessageView& msg) {
    if (msg.type() != RTM_NEWADDR && msg.type() != RTM_DELADDR) return core::Errc::Malformed;
    auto p = msg.payload();
    if (p.size() < ifaddrmsg_off::size) return core::Errc::Truncated;
    if (p[ifaddrmsg_off::family] != AF_INET) return core::Errc::Unsupported;
    std::uint8_t prefixlen = p[ifaddrmsg_off::prefixlen];
    if (prefixlen > 32) return core::Errc::Malformed;
    AddressInfo info;
    info.ifindex = load32(p.data() + ifaddrmsg_off::index);
    info.deleted = msg.type() == RTM_DELADDR;
    info.prefix.length = prefixlen;
    std::optional<core::Ipv4Address> local, address;
    AttributeReader attrs(p.subspan(ifaddrmsg_off::size));
    while (auto a = attrs.next()) {
        if (a->type != IFA_LOCAL && a->type != IFA_ADDRESS) continue;
        auto v = a->as_ipv4();
        if (!v) return core::Errc::Malformed;
        (a->type == IFA_LOCAL ? local : address) = v;
    }
    if (attrs.malformed()) return core::Errc::Malformed;
    // IFA_LOCAL is our address; IFA_ADDRESS is the peer on point-to-point links and equal
    // to IFA_LOCAL elsewhere, so it only stands in when IFA_LOCAL is absent.
    if (local) {
        info.prefix.address = *local;
    } else if (address) {
        info.prefix.address = *address;
    } else {
        return core::Errc::Malformed;
    }
    return info;
}

core::Result<RouteInfo> parse_route(const NetlinkMessageView& msg) {
    if (msg.type() != RTM_NEWROUTE && msg.type() != RTM_DELROUTE) return core::Errc::Malformed;
    auto p = msg.payload();
    if (p.size() < rtmsg_off::size) return core::Errc::Truncated;
    if (p[rtmsg_off::family] != AF_INET) return core::Errc::Unsupported;
    if (p[rtmsg_off::dst_len] > 32) return core::Errc::Malformed;
    RouteInfo info;
    info.deleted = msg.type() == RTM_DELROUTE;
    info.destination.length = p[rtmsg_off::dst_len];
    info.table = p[rtmsg_off::table];
    info.type = p[rtmsg_off::type];
    AttributeReader attrs(p.subspan(rtmsg_off::size));
    while (auto a = attrs.next()) {
        if (a->type == RTA_DST) {
            auto v = a->as_ipv4();
            if (!v) return core::Errc::Malformed;
            info.destination.address = *v;
        } else if (a->type == RTA_OIF || a->type == RTA_TABLE) {
            auto v = a->as_u32();
            if (!v) return core::Errc::Malformed;
            (a->type == RTA_OIF ? info.ifindex : info.table) = *v;
        }
    }
    if (attrs.malformed()) return core::Errc::Malformed;
    return info;
}

std::size_t NetlinkEventDecoder::decode(std::span<const std::uint8_t> datagram, std::vector<core::ControlEvent>& out) {
    std::size_t before = out.size();
    MessageReader reader(datagram);
    while (auto msg = reader.next()) {
        switch (msg->type()) {
            case RTM_NEWLINK:
            case RTM_DELLINK: {
                auto link = parse_link(*msg);
                if (!link) {
                    ++malformed_;
                    break;
                }
                bool up = !link->deleted && link->up();
                if (link->deleted) {
                    link_up_.erase(link->ifindex);
                } else {
                    auto [it, inserted] = link_up_.try_emplace(link->ifindex, up);
                    if (!inserted && it->second == up) break;
                    it->second = up;
                }
                out.emplace_back(core::LinkChanged{link->ifindex, std::move(link->name), up});
                break;
            }
            case RTM_NEWADDR:
            case RTM_DELADDR: {
                auto addr = parse_address(*msg);
                if (!addr) {
                    if (addr.error() != core::Errc::Unsupported) ++malformed_;
                    break;
                }
                out.emplace_back(core::AddressChanged{addr->ifindex, addr->prefix, !addr->deleted});
                break;
            }
            case RTM_NEWROUTE:
            case RTM_DELROUTE: {
                auto route = parse_route(*msg);
                if (!route) {
                    if (route.error() != core::Errc::Unsupported) ++malformed_;
                    break;
                }
                if (route->table != RT_TABLE_MAIN || route->type != RTN_UNICAST) break;
                out.emplace_back(core::RouteChanged{route->ifindex, route->destination, !route->deleted});
                break;
            }
            default: break;
        }
    }
    if (reader.malformed()) ++malformed_;
    return out.size() - before;
}

}  // namespace mipsec::tun
