// SPDX-License-Identifier: MIT
// Real TUN devices and rtnetlink, in throw-away network namespaces. Every test case starts with
// enter_private_netns(): unshare(CLONE_NEWNET) moves this (single-threaded) process into a
// brand-new namespace holding only a down loopback, so nothing on the host is touched and the
// namespace disappears with its last socket. Without root the binary prints
// "SKIPPED: needs root" and exits 77 (CTest SKIP_RETURN_CODE).
//
// Oracles independent of the code under test: SIOCGIFMTU/SIOCGIFFLAGS ioctls, the kernel's
// own source-address choice for a connected UDP socket (which follows our route and its
// preferred source), and packets the kernel itself builds (UDP, ICMP echo replies).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <linux/if.h>
#include <netinet/in.h>
#include <ostream>
#include <poll.h>
#include <sched.h>
#include <string>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <variant>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/icmp.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "tests/support/private_netns.hpp"
#include "tests/support/socket.hpp"
#include "tun/errc.hpp"
#include "tun/linux_device.hpp"
#include "tun/netlink.hpp"
#include "tun/scoped_net_config.hpp"

using namespace mipsec;
using namespace std::chrono_literals;
using mipsec::test::enter_private_netns;

namespace {

const core::Ipv4Prefix tun_prefix = *core::Ipv4Prefix::parse("10.200.0.1/24");
const core::Ipv4Address tun_address = tun_prefix.address;
const core::Ipv4Prefix routed = *core::Ipv4Prefix::parse("10.201.0.0/16");
const core::Ipv4Address routed_host = *core::Ipv4Address::parse("10.201.0.5");

using test::Fd;
using test::to_sockaddr;

ifreq if_request(std::string_view name) {
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name.data(), std::min(name.size(), std::size_t{IFNAMSIZ - 1}));
    return ifr;
}

int ioctl_mtu(std::string_view name) {
    Fd s(::socket(AF_INET, SOCK_DGRAM, 0));
    ifreq ifr = if_request(name);
    REQUIRE(::ioctl(s.get(), SIOCGIFMTU, &ifr) == 0);
    return ifr.ifr_mtu;
}

unsigned ioctl_flags(std::string_view name) {
    Fd s(::socket(AF_INET, SOCK_DGRAM, 0));
    ifreq ifr = if_request(name);
    REQUIRE(::ioctl(s.get(), SIOCGIFFLAGS, &ifr) == 0);
    return static_cast<unsigned short>(ifr.ifr_flags);
}

/// The source address the kernel picks to reach `dst` (connect() on a UDP socket sends
/// nothing), or the errno when there is no route.
std::variant<core::Ipv4Address, int> route_source(core::Ipv4Address dst) {
    Fd s(::socket(AF_INET, SOCK_DGRAM, 0));
    sockaddr_in sa = to_sockaddr(dst, 9);
    if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) return errno;
    sockaddr_in local{};
    socklen_t len = sizeof local;
    REQUIRE(::getsockname(s.get(), reinterpret_cast<sockaddr*>(&local), &len) == 0);
    return core::Ipv4Address{ntohl(local.sin_addr.s_addr)};
}

bool wait_readable(int fd, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 && (p.revents & POLLIN);
}

/// Reads batches from the device until a packet satisfies `match` (IPv6 router solicitations
/// and the like may come first) or 3 s pass; returns that packet's bytes and headroom.
struct Found {
    std::vector<std::uint8_t> bytes;
    std::size_t headroom = 0;
};
std::optional<Found> read_until(tun::Device& dev, core::BufferPool& pool, std::size_t headroom,
                                const std::function<bool(std::span<const std::uint8_t>)>& match) {
    auto deadline = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < deadline) {
        if (!wait_readable(dev.fd(), 100ms)) continue;
        std::vector<core::PacketBuf> bufs;
        for (int i = 0; i < 4; ++i) bufs.push_back(pool.acquire(headroom));
        std::size_t n = dev.read(bufs);
        for (std::size_t i = 0; i < n; ++i) {
            if (match(std::as_const(bufs[i]).bytes())) {
                auto b = std::as_const(bufs[i]).bytes();
                return Found{{b.begin(), b.end()}, bufs[i].headroom()};
            }
        }
    }
    return std::nullopt;
}

struct Configured {
    std::unique_ptr<tun::LinuxDevice> dev;
    tun::Netlink nl;
};

/// A TUN "mtest0" with 10.200.0.1/24, MTU 1400, up, and 10.201.0.0/16 routed into it.
Configured open_configured() {
    auto dev = tun::LinuxDevice::open("mtest0");
    REQUIRE_MESSAGE(dev, dev.error().message());
    auto nl = tun::Netlink::open();
    REQUIRE_MESSAGE(nl, nl.error().message());
    auto ifx = (*dev)->ifindex();
    REQUIRE(nl->set_mtu(ifx, 1400));
    REQUIRE(nl->add_address(ifx, tun_prefix));
    REQUIRE(nl->set_up(ifx, true));
    REQUIRE(nl->add_route({.destination = routed, .ifindex = ifx, .source = tun_address}));
    return {std::move(dev).value(), std::move(nl).value()};
}

template <class Event>
const Event* find_event(const std::vector<core::ControlEvent>& events, const std::function<bool(const Event&)>& pred) {
    for (const auto& e : events) {
        if (auto* ev = std::get_if<Event>(&e); ev && pred(*ev)) return ev;
    }
    return nullptr;
}

/// Drains the monitor until `done` holds for what it collected, or 3 s pass.
bool drain_until(tun::NetlinkMonitor& mon, std::vector<core::ControlEvent>& events,
                 const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + 3s;
    while (!done()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        if (wait_readable(mon.fd(), 100ms)) mon.drain(events);
    }
    return true;
}

}  // namespace

TEST_CASE("LinuxDevice creates a TUN interface that vanishes when closed") {
    enter_private_netns();
    auto nl = tun::Netlink::open();
    REQUIRE(nl);

    auto dev = tun::LinuxDevice::open("mtest0");
    REQUIRE_MESSAGE(dev, dev.error().message());
    CHECK((*dev)->name() == "mtest0");
    CHECK((*dev)->fd() >= 0);
    auto ifx = (*dev)->ifindex();
    CHECK(ifx > 1);  // 1 is lo
    CHECK(nl->ifindex_of("mtest0").value() == ifx);
    auto link = nl->link(ifx);
    REQUIRE(link);
    CHECK(link->name == "mtest0");
    CHECK(link->mtu == 1500);
    CHECK((link->flags & IFF_UP) == 0);
    CHECK(nl->link("mtest0")->ifindex == ifx);

    // Nothing to read on a fresh, down device: the batch read would block.
    core::BufferPool pool(4, 2048);
    std::vector<core::PacketBuf> bufs;
    bufs.push_back(pool.acquire(64));
    CHECK((*dev)->read(bufs) == 0);
    CHECK_FALSE((*dev)->last_error());

    dev.value().reset();
    CHECK(nl->ifindex_of("mtest0").error() == core::Errc::NotFound);

    auto picked = tun::LinuxDevice::open("");
    REQUIRE(picked);
    CHECK((*picked)->name().starts_with("tun"));
    auto pattern = tun::LinuxDevice::open("mip%d");
    REQUIRE(pattern);
    CHECK((*pattern)->name() == "mip0");
    CHECK(nl->ifindex_of("mip0").value() == (*pattern)->ifindex());
}

TEST_CASE("LinuxDevice::open reports clear errors") {
    enter_private_netns();
    for (const char* bad : {"sixteen-chars-xx", "a/b", "a b", "a:1", ".", ".."}) {
        CAPTURE(bad);
        CHECK(tun::LinuxDevice::open(bad).error() == tun::Errc::InvalidName);
    }
    CHECK(tun::LinuxDevice::open("fifteen-chars-x"));
    CHECK(tun::LinuxDevice::open("a%db%d").error() == tun::Errc::InvalidName);  // one %d at most

    auto first = tun::LinuxDevice::open("mtest0");
    REQUIRE(first);
    auto second = tun::LinuxDevice::open("mtest0");
    CHECK(second.error() == tun::Errc::DeviceBusy);
    CHECK(second.error() == std::errc::device_or_resource_busy);

    CHECK(tun::LinuxDevice::open("lo").error() == tun::Errc::NotTunDevice);
}

TEST_CASE("Netlink sets MTU, link state, address and route, and reads them back") {
    enter_private_netns();
    auto dev = tun::LinuxDevice::open("mtest0");
    REQUIRE(dev);
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    auto ifx = (*dev)->ifindex();

    REQUIRE(nl->set_mtu(ifx, 1400));
    CHECK(ioctl_mtu("mtest0") == 1400);
    CHECK(nl->link(ifx)->mtu == 1400);

    REQUIRE(nl->set_up(ifx, true));
    CHECK((ioctl_flags("mtest0") & IFF_UP) != 0);
    CHECK((nl->link(ifx)->flags & IFF_UP) != 0);

    REQUIRE(nl->add_address(ifx, tun_prefix));
    auto addrs = nl->addresses(ifx);
    REQUIRE(addrs);
    REQUIRE(addrs->size() == 1);
    CHECK((*addrs)[0].prefix == tun_prefix);
    CHECK((*addrs)[0].ifindex == ifx);
    auto again = nl->add_address(ifx, tun_prefix);
    CHECK(again.error() == std::errc::file_exists);
    CHECK(again.error().message() == "File exists");

    CHECK(std::get<int>(route_source(routed_host)) == ENETUNREACH);
    REQUIRE(nl->add_route({.destination = routed, .ifindex = ifx, .source = tun_address}));
    CHECK(std::get<core::Ipv4Address>(route_source(routed_host)) == tun_address);
    CHECK(nl->add_route({.destination = routed, .ifindex = ifx, .source = tun_address}).error() ==
          std::errc::file_exists);

    // A route in another table does not change the main table's answer.
    auto other = *core::Ipv4Prefix::parse("10.202.0.0/16");
    REQUIRE(nl->add_route({.destination = other, .ifindex = ifx, .table = 1000}));
    CHECK(std::get<int>(route_source(other.address)) == ENETUNREACH);
    // ...until a rule sends unmarked traffic to that table (the shell's TUN routing).
    const tun::Rule rule{.table = 1000, .priority = 32000, .fwmark = 0x6d69, .invert = true};
    REQUIRE(nl->add_rule(rule));
    CHECK(std::get<core::Ipv4Address>(route_source(other.address)) == tun_address);
    CHECK(nl->add_rule(rule).error() == std::errc::file_exists);
    REQUIRE(nl->del_rule(rule));
    CHECK(std::get<int>(route_source(other.address)) == ENETUNREACH);
    CHECK(nl->del_rule(rule).error() == std::errc::no_such_file_or_directory);
    REQUIRE(nl->del_route({.destination = other, .ifindex = ifx, .table = 1000}));

    // The kernel explains itself through the extended ack.
    auto bad_gw = nl->add_route({.destination = other, .gateway = core::Ipv4Address::parse("10.99.0.1")});
    CHECK(bad_gw.error() == std::errc::network_unreachable);
    CHECK_FALSE(nl->last_error_detail().empty());
    MESSAGE("kernel said: ", nl->last_error_detail());

    REQUIRE(nl->del_route({.destination = routed, .ifindex = ifx}));
    CHECK(std::get<int>(route_source(routed_host)) == ENETUNREACH);
    CHECK(nl->del_route({.destination = routed, .ifindex = ifx}).error() == std::errc::no_such_process);

    REQUIRE(nl->del_address(ifx, tun_prefix));
    CHECK(nl->addresses(ifx)->empty());

    REQUIRE(nl->set_up(ifx, false));
    CHECK((ioctl_flags("mtest0") & IFF_UP) == 0);

    CHECK(nl->set_mtu(9999, 1400).error() == std::errc::no_such_device);
    CHECK(nl->link(9999u).error() == core::Errc::NotFound);
}

TEST_CASE("an unreachable route left behind stops traffic that the gone TUN carried from taking the default route") {
    enter_private_netns();
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    // The cafe link: a default route out of another interface, the way a leak would go.
    auto cafe = tun::LinuxDevice::open("mcafe0");
    REQUIRE(cafe);
    const auto cafe_prefix = *core::Ipv4Prefix::parse("192.0.2.10/24");
    REQUIRE(nl->set_up((*cafe)->ifindex(), true));
    REQUIRE(nl->add_address((*cafe)->ifindex(), cafe_prefix));
    REQUIRE(nl->add_route({.destination = *core::Ipv4Prefix::parse("0.0.0.0/0"), .ifindex = (*cafe)->ifindex()}));
    const tun::Route block{.destination = routed, .type = tun::RouteType::Unreachable, .metric = 4095};
    {
        auto dev = tun::LinuxDevice::open("mtest0");
        REQUIRE(dev);
        auto ifx = (*dev)->ifindex();
        REQUIRE(nl->set_up(ifx, true));
        REQUIRE(nl->add_address(ifx, tun_prefix));
        REQUIRE(nl->add_route({.destination = routed, .ifindex = ifx, .source = tun_address}));
        REQUIRE(nl->add_route(block));
        CHECK(nl->add_route(block).error() == std::errc::file_exists);
        // Metric 0 beats 4095: while the TUN is there it carries the prefix.
        CHECK(std::get<core::Ipv4Address>(route_source(routed_host)) == tun_address);
    }
    // The TUN closed (a crash or a restart): its route went with it, the block stays.
    CHECK(std::get<int>(route_source(routed_host)) == EHOSTUNREACH);
    CHECK(std::get<core::Ipv4Address>(route_source(*core::Ipv4Address::parse("198.51.100.1"))) == cafe_prefix.address);
    // Deleting names the type: a unicast route of the same prefix and metric is not it.
    CHECK(nl->del_route({.destination = routed, .ifindex = (*cafe)->ifindex(), .metric = 4095}).error() == std::errc::no_such_process);
    REQUIRE(nl->del_route(block));
    CHECK(std::get<core::Ipv4Address>(route_source(routed_host)) == cafe_prefix.address);
    CHECK(nl->del_route(block).error() == std::errc::no_such_process);
}

TEST_CASE("a UDP datagram routed into the TUN comes out of read() at the headroom") {
    enter_private_netns();
    auto [dev, nl] = open_configured();
    core::BufferPool pool(8, 2048);
    constexpr std::size_t headroom = 96;

    Fd s(::socket(AF_INET, SOCK_DGRAM, 0));
    const std::string payload = "hello from the kernel";
    sockaddr_in to = to_sockaddr(routed_host, 4500);
    REQUIRE(::sendto(s.get(), payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) ==
            static_cast<ssize_t>(payload.size()));

    auto found = read_until(*dev, pool, headroom, [](std::span<const std::uint8_t> p) {
        auto ip = core::Ipv4View::check(p);
        return ip && ip->protocol() == core::ip_protocol::udp && ip->destination() == routed_host;
    });
    REQUIRE(found);
    CHECK(found->headroom == headroom);
    auto ip = core::Ipv4View::check(std::span<const std::uint8_t>(found->bytes));
    REQUIRE(ip);
    CHECK(ip->source() == tun_address);
    CHECK(ip->checksum_valid());
    CHECK(ip->total_length() == found->bytes.size());
    auto udp = core::UdpView::check(ip->payload());
    REQUIRE(udp);
    CHECK(udp->destination_port() == 4500);
    CHECK(udp->checksum_valid(ip->source(), ip->destination()));
    CHECK(std::string(udp->payload().begin(), udp->payload().end()) == payload);
    CHECK(dev->counters().rx_packets >= 1);
    CHECK(dev->counters().rx_errors == 0);
}

TEST_CASE("an ICMP echo request written into the TUN is answered back through it") {
    enter_private_netns();
    auto [dev, nl] = open_configured();
    core::BufferPool pool(8, 2048);
    constexpr std::size_t headroom = 64;

    // Echo request from a host "behind" the TUN to the TUN's own address.
    const std::uint8_t body[] = {'m', 'i', 'p', 's', 'e', 'c', 0, 1};
    std::vector<core::PacketBuf> out;
    out.push_back(pool.acquire(headroom));
    core::PacketBuf& pkt = out[0];
    std::size_t icmp_len = core::IcmpView::header_len + sizeof body;
    REQUIRE(pkt.put(core::Ipv4Header::len + icmp_len));
    core::Ipv4Header{.total_length = static_cast<std::uint16_t>(pkt.size()),
                     .identification = 0x1234,
                     .protocol = core::ip_protocol::icmp,
                     .source = routed_host,
                     .destination = tun_address}
        .emit(pkt.bytes());
    auto icmp = core::IcmpMutView::check(pkt.bytes().subspan(core::Ipv4Header::len));
    REQUIRE(icmp);
    icmp->set_type(core::icmp_type::echo_request);
    icmp->set_code(0);
    icmp->set_echo_identifier(0xBEEF);
    icmp->set_echo_sequence(7);
    std::copy(std::begin(body), std::end(body), icmp->body().begin());
    icmp->update_checksum();

    REQUIRE(dev->write(out) == 1);
    CHECK(dev->counters().tx_packets == 1);
    CHECK(dev->counters().tx_bytes == pkt.size());
    CHECK(dev->counters().tx_errors == 0);

    auto reply = read_until(*dev, pool, headroom, [](std::span<const std::uint8_t> p) {
        auto ip = core::Ipv4View::check(p);
        if (!ip || ip->protocol() != core::ip_protocol::icmp) return false;
        auto ic = core::IcmpView::check(ip->payload());
        return ic && ic->type() == core::icmp_type::echo_reply;
    });
    REQUIRE(reply);
    auto ip = core::Ipv4View::check(std::span<const std::uint8_t>(reply->bytes));
    REQUIRE(ip);
    CHECK(ip->source() == tun_address);
    CHECK(ip->destination() == routed_host);
    auto ic = core::IcmpView::check(ip->payload());
    REQUIRE(ic);
    CHECK(ic->checksum_valid());
    CHECK(ic->echo_identifier() == 0xBEEF);
    CHECK(ic->echo_sequence() == 7);
    CHECK(std::equal(ic->body().begin(), ic->body().end(), std::begin(body), std::end(body)));
}

TEST_CASE("LinuxDevice counts a packet too big for the buffer and a packet the kernel refuses") {
    enter_private_netns();
    auto [dev, nl] = open_configured();
    core::BufferPool small(4, 128);
    constexpr std::size_t headroom = 64;  // 64 bytes of room: too small for the datagram below

    Fd s(::socket(AF_INET, SOCK_DGRAM, 0));
    const std::string payload(200, 'x');
    sockaddr_in to = to_sockaddr(routed_host, 9);
    REQUIRE(::sendto(s.get(), payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to),
                     sizeof to) > 0);
    auto deadline = std::chrono::steady_clock::now() + 3s;
    while (dev->counters().rx_errors == 0 && std::chrono::steady_clock::now() < deadline) {
        if (!wait_readable(dev->fd(), 100ms)) continue;
        std::vector<core::PacketBuf> bufs;
        bufs.push_back(small.acquire(headroom));
        while (dev->read(bufs) > 0) {  // IPv6 noise fits; keep reading until the big one
            bufs[0].reset(headroom);
        }
    }
    CHECK(dev->counters().rx_errors == 1);
    CHECK(dev->last_error() == std::errc::message_size);

    // The kernel only takes IPv4 or IPv6 from a TUN without packet information.
    std::vector<core::PacketBuf> junk;
    junk.push_back(small.acquire(headroom));
    REQUIRE(junk[0].put(3));
    junk[0].bytes()[0] = 0x00;
    CHECK(dev->write(junk) == 0);  // dropped and counted, not retried
    CHECK(dev->counters().tx_errors == 1);
    CHECK(dev->counters().tx_failures[tun::WriteFailure::Other] == 1);
    CHECK(dev->counters().tx_packets == 0);
    CHECK(dev->last_error() == std::errc::invalid_argument);
}

namespace {

/// The interface's txqueuelen as the kernel reports it (SIOCGIFTXQLEN).
int kernel_tx_queue_len(const std::string& name) {
    Fd s(::socket(AF_INET, SOCK_DGRAM, 0));
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name.data(), name.size());
    REQUIRE(::ioctl(s.get(), SIOCGIFTXQLEN, &ifr) == 0);
    return ifr.ifr_qlen;
}

/// Routes `count` UDP datagrams into the TUN before anything reads it, then reads until the
/// device has nothing more: how many of them arrived.
std::size_t burst_through(tun::LinuxDevice& dev, std::size_t count) {
    Fd s(::socket(AF_INET, SOCK_DGRAM, 0));
    const int sndbuf = 64 << 20;  // the datagrams queued in the TUN stay charged to this socket
    REQUIRE(::setsockopt(s.get(), SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) == 0);
    const std::string payload(64, 'b');
    sockaddr_in to = to_sockaddr(routed_host, 4501);
    for (std::size_t i = 0; i < count; ++i)
        REQUIRE(::sendto(s.get(), payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) ==
                static_cast<ssize_t>(payload.size()));
    core::BufferPool pool(32, 2048);
    std::size_t arrived = 0;
    while (wait_readable(dev.fd(), 200ms)) {
        std::vector<core::PacketBuf> bufs;
        for (int i = 0; i < 32; ++i) bufs.push_back(pool.acquire(96));
        const std::size_t n = dev.read(bufs);
        for (std::size_t i = 0; i < n; ++i) {
            auto ip = core::Ipv4View::check(bufs[i].bytes());
            if (ip && ip->protocol() == core::ip_protocol::udp && ip->destination() == routed_host) ++arrived;
        }
        if (n == 0) break;
    }
    return arrived;
}

}  // namespace

TEST_CASE("LinuxDevice lengthens the TUN queue: a burst of 2000 packets routed in waits for the reader") {
    enter_private_netns();
    auto [dev, nl] = open_configured();
    CHECK(dev->tx_queue_len() == tun::LinuxDevice::default_tx_queue_len);
    CHECK(kernel_tx_queue_len(std::string(dev->name())) == static_cast<int>(tun::LinuxDevice::default_tx_queue_len));
    CHECK(burst_through(*dev, 2000) == 2000);
}

TEST_CASE("LinuxDevice with tx_queue_len 0 keeps the kernel's queue, which drops such a burst") {
    enter_private_netns();
    auto dev = tun::LinuxDevice::open("mtest0", {.tx_queue_len = 0});
    REQUIRE_MESSAGE(dev, dev.error().message());
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    const auto ifx = (*dev)->ifindex();
    REQUIRE(nl->add_address(ifx, tun_prefix));
    REQUIRE(nl->set_up(ifx, true));
    REQUIRE(nl->add_route({.destination = routed, .ifindex = ifx, .source = tun_address}));
    const int kernel_default = kernel_tx_queue_len("mtest0");
    CHECK((*dev)->tx_queue_len() == static_cast<std::uint32_t>(kernel_default));
    REQUIRE(kernel_default < 2000);
    // What the queue held arrived; the rest the kernel dropped (the interface's TX dropped).
    CHECK(burst_through(**dev, 2000) <= static_cast<std::size_t>(kernel_default));
}

TEST_CASE("NetlinkMonitor sees the TUN come up, get an address, lose it, and go away") {
    enter_private_netns();
    auto mon = tun::NetlinkMonitor::open();
    REQUIRE(mon);
    std::vector<core::ControlEvent> events;
    CHECK(mon->drain(events) == 0);  // nothing yet; does not block

    auto dev = tun::LinuxDevice::open("mtest0");
    REQUIRE(dev);
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    auto ifx = (*dev)->ifindex();
    REQUIRE(nl->set_up(ifx, true));
    REQUIRE(nl->add_address(ifx, tun_prefix));

    auto link_up = [&] {
        return find_event<core::LinkChanged>(events,
                                             [&](const core::LinkChanged& e) { return e.ifindex == ifx && e.up; });
    };
    auto address = [&](bool added) {
        return find_event<core::AddressChanged>(events, [&](const core::AddressChanged& e) {
            return e.ifindex == ifx && e.added == added;
        });
    };
    REQUIRE(drain_until(*mon, events, [&] { return link_up() && address(true); }));
    CHECK(link_up()->ifname == "mtest0");
    CHECK(address(true)->prefix == tun_prefix);
    // The first sight of the interface (created, down) came before it went up.
    auto first = find_event<core::LinkChanged>(events, [&](const core::LinkChanged& e) { return e.ifindex == ifx; });
    REQUIRE(first);
    CHECK_FALSE(first->up);

    REQUIRE(nl->del_address(ifx, tun_prefix));
    REQUIRE(drain_until(*mon, events, [&] { return address(false) != nullptr; }));
    CHECK(address(false)->prefix == tun_prefix);

    events.clear();
    dev.value().reset();
    REQUIRE(drain_until(*mon, events, [&] {
        return find_event<core::LinkChanged>(events,
                                             [&](const core::LinkChanged& e) { return e.ifindex == ifx && !e.up; });
    }));
    CHECK(mon->overruns() == 0);
    CHECK(mon->errors() == 0);
    CHECK(mon->malformed_count() == 0);
}

TEST_CASE("ScopedNetConfig removes what it added and leaves what it found") {
    enter_private_netns();
    auto dev = tun::LinuxDevice::open("mtest0");
    REQUIRE(dev);
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    auto ifx = (*dev)->ifindex();
    REQUIRE(nl->set_up(ifx, true));

    auto pre_existing = *core::Ipv4Prefix::parse("10.199.0.1/24");
    REQUIRE(nl->add_address(ifx, pre_existing));
    {
        tun::ScopedNetConfig cfg(*nl);
        CHECK(cfg.add_address(ifx, pre_existing).error() == std::errc::file_exists);
        REQUIRE(cfg.add_address(ifx, tun_prefix));
        REQUIRE(cfg.add_route({.destination = routed, .ifindex = ifx, .source = tun_address}));
        CHECK(cfg.size() == 2);
        CHECK(nl->addresses(ifx)->size() == 2);
        CHECK(std::get<core::Ipv4Address>(route_source(routed_host)) == tun_address);
    }
    CHECK(std::get<int>(route_source(routed_host)) == ENETUNREACH);
    auto left = nl->addresses(ifx);
    REQUIRE(left);
    REQUIRE(left->size() == 1);
    CHECK((*left)[0].prefix == pre_existing);

    {
        tun::ScopedNetConfig cfg(*nl);
        REQUIRE(cfg.add_route({.destination = routed, .ifindex = ifx}));
        cfg.dismiss();
    }
    CHECK(std::holds_alternative<core::Ipv4Address>(route_source(routed_host)));

    tun::ScopedNetConfig cfg(*nl);
    REQUIRE(cfg.add_address(ifx, tun_prefix));
    REQUIRE(nl->del_address(ifx, tun_prefix));  // removed behind its back
    CHECK(cfg.undo().error() == std::errc::address_not_available);
    CHECK(cfg.size() == 0);
}
