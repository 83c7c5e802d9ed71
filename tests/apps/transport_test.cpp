// SPDX-License-Identifier: MIT
// The transport over real loopback UDP sockets (no root: ports the kernel picks on 127.0.0.1).
// What a stage wrote into an outer header must reach the kernel on a UDP socket too: TOS with
// its ECN bits and TTL per packet, DF and a zero checksum as socket state; the receiving side
// rebuilds the header with the TOS and TTL the datagram arrived with. A send the kernel
// refuses is counted with its reason and does not take the rest of the batch with it.
// UDP segmentation offload and receive coalescing work on loopback unprivileged: a GSO send
// crosses lo as one super-datagram and a UDP_GRO socket receives it whole, so both sides of
// the split are tested against the real kernel.
#include <doctest/doctest.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <netinet/udp.h>

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

namespace {
shell::SocketTransport open_offloading(bool gso, bool gro, shell::SocketTransport::SendBatch send_batch = {},
                                       std::optional<core::Logger> log = std::nullopt) {
    shell::TransportConfig config;
    config.local = loopback;
    config.udp_ports = {0};
    config.udp_gso = gso;
    config.udp_gro = gro;
    return shell::SocketTransport(config, 32, std::move(log), std::move(send_batch));
}

// Payload `index` of `len` bytes: every byte says which datagram it belongs to, so a split at
// the wrong boundary shows.
std::string numbered(std::size_t index, std::size_t len) { return std::string(len, static_cast<char>('A' + index)); }

std::string payload_of(const core::PacketBuf& buf) {
    auto ip = core::Ipv4View::check(buf.bytes());
    REQUIRE(ip);
    auto udp = core::UdpView::check(ip->payload());
    REQUIRE(udp);
    return std::string(udp->payload().begin(), udp->payload().end());
}

bool carries_segment(const mmsghdr& m) {
    auto& h = const_cast<msghdr&>(m.msg_hdr);
    for (auto* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c))
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_SEGMENT) return true;
    return false;
}
}  // namespace

TEST_CASE("ten datagrams of one size leave as one UDP_SEGMENT send and arrive split at their own boundaries") {
    core::BufferPool pool(64, 2048);
    auto a = open_offloading(true, true);
    auto b = open_offloading(true, true);
    REQUIRE(a.sockets()[0].gso);  // UDP_SEGMENT since Linux 4.18, UDP_GRO since 5.0
    REQUIRE(b.sockets()[0].gro);
    std::vector<Outer> batch;
    for (std::size_t i = 0; i < 10; ++i)  // nine of 1000 bytes, a short last one: ESP-in-UDP, zero checksum
        batch.push_back({.tos = 0x02, .source_port = port_of(a), .destination_port = port_of(b), .payload = numbered(i, i == 9 ? 321 : 1000)});
    send(a, pool, batch);
    const auto& sent = a.sockets()[0].counters;
    CHECK(sent.gso_sends == 1);
    CHECK(sent.gso_segments == 10);
    CHECK(sent.tx_packets == 10);
    CHECK(sent.tx_bytes == 9 * 1000 + 321);
    CHECK(sent.tx_errors == 0);
    // The kernel refuses GSO without checksums: the coalesced run carried them.
    CHECK(int_option(a.sockets()[0].fd, SOL_SOCKET, SO_NO_CHECK) == 0);

    auto got = receive(b, pool, 10);
    REQUIRE(got.size() == 10);
    for (std::size_t i = 0; i < got.size(); ++i) {
        CAPTURE(i);
        CHECK(payload_of(got[i]) == numbered(i, i == 9 ? 321 : 1000));
        auto ip = core::Ipv4View::check(got[i].bytes());
        CHECK(ip->total_length() == 28 + (i == 9 ? 321 : 1000));
        CHECK(ip->tos() == 0x02);  // every segment keeps what the coalesced datagram arrived with
        CHECK(core::UdpView::check(ip->payload())->source_port() == port_of(a));
    }
    const auto& received = b.sockets()[0].counters;
    CHECK(received.gro_receives == 1);  // lo hands the super-datagram to a UDP_GRO socket whole
    CHECK(received.gro_segments == 10);
    CHECK(received.rx_packets == 10);
    CHECK(received.rx_bytes == 9 * 1000 + 321);
}

TEST_CASE("segments beyond the buffers offered wait for the next receive, none lost") {
    core::BufferPool pool(64, 2048);
    auto a = open_offloading(true, true);
    auto b = open_offloading(true, true);
    std::vector<Outer> batch;
    for (std::size_t i = 0; i < 10; ++i) batch.push_back({.source_port = port_of(a), .destination_port = port_of(b), .payload = numbered(i, 600)});
    send(a, pool, batch);
    REQUIRE(a.sockets()[0].counters.gso_sends == 1);
    pollfd p{b.sockets()[0].fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 1000) == 1);
    std::vector<std::string> payloads;
    std::vector<std::size_t> counts;
    for (int call = 0; call < 5; ++call) {
        std::vector<core::PacketBuf> bufs;
        for (int i = 0; i < 3; ++i) bufs.push_back(pool.acquire(headroom));
        const std::size_t n = b.receive(0, bufs);  // no poll: the rest is ours already
        counts.push_back(n);
        for (std::size_t i = 0; i < n; ++i) payloads.push_back(payload_of(bufs[i]));
    }
    CHECK(counts == std::vector<std::size_t>{3, 3, 3, 1, 0});  // fewer than offered only once drained
    REQUIRE(payloads.size() == 10);
    for (std::size_t i = 0; i < payloads.size(); ++i) CHECK(payloads[i] == numbered(i, 600));
    CHECK(b.sockets()[0].counters.rx_errors == 0);
}

TEST_CASE("a receive fills every buffer offered while the socket holds more than one read of scratch") {
    core::BufferPool pool(64, 2048);
    auto a = open_offloading(false, false);  // 20 separate datagrams
    auto b = open_offloading(true, true);    // reads at most 16 messages into scratch at a time
    send(a, pool, std::vector<Outer>(20, Outer{.source_port = port_of(a), .destination_port = port_of(b), .payload = numbered(2, 200)}));
    REQUIRE(a.sockets()[0].counters.tx_packets == 20);
    pollfd p{b.sockets()[0].fd, POLLIN, 0};
    REQUIRE(::poll(&p, 1, 1000) == 1);
    std::vector<core::PacketBuf> bufs;
    for (int i = 0; i < 24; ++i) bufs.push_back(pool.acquire(headroom));
    // Fewer than offered must mean drained: the node waits for readability only then.
    CHECK(b.receive(0, bufs) == 20);
    CHECK(b.receive(0, bufs) == 0);
}

TEST_CASE("only datagrams to one peer with one size and the same ancillary data share a UDP_SEGMENT send") {
    core::BufferPool pool(64, 2048);
    auto a = open_offloading(true, false);
    auto b = open_offloading(true, false);  // without GRO each segment arrives alone
    auto c = open_offloading(true, false);
    const auto pa = port_of(a), pb = port_of(b), pc = port_of(c);
    std::vector<Outer> batch = {
        {.source_port = pa, .destination_port = pb, .payload = numbered(0, 500)},  // group 1: three to b
        {.source_port = pa, .destination_port = pb, .payload = numbered(1, 500)},
        {.source_port = pa, .destination_port = pb, .payload = numbered(2, 500)},
        {.source_port = pa, .destination_port = pc, .payload = numbered(3, 500)},  // group 2: two to c
        {.source_port = pa, .destination_port = pc, .payload = numbered(4, 500)},
        {.source_port = pa, .destination_port = pb, .payload = numbered(5, 500)},  // group 3: a shorter one ends it
        {.source_port = pa, .destination_port = pb, .payload = numbered(6, 300)},
        {.source_port = pa, .destination_port = pb, .payload = numbered(7, 500)},  // alone: a longer one follows
        {.source_port = pa, .destination_port = pb, .payload = numbered(8, 800)},  // group 4: same size, same TOS
        {.source_port = pa, .destination_port = pb, .payload = numbered(9, 800)},
        {.tos = 0xB8, .source_port = pa, .destination_port = pb, .payload = numbered(10, 800)},  // alone: another TOS
        {.ttl = 9, .source_port = pa, .destination_port = pb, .payload = numbered(11, 800)},     // alone: another TTL
    };
    send(a, pool, batch);
    const auto& sent = a.sockets()[0].counters;
    CHECK(sent.gso_sends == 4);
    CHECK(sent.gso_segments == 9);
    CHECK(sent.tx_packets == 12);
    CHECK(sent.tx_errors == 0);
    auto at_b = receive(b, pool, 10);
    REQUIRE(at_b.size() == 10);
    const std::array<std::size_t, 10> b_order = {0, 1, 2, 5, 6, 7, 8, 9, 10, 11};
    for (std::size_t i = 0; i < b_order.size(); ++i) {
        CAPTURE(i);
        CHECK(payload_of(at_b[i]) == batch[b_order[i]].payload);
    }
    CHECK(core::Ipv4View::check(at_b[8].bytes())->tos() == 0xB8);
    CHECK(core::Ipv4View::check(at_b[9].bytes())->ttl() == 9);
    auto at_c = receive(c, pool, 2);
    REQUIRE(at_c.size() == 2);
    CHECK(payload_of(at_c[0]) == batch[3].payload);
    CHECK(payload_of(at_c[1]) == batch[4].payload);
    CHECK(b.sockets()[0].counters.gro_receives == 0);
}

TEST_CASE("a UDP_SEGMENT send refused with EIO is resent one datagram each, and GSO stays off for that socket") {
    core::BufferPool pool(64, 2048);
    int refused = 0;
    // A device that cannot checksum for us answers a GSO send with EIO: refuse exactly those.
    auto refuse_gso = [&](int fd, mmsghdr* msgs, unsigned count) {
        for (unsigned i = 0; i < count; ++i) {
            if (!carries_segment(msgs[i])) continue;
            if (i == 0) {
                ++refused;
                errno = EIO;
                return -1;
            }
            count = i;  // sendmmsg stops at the message it cannot send
        }
        return ::sendmmsg(fd, msgs, count, 0);
    };
    std::vector<std::string> lines;
    core::Logger log("test", core::LogLevel::Debug, [&](core::LogLevel, std::string_view, std::string_view m) { lines.emplace_back(m); });
    auto a = open_offloading(true, true, refuse_gso, log);
    auto b = open_offloading(true, true);
    std::vector<Outer> batch = {{.source_port = port_of(a), .destination_port = port_of(b), .payload = "single"}};
    for (std::size_t i = 0; i < 10; ++i) batch.push_back({.source_port = port_of(a), .destination_port = port_of(b), .payload = numbered(i, 700)});
    send(a, pool, batch);
    const auto& s = a.sockets()[0];
    CHECK(refused == 1);
    CHECK(s.counters.gso_fallbacks == 1);
    CHECK(s.counters.gso_sends == 0);
    CHECK(s.counters.tx_packets == 11);
    CHECK(s.counters.tx_errors == 0);
    CHECK_FALSE(s.gso);
    CHECK(s.gso_off.find("refused") != std::string::npos);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("UDP_SEGMENT") != std::string::npos);
    auto got = receive(b, pool, 11);
    REQUIRE(got.size() == 11);
    for (std::size_t i = 1; i < got.size(); ++i) CHECK(payload_of(got[i]) == numbered(i - 1, 700));
    CHECK(b.sockets()[0].counters.gro_receives == 0);  // they crossed one by one
    // Later batches do not try again, and log nothing more.
    send(a, pool, std::vector<Outer>(5, Outer{.source_port = port_of(a), .destination_port = port_of(b), .payload = numbered(0, 700)}));
    CHECK(refused == 1);
    CHECK(s.counters.tx_packets == 16);
    CHECK(lines.size() == 1);
    CHECK(receive(b, pool, 5).size() == 5);
}

TEST_CASE("a UDP_SEGMENT send refused for another reason falls back for that batch only") {
    core::BufferPool pool(64, 2048);
    bool refuse_next = true;
    auto refuse_once = [&](int fd, mmsghdr* msgs, unsigned count) {
        if (refuse_next && carries_segment(msgs[0])) {
            refuse_next = false;
            errno = ENOBUFS;
            return -1;
        }
        return ::sendmmsg(fd, msgs, count, 0);
    };
    auto a = open_offloading(true, true, refuse_once);
    auto b = open_offloading(true, true);
    const std::vector<Outer> batch(4, Outer{.source_port = port_of(a), .destination_port = port_of(b), .payload = numbered(0, 900)});
    send(a, pool, batch);
    const auto& s = a.sockets()[0];
    CHECK(s.counters.gso_fallbacks == 1);
    CHECK(s.counters.tx_packets == 4);
    CHECK(s.gso);
    send(a, pool, batch);
    CHECK(s.counters.gso_sends == 1);
    CHECK(s.counters.gso_segments == 4);
    CHECK(receive(b, pool, 8).size() == 8);
}

TEST_CASE("datagrams of a refused UDP_SEGMENT send are resent with the zero checksum their stage left; later GSO sends carry checksums") {
    core::BufferPool pool(64, 2048);
    bool refuse_next = true;
    std::vector<int> single_no_check, segment_no_check;  // SO_NO_CHECK at each message sent
    auto refuse_once = [&](int fd, mmsghdr* msgs, unsigned count) {
        if (refuse_next && carries_segment(msgs[0])) {
            refuse_next = false;
            errno = ENOBUFS;
            return -1;
        }
        const int no_check = int_option(fd, SOL_SOCKET, SO_NO_CHECK);
        for (unsigned i = 0; i < count; ++i) (carries_segment(msgs[i]) ? segment_no_check : single_no_check).push_back(no_check);
        return ::sendmmsg(fd, msgs, count, 0);
    };
    auto a = open_offloading(true, true, refuse_once);
    auto b = open_offloading(true, true);
    // Two groups in one run (ESP-in-UDP: zero checksums, no DF): the first is refused.
    std::vector<Outer> batch(4, Outer{.source_port = port_of(a), .destination_port = port_of(b), .payload = numbered(0, 900)});
    batch.insert(batch.end(), 3, Outer{.source_port = port_of(a), .destination_port = port_of(b), .payload = numbered(1, 1000)});  // longer: cannot end the first group
    send(a, pool, batch);
    const auto& s = a.sockets()[0];
    CHECK(s.counters.gso_fallbacks == 1);
    CHECK(s.counters.gso_sends == 1);
    CHECK(s.counters.tx_packets == 7);
    CHECK(single_no_check == std::vector<int>(4, 1));
    CHECK(segment_no_check == std::vector<int>{0});
    CHECK(receive(b, pool, 7).size() == 7);
}

TEST_CASE("with both offloads off in the config, every datagram is its own message and zero checksums stay zero") {
    core::BufferPool pool(64, 2048);
    auto a = open_offloading(false, false);
    auto b = open_offloading(false, false);
    CHECK_FALSE(a.sockets()[0].gso);
    CHECK(a.sockets()[0].gso_off == "off in config");
    CHECK_FALSE(b.sockets()[0].gro);
    CHECK(b.sockets()[0].gro_off == "off in config");
    CHECK(int_option(b.sockets()[0].fd, SOL_UDP, UDP_GRO) == 0);
    send(a, pool, std::vector<Outer>(6, Outer{.source_port = port_of(a), .destination_port = port_of(b), .payload = numbered(1, 900)}));
    CHECK(a.sockets()[0].counters.gso_sends == 0);
    CHECK(a.sockets()[0].counters.tx_packets == 6);
    CHECK(int_option(a.sockets()[0].fd, SOL_SOCKET, SO_NO_CHECK) == 1);
    CHECK(receive(b, pool, 6).size() == 6);
    CHECK(b.sockets()[0].counters.gro_receives == 0);
}

namespace {
shell::TransportConfig loopback_config(std::vector<std::uint16_t> ports) {
    shell::TransportConfig config;
    config.local = loopback;
    config.udp_ports = std::move(ports);
    return config;
}

std::string failure_of(const std::function<void()>& open) {
    try {
        open();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "no error";
}
}  // namespace

TEST_CASE("a secondary transport gets the ports the primary was given by the kernel, and shares them by SO_REUSEPORT alone") {
    using Sharing = shell::SocketTransport::Sharing;
    shell::SocketTransport primary(loopback_config({0, 0}), 8, Sharing{.reuse_port = true});
    const auto sharing = shell::SocketTransport::secondary_of(primary);
    CHECK(sharing.secondary);
    CHECK(sharing.udp_ports == std::vector<std::uint16_t>{primary.sockets()[0].port, primary.sockets()[1].port});
    CHECK(sharing.udp_ports[0] != 0);
    shell::SocketTransport secondary(loopback_config({0, 0}), 8, sharing);
    REQUIRE(secondary.sockets().size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
        CAPTURE(i);
        CHECK(secondary.sockets()[i].port == primary.sockets()[i].port);
        for (const auto* t : {&primary, &secondary}) {
            const int fd = t->sockets()[i].fd;
            CHECK(int_option(fd, SOL_SOCKET, SO_REUSEPORT) == 1);
            // SO_REUSEADDR would let a socket without SO_REUSEPORT take the port's traffic.
            CHECK(int_option(fd, SOL_SOCKET, SO_REUSEADDR) == 0);
            // The same options as a transport of its own.
            CHECK(int_option(fd, IPPROTO_IP, IP_PKTINFO) == 1);
            CHECK(int_option(fd, SOL_SOCKET, SO_RXQ_OVFL) == 1);
        }
        CHECK(secondary.sockets()[i].gso == primary.sockets()[i].gso);
        CHECK(secondary.sockets()[i].gro == primary.sockets()[i].gro);
    }
    // A transport of its own keeps SO_REUSEADDR and no SO_REUSEPORT, as before.
    auto plain = open_loopback();
    CHECK(int_option(plain.sockets()[0].fd, SOL_SOCKET, SO_REUSEPORT) == 0);
    CHECK(int_option(plain.sockets()[0].fd, SOL_SOCKET, SO_REUSEADDR) == 1);
}

TEST_CASE("a secondary next to a primary opened without SO_REUSEPORT fails to bind and says what to do") {
    using Sharing = shell::SocketTransport::Sharing;
    auto primary = open_loopback();
    const std::uint16_t port = port_of(primary);
    const auto error = failure_of([&] { shell::SocketTransport(loopback_config({port}), 8, Sharing{.secondary = true, .udp_ports = {port}}); });
    CAPTURE(error);
    CHECK(error.find("cannot bind UDP 127.0.0.1:" + std::to_string(port) + " for a secondary transport") != std::string::npos);
    CHECK(error.find("has no SO_REUSEPORT") != std::string::npos);
    CHECK(error.find("Sharing{.reuse_port = true}") != std::string::npos);
    CHECK_THROWS_AS(shell::SocketTransport::secondary_of(primary), std::invalid_argument);
}

TEST_CASE("a secondary refuses to bind port 0, which would not be the primary's") {
    using Sharing = shell::SocketTransport::Sharing;
    const auto error = failure_of([] { shell::SocketTransport(loopback_config({0}), 8, Sharing{.secondary = true}); });
    CAPTURE(error);
    CHECK(error.find("cannot bind UDP port 0") != std::string::npos);
    CHECK(error.find("secondary_of(primary)") != std::string::npos);
}

TEST_CASE("a primary that reuses ports refuses one another socket holds, even one with SO_REUSEPORT") {
    // Without the check its SO_REUSEPORT bind would join the other's group and take half of
    // its traffic without a word.
    using Sharing = shell::SocketTransport::Sharing;
    shell::SocketTransport first(loopback_config({0}), 8, Sharing{.reuse_port = true});
    const std::uint16_t port = port_of(first);
    const auto error = failure_of([&] { shell::SocketTransport(loopback_config({port}), 8, Sharing{.reuse_port = true}); });
    CAPTURE(error);
    CHECK(error.find("cannot bind UDP 127.0.0.1:" + std::to_string(port)) != std::string::npos);
    CHECK(error.find(std::strerror(EADDRINUSE)) != std::string::npos);
}
