// SPDX-License-Identifier: MIT
// The transport over real loopback UDP sockets (no root: ports the kernel picks on 127.0.0.1).
// What a stage wrote into an outer header must reach the kernel on a UDP socket too: TOS with
// its ECN bits and TTL per packet, DF and a zero checksum as socket state; the receiving side
// rebuilds the header with the TOS and TTL the datagram arrived with. A send the kernel
// refuses is counted with its reason and does not take the rest of the batch with it.
#include <doctest/doctest.h>

#include <array>
#include <string>
#include <vector>

#include "tests/apps/loopback_transport.hpp"

using namespace mipsec;
using namespace mipsec::test;

TEST_CASE("TOS with its ECN bits and TTL cross a UDP socket both ways; DF and a zero checksum set the socket") {
    core::BufferPool pool(32, 2048);
    auto a = open_loopback();
    auto b = open_loopback();
    const int fd = a.sockets()[0].fd;
    // A UDP socket starts without DF, whatever the kernel's default, and with checksums.
    CHECK(int_option(fd, IPPROTO_IP, IP_MTU_DISCOVER) == IP_PMTUDISC_DONT);
    CHECK(int_option(fd, SOL_SOCKET, SO_NO_CHECK) == 0);

    // EF with ECT(1), DF, a zero UDP checksum: ESP-in-UDP of an ECN-capable inner packet.
    send(a, pool, {{.tos = 0xB9, .dont_fragment = true, .ttl = 77, .source_port = port_of(a), .destination_port = port_of(b)}});
    CHECK(a.sockets()[0].counters.tx_packets == 1);
    CHECK(int_option(fd, IPPROTO_IP, IP_MTU_DISCOVER) == IP_PMTUDISC_DO);
    CHECK(int_option(fd, SOL_SOCKET, SO_NO_CHECK) == 1);
    auto got = receive(b, pool, 1);
    REQUIRE(got.size() == 1);
    auto ip = core::Ipv4View::check(got[0].bytes());
    REQUIRE(ip);
    CHECK(ip->tos() == 0xB9);  // read from IP_RECVTOS, not made up
    CHECK(ip->ttl() == 77);
    CHECK(ip->source() == loopback);
    auto udp = core::UdpView::check(ip->payload());
    REQUIRE(udp);
    CHECK(udp->source_port() == port_of(a));
    CHECK(udp->destination_port() == port_of(b));
    CHECK(std::string(udp->payload().begin(), udp->payload().end()) == "payload");
    // The addresses live in the rebuilt headers only: the transport leaves no metadata.
    CHECK_FALSE(got[0].meta().esp_in_udp);

    // The next packet wants neither DF nor a zero checksum: the socket follows it back.
    send(a, pool, {{.source_port = port_of(a), .destination_port = port_of(b), .checksum = true}});
    CHECK(int_option(fd, IPPROTO_IP, IP_MTU_DISCOVER) == IP_PMTUDISC_DONT);
    CHECK(int_option(fd, SOL_SOCKET, SO_NO_CHECK) == 0);
    got = receive(b, pool, 1);
    REQUIRE(got.size() == 1);
    ip = core::Ipv4View::check(got[0].bytes());
    REQUIRE(ip);
    CHECK(ip->tos() == 0);
    CHECK(ip->ttl() == 64);
}

TEST_CASE("each packet of one batch keeps its own TOS, CE marks included") {
    core::BufferPool pool(32, 2048);
    auto a = open_loopback();
    auto b = open_loopback();
    const std::array<std::uint8_t, 4> tos = {0x03, 0x00, 0x48, 0xB8};  // CE, none, AF21, EF
    std::vector<Outer> batch;
    for (std::size_t i = 0; i < tos.size(); ++i)
        batch.push_back({.tos = tos[i], .dont_fragment = i % 2 == 0, .source_port = port_of(a), .destination_port = port_of(b),
                         .checksum = i == 3, .payload = "packet " + std::to_string(i)});
    send(a, pool, batch);
    CHECK(a.sockets()[0].counters.tx_packets == tos.size());
    auto got = receive(b, pool, tos.size());
    REQUIRE(got.size() == tos.size());
    for (std::size_t i = 0; i < tos.size(); ++i) {
        CAPTURE(i);
        auto ip = core::Ipv4View::check(got[i].bytes());
        REQUIRE(ip);
        auto udp = core::UdpView::check(ip->payload());
        REQUIRE(udp);
        CHECK(std::string(udp->payload().begin(), udp->payload().end()) == "packet " + std::to_string(i));
        CHECK(ip->tos() == tos[i]);
    }
}

TEST_CASE("a send the kernel refuses is counted with its reason; the rest of the batch still leaves") {
    core::BufferPool pool(32, 2048);
    auto a = open_loopback();
    auto b = open_loopback();
    // Destination port 0 is refused by udp_sendmsg (EINVAL) before anything is sent, so
    // sendmmsg stops at the second packet of the batch.
    send(a, pool, {{.source_port = port_of(a), .destination_port = port_of(b), .payload = "first"},
                   {.source_port = port_of(a), .destination_port = 0, .payload = "refused"},
                   {.source_port = port_of(a), .destination_port = port_of(b), .payload = "third"}});
    const auto& c = a.sockets()[0].counters;
    CHECK(c.tx_packets == 2);
    CHECK(c.tx_errors == 1);
    CHECK(c.tx_failures[tun::WriteFailure::Other] == 1);
    auto got = receive(b, pool, 2);
    REQUIRE(got.size() == 2);
    auto last = core::UdpView::check(core::Ipv4View::check(got[1].bytes())->payload());
    CHECK(std::string(last->payload().begin(), last->payload().end()) == "third");
    CHECK(a.path_mtus().empty());  // only a packet refused as too big teaches a path MTU
}

TEST_CASE("a packet no socket can carry is counted as unroutable") {
    core::BufferPool pool(8, 2048);
    auto a = open_loopback();
    auto buf = pool.acquire(headroom);
    REQUIRE(buf.put(core::Ipv4Header::len + 4));
    core::Ipv4Header{.total_length = core::Ipv4Header::len + 4, .protocol = core::ip_protocol::gre, .source = loopback, .destination = loopback}
        .emit(buf.bytes());
    a.send(std::span(&buf, 1));
    CHECK(a.unroutable() == 1);
    CHECK(a.sockets()[0].counters.tx_packets == 0);
}

TEST_CASE("sockets get the configured buffers, and datagrams the kernel dropped for a full one are counted") {
    core::BufferPool pool(64, 2048);
    auto big = open_loopback();
    // Unprivileged, the kernel caps the request at net.core.rmem_max; as root it is granted.
    CHECK(big.sockets()[0].receive_buffer >= 200 * 1024);
    CHECK(big.sockets()[0].send_buffer >= 200 * 1024);
    auto small = open_loopback(65536);
    CHECK(small.sockets()[0].receive_buffer <= 65536);
    auto sender = open_loopback();
    // Far more than 64 KiB in flight before the receiver reads anything: the kernel drops.
    for (int round = 0; round < 50; ++round) {
        std::vector<Outer> burst(8, Outer{.source_port = port_of(sender), .destination_port = port_of(small),
                                          .payload = std::string(1200, 'x')});
        send(sender, pool, burst);
    }
    // A datagram carries the drop count as of its own arrival: drain what was queued before
    // the overflow, then one sent after it tells.
    while (!receive(small, pool, 8).empty()) {
    }
    send(sender, pool, {Outer{.source_port = port_of(sender), .destination_port = port_of(small)}});
    CHECK(receive(small, pool, 1).size() == 1);
    const auto dropped = small.sockets()[0].counters.rx_overflows;
    CAPTURE(dropped);
    CHECK(dropped > 0);
    CHECK(dropped < 400);
}
