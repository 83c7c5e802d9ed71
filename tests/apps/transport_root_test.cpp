// SPDX-License-Identifier: MIT
// The transport where only root can set the scene: a private network namespace whose loopback
// MTU is 1300, so the kernel refuses big packets the way a small path MTU does. A refused send
// is counted as message_too_long and teaches the path MTU once per change, from the routing
// table (IP_MTU of a socket connected to the destination), not from the packet. Transports
// that share their ports (one per worker) are tested here too: only root may open the raw
// sockets a primary receives on and a secondary sends through.
#include <doctest/doctest.h>

#include <array>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <unistd.h>

#include "tests/apps/loopback_transport.hpp"
#include "tests/support/private_netns.hpp"
#include "tun/netlink.hpp"

using namespace mipsec;
using namespace mipsec::test;

namespace {

constexpr std::uint32_t small_mtu = 1300;
const std::string big(1400, 'x');

// Loopback up with a small MTU in a namespace of our own.
void enter_small_mtu_netns() {
    enter_private_netns();
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    constexpr std::uint32_t lo = 1;  // the first interface of every namespace
    REQUIRE(nl->set_mtu(lo, small_mtu));
    REQUIRE(nl->set_up(lo, true));
}

core::Ipv4Address loopback_host(std::uint32_t n) { return core::Ipv4Address{0x7F000000 + n}; }

}  // namespace

TEST_CASE("a DF datagram over the path MTU is refused, counted, and teaches the path MTU once") {
    enter_small_mtu_netns();
    core::BufferPool pool(32, 4096);
    auto a = open_loopback();
    auto b = open_loopback();

    send(a, pool, {{.dont_fragment = true, .source_port = port_of(a), .destination_port = port_of(b), .payload = big}});
    const auto& c = a.sockets()[0].counters;
    CHECK(c.tx_packets == 0);
    CHECK(c.tx_errors == 1);
    CHECK(c.tx_failures[tun::WriteFailure::MessageTooLong] == 1);
    REQUIRE(a.path_mtus().size() == 1);
    CHECK(a.path_mtus()[0].destination == loopback);
    CHECK(a.path_mtus()[0].mtu == small_mtu);
    auto changes = a.take_path_mtu_changes();
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].mtu == small_mtu);

    // The same refusal again: counted, but the path MTU did not change.
    send(a, pool, {{.dont_fragment = true, .source_port = port_of(a), .destination_port = port_of(b), .payload = big}});
    CHECK(c.tx_failures[tun::WriteFailure::MessageTooLong] == 2);
    CHECK(a.take_path_mtu_changes().empty());

    // Without DF the kernel fragments it and the receiver gets it whole.
    send(a, pool, {{.source_port = port_of(a), .destination_port = port_of(b), .payload = big}});
    CHECK(c.tx_packets == 1);
    auto got = receive(b, pool, 1);
    REQUIRE(got.size() == 1);
    CHECK(got[0].size() == core::Ipv4Header::len + core::UdpHeader::len + big.size());
}

TEST_CASE("datagrams too big for the path never leave as one UDP_SEGMENT send: without DF the kernel fragments each, with DF each is refused and counted") {
    // The link MTU in the config (1500) is larger than the path's (1300): the first batch
    // groups them and the kernel refuses the GSO send whole, DF or not (it never fragments a
    // segment); resent one by one, each meets the fate it would have met without GSO.
    enter_small_mtu_netns();
    core::BufferPool pool(32, 4096);
    auto a = open_loopback();
    auto b = open_loopback();
    REQUIRE(a.sockets()[0].gso);
    const auto& c = a.sockets()[0].counters;
    const Outer plain{.source_port = port_of(a), .destination_port = port_of(b), .payload = big};
    Outer df = plain;
    df.dont_fragment = true;

    send(a, pool, {plain, plain});
    CHECK(c.gso_fallbacks == 1);
    CHECK(c.gso_sends == 0);
    CHECK(c.tx_packets == 2);
    auto got = receive(b, pool, 2);
    REQUIRE(got.size() == 2);
    for (const auto& p : got) CHECK(p.size() == core::Ipv4Header::len + core::UdpHeader::len + big.size());
    CHECK(a.path_mtus().empty());  // nothing was refused for good: nothing learned

    send(a, pool, {df, df});
    CHECK(c.gso_fallbacks == 2);
    CHECK(c.tx_failures[tun::WriteFailure::MessageTooLong] == 2);
    REQUIRE(a.path_mtus().size() == 1);
    CHECK(a.path_mtus()[0].mtu == small_mtu);

    // Once the path MTU is known, such datagrams are not grouped at all: no refused GSO send
    // in front of every batch, DF or not.
    send(a, pool, {df, df});
    CHECK(c.gso_fallbacks == 2);
    CHECK(c.tx_failures[tun::WriteFailure::MessageTooLong] == 4);
    send(a, pool, {plain, plain});
    CHECK(c.gso_fallbacks == 2);
    CHECK(c.tx_packets == 4);
    CHECK(receive(b, pool, 2).size() == 2);

    // Datagrams that fit the path still share one send.
    Outer fits = df;
    fits.payload = std::string(1000, 'y');
    send(a, pool, {fits, fits, fits});
    CHECK(c.gso_sends == 1);
    CHECK(c.gso_segments == 3);
    CHECK(receive(b, pool, 3).size() == 3);
}

TEST_CASE("a raw socket refuses a packet bigger than the interface, DF or not, and counts it") {
    enter_small_mtu_netns();
    core::BufferPool pool(8, 4096);
    shell::TransportConfig config;
    config.local = loopback;
    config.raw_protocols = {core::ip_protocol::esp};
    shell::SocketTransport t(config, 8);
    auto buf = pool.acquire(headroom);
    const std::size_t len = core::Ipv4Header::len + big.size();
    REQUIRE(buf.put(len));
    core::Ipv4Header{.total_length = static_cast<std::uint16_t>(len), .protocol = core::ip_protocol::esp, .source = loopback, .destination = loopback}
        .emit(buf.bytes());
    t.send(std::span(&buf, 1));
    CHECK(t.sockets()[0].counters.tx_failures[tun::WriteFailure::MessageTooLong] == 1);
    REQUIRE(t.path_mtus().size() == 1);
    CHECK(t.path_mtus()[0].mtu == small_mtu);
}

TEST_CASE("the path MTU table keeps the newest destinations") {
    enter_small_mtu_netns();
    core::BufferPool pool(32, 4096);
    auto a = open_loopback();
    const std::size_t destinations = shell::Transport::path_mtu_capacity + 6;
    for (std::uint32_t n = 1; n <= destinations; ++n)
        send(a, pool, {{.dont_fragment = true, .source_port = port_of(a), .destination_port = 9, .payload = big, .destination = loopback_host(n)}});
    CHECK(a.take_path_mtu_changes().size() == destinations);
    REQUIRE(a.path_mtus().size() == shell::Transport::path_mtu_capacity);
    CHECK(a.path_mtus().front().destination == loopback_host(7));
    CHECK(a.path_mtus().back().destination == loopback_host(static_cast<std::uint32_t>(destinations)));
}

TEST_CASE("a raw socket skips and counts packets that came in on the node's own device") {
    enter_small_mtu_netns();
    core::BufferPool pool(32, 4096);
    shell::TransportConfig config;
    config.local = core::Ipv4Address{};  // like a mobile node: any local address
    config.raw_protocols = {4};
    shell::SocketTransport raw(config, 8);
    auto sender = open_loopback();
    // An IP-in-IP packet over loopback: to the raw socket it arrives on "lo" (ifindex 1).
    auto send_ipip = [&] {
        std::vector<core::PacketBuf> batch;
        auto buf = pool.acquire(headroom);
        REQUIRE(buf.put(40));
        core::Ipv4Header outer;
        outer.total_length = 40;
        outer.protocol = 4;
        outer.source = loopback;
        outer.destination = loopback;
        outer.emit(buf.bytes());
        core::Ipv4Header inner;
        inner.total_length = 20;
        inner.protocol = 59;
        inner.source = loopback_host(2);
        inner.destination = loopback_host(3);
        inner.emit(buf.bytes().subspan(20));
        shell::TransportConfig sc;
        sc.local = loopback;
        sc.raw_protocols = {shell::Transport::any_protocol};
        shell::SocketTransport out(sc, 8);
        batch.push_back(std::move(buf));
        out.send(batch);
    };
    auto receive_raw = [&] {
        std::vector<core::PacketBuf> bufs;
        for (int i = 0; i < 4; ++i) bufs.push_back(pool.acquire(headroom));
        pollfd p{raw.sockets()[0].fd, POLLIN, 0};
        (void)::poll(&p, 1, 300);
        return raw.receive(0, bufs);
    };
    send_ipip();
    CHECK(receive_raw() == 1);
    raw.ignore_inbound_from(1);
    send_ipip();
    CHECK(receive_raw() == 0);
    CHECK(raw.sockets()[0].counters.rx_own_device == 1);
}

namespace {

// Loopback up, its MTU as it comes, in a namespace of our own.
void enter_netns() {
    enter_private_netns();
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    REQUIRE(nl->set_up(1, true));
}

// A plain UDP socket on 127.0.0.1 at a port the kernel picks; closes itself.
struct PlainSocket {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    std::uint16_t port = 0;
    PlainSocket() {
        REQUIRE(fd >= 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(loopback.value);
        REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
        socklen_t len = sizeof sa;
        REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
        port = ntohs(sa.sin_port);
    }
    PlainSocket(const PlainSocket&) = delete;
    PlainSocket& operator=(const PlainSocket&) = delete;
    ~PlainSocket() { ::close(fd); }
    void send_to(std::uint16_t to, const std::string& payload) const {
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_port = htons(to);
        sa.sin_addr.s_addr = htonl(loopback.value);
        REQUIRE(::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa) ==
                static_cast<ssize_t>(payload.size()));
    }
};

// A whole outer IPv4 packet of `protocol` carrying an inner IPv4 header, as a stage builds it.
core::PacketBuf whole_packet(core::BufferPool& pool, std::uint8_t protocol) {
    auto buf = pool.acquire(headroom);
    REQUIRE(buf.put(40));
    core::Ipv4Header{.total_length = 40, .protocol = protocol, .source = loopback, .destination = loopback}.emit(buf.bytes());
    core::Ipv4Header{.total_length = 20, .protocol = 59, .source = loopback_host(2), .destination = loopback_host(3)}.emit(
        buf.bytes().subspan(20));
    return buf;
}

std::size_t raw_index(const shell::Transport& t, std::uint8_t protocol) {
    for (std::size_t i = 0; i < t.sockets().size(); ++i)
        if (t.sockets()[i].kind == shell::Transport::Kind::Raw && t.sockets()[i].protocol == protocol) return i;
    FAIL("no raw socket for protocol ", int(protocol));
    return 0;
}

}  // namespace

TEST_CASE("a primary and a secondary sharing a port by SO_REUSEPORT: each datagram reaches one of them once, each source always the same one") {
    enter_netns();
    using Sharing = shell::SocketTransport::Sharing;
    shell::TransportConfig config;
    config.local = loopback;
    config.udp_ports = {0};
    shell::SocketTransport primary(config, 32, Sharing{.reuse_port = true});
    shell::SocketTransport secondary(config, 32, shell::SocketTransport::secondary_of(primary));
    const std::uint16_t port = port_of(primary);
    REQUIRE(port_of(secondary) == port);

    constexpr std::size_t sources = 64;
    constexpr std::size_t per_source = 3;
    std::vector<std::unique_ptr<PlainSocket>> clients;
    for (std::size_t c = 0; c < sources; ++c) clients.push_back(std::make_unique<PlainSocket>());
    for (std::size_t k = 0; k < per_source; ++k)
        for (std::size_t c = 0; c < sources; ++c) clients[c]->send_to(port, std::to_string(c) + "/" + std::to_string(k));

    core::BufferPool pool(256, 2048);
    std::map<std::string, int> copies;                            // payload -> times received
    std::map<std::uint16_t, std::set<int>> transports_of_source;  // client port -> which transports
    std::array<std::size_t, 2> received{};
    std::array<shell::SocketTransport*, 2> transports{&primary, &secondary};
    for (int rounds = 0; received[0] + received[1] < sources * per_source && rounds < 20; ++rounds) {
        for (int t = 0; t < 2; ++t) {
            std::vector<core::PacketBuf> bufs;
            for (int i = 0; i < 32; ++i) bufs.push_back(pool.acquire(headroom));
            const std::size_t n = transports[static_cast<std::size_t>(t)]->receive(0, bufs);
            for (std::size_t i = 0; i < n; ++i) {
                auto ip = core::Ipv4View::check(bufs[i].bytes());
                REQUIRE(ip);
                auto udp = core::UdpView::check(ip->payload());
                REQUIRE(udp);
                CHECK(udp->destination_port() == port);
                ++copies[std::string(udp->payload().begin(), udp->payload().end())];
                transports_of_source[udp->source_port()].insert(t);
            }
            received[static_cast<std::size_t>(t)] += n;
        }
        std::array<pollfd, 2> p{pollfd{primary.sockets()[0].fd, POLLIN, 0}, pollfd{secondary.sockets()[0].fd, POLLIN, 0}};
        (void)::poll(p.data(), p.size(), 50);
    }
    CAPTURE(received[0]);
    CAPTURE(received[1]);
    CHECK(received[0] + received[1] == sources * per_source);
    CHECK(copies.size() == sources * per_source);
    // By the pair, not structured bindings: CAPTURE's lambda may not name a binding (C++20).
    for (const auto& copy : copies) {
        CAPTURE(copy.first);
        CHECK(copy.second == 1);
    }
    // The kernel hashes the 4-tuple: 64 sources all on one socket would be a 2^-63 chance.
    CHECK(received[0] > 0);
    CHECK(received[1] > 0);
    REQUIRE(transports_of_source.size() == sources);
    for (const auto& source : transports_of_source) {
        CAPTURE(source.first);
        CHECK(source.second.size() == 1);
    }
}

TEST_CASE("a secondary sends UDP from the shared port and the stage's source, other protocols through its send-only IPPROTO_RAW socket") {
    enter_netns();
    using Sharing = shell::SocketTransport::Sharing;
    shell::TransportConfig config;
    config.local = core::Ipv4Address{};  // like a mobile node: the source is the stage's
    config.udp_ports = {0};
    config.raw_protocols = {4};
    shell::SocketTransport primary(config, 8, Sharing{.reuse_port = true});
    shell::SocketTransport secondary(config, 8, shell::SocketTransport::secondary_of(primary));
    const std::uint16_t port = port_of(primary);

    // Only the primary receives raw: a second raw socket for protocol 4 would get a copy of
    // every inbound IP-in-IP packet.
    REQUIRE(secondary.sockets().size() == 2);
    CHECK(secondary.sockets()[1].kind == shell::Transport::Kind::Raw);
    CHECK(secondary.sockets()[1].protocol == shell::Transport::any_protocol);
    CHECK_FALSE(secondary.receives(1));
    CHECK(secondary.sockets()[1].port == 0);

    core::BufferPool pool(16, 2048);
    PlainSocket receiver;
    const core::Ipv4Address care_of = loopback_host(5);
    auto datagram = outer_packet(pool, {.source_port = port, .destination_port = receiver.port, .payload = "from the secondary"});
    core::Ipv4MutView::check(datagram.bytes())->set_source(care_of);
    secondary.send(std::span(&datagram, 1));
    CHECK(secondary.sockets()[0].counters.tx_packets == 1);
    CHECK(primary.sockets()[0].counters.tx_packets == 0);
    pollfd p{receiver.fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 1000) == 1);
    std::array<char, 64> got{};
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    const auto len = ::recvfrom(receiver.fd, got.data(), got.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    CHECK(std::string(got.data(), static_cast<std::size_t>(std::max<ssize_t>(len, 0))) == "from the secondary");
    CHECK(ntohs(from.sin_port) == port);
    CHECK(core::Ipv4Address{ntohl(from.sin_addr.s_addr)} == care_of);

    // IP-in-IP leaves through the secondary's raw socket and reaches the primary's once.
    auto ipip = whole_packet(pool, 4);
    secondary.send(std::span(&ipip, 1));
    CHECK(secondary.sockets()[1].counters.tx_packets == 1);
    const std::size_t raw = raw_index(primary, 4);
    std::vector<core::PacketBuf> bufs;
    for (int i = 0; i < 4; ++i) bufs.push_back(pool.acquire(headroom));
    pollfd r{primary.sockets()[raw].fd, POLLIN, 0};
    REQUIRE(::poll(&r, 1, 1000) == 1);
    REQUIRE(primary.receive(raw, bufs) == 1);
    CHECK(core::Ipv4View::check(bufs[0].bytes())->protocol() == 4);
    CHECK(core::Ipv4View::check(bufs[0].bytes())->payload().size() == 20);
    for (auto& b : bufs) b = pool.acquire(headroom);
    CHECK(primary.receive(raw, bufs) == 0);

    // A protocol the config does not name is no more routable through a secondary than
    // through the primary.
    auto gre = whole_packet(pool, 47);
    secondary.send(std::span(&gre, 1));
    CHECK(secondary.unroutable() == 1);
    CHECK(secondary.sockets()[1].counters.tx_packets == 1);
}
