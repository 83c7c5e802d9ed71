// SPDX-License-Identifier: MIT
// The transport where only root can set the scene: a private network namespace whose loopback
// MTU is 1300, so the kernel refuses big packets the way a small path MTU does. A refused send
// is counted as message_too_long and teaches the path MTU once per change, from the routing
// table (IP_MTU of a socket connected to the destination), not from the packet.
#include <doctest/doctest.h>

#include <string>
#include <vector>

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
