// SPDX-License-Identifier: MIT
// The offload halves against the real kernel, in a throw-away network namespace (see
// tests/support/private_netns.hpp; exits 77 without root). A TUN opened with IFF_VNET_HDR and
// TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4) stands for the far side of a tunnel: this test plays a
// TCP peer through it by hand. The kernel is the oracle: it must accept the super-packet the
// Coalescer builds (the socket receives the bytes of all merged segments: lengths, sequence
// numbers and the virtio-net header are right; the kernel trusts NEEDS_CSUM on local delivery,
// so the pseudo-header sum is checked by the unit tests instead), and its own TSO
// super-packets, cut by the Segmenter, must carry the stream the socket sent, each segment with
// IP and TCP checksums that verify. The second case does the same through tun::LinuxDevice
// opened with offloads, as the node uses it.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <map>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/checksum.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "tests/support/private_netns.hpp"
#include "tests/support/socket.hpp"
#include "tests/tun/offload_packets.hpp"
#include "tun/linux_device.hpp"
#include "tun/netlink.hpp"
#include "tun/offload.hpp"

using namespace mipsec;
using namespace std::chrono_literals;
using Bytes = std::vector<std::uint8_t>;

namespace {

const core::Ipv4Prefix tun_prefix = *core::Ipv4Prefix::parse("10.202.0.1/24");
const std::uint32_t local_ip = tun_prefix.address.value;  // the kernel's side
const std::uint32_t peer_ip = 0x0ACA0002;                 // 10.202.0.2: this test
constexpr std::uint16_t server_port = 5001;
constexpr std::uint16_t peer_port = 40000;

using test::Fd;
std::uint32_t pseudo(std::span<const std::uint8_t> ip, std::size_t l4_len) {
    return core::pseudo_header_sum({core::load_be32(ip.data() + 12)}, {core::load_be32(ip.data() + 16)},
                                   core::ip_protocol::tcp, static_cast<std::uint16_t>(l4_len));
}

/// A TCP/IPv4 packet from the peer to the server with correct checksums.
Bytes peer_segment(std::uint32_t seq, std::uint32_t ack, std::uint8_t flags, const Bytes& payload,
                   const Bytes& options = {}) {
    const std::size_t thl = 20 + options.size();
    Bytes p(20 + thl, 0);
    p[0] = 0x45;
    core::store_be16(p.data() + 2, static_cast<std::uint16_t>(20 + thl + payload.size()));
    core::store_be16(p.data() + 6, 0x4000);
    p[8] = 64;
    p[9] = core::ip_protocol::tcp;
    core::store_be32(p.data() + 12, peer_ip);
    core::store_be32(p.data() + 16, local_ip);
    core::store_be16(p.data() + 10, core::internet_checksum(std::span(p).first(20)));
    core::store_be16(p.data() + 20, peer_port);
    core::store_be16(p.data() + 22, server_port);
    core::store_be32(p.data() + 24, seq);
    core::store_be32(p.data() + 28, ack);
    p[32] = static_cast<std::uint8_t>((thl / 4) << 4);
    p[33] = flags;
    core::store_be16(p.data() + 34, 65535);
    std::copy(options.begin(), options.end(), p.begin() + 40);
    p.insert(p.end(), payload.begin(), payload.end());
    core::store_be16(p.data() + 36, core::checksum_finish(core::checksum_partial(std::span(p).subspan(20),
                                                                                 pseudo(p, p.size() - 20))));
    return p;
}

void write_frame(int fd, std::span<const std::uint8_t> frame) {
    REQUIRE(::write(fd, frame.data(), frame.size()) == static_cast<ssize_t>(frame.size()));
}

void write_plain(int fd, const Bytes& packet) {
    Bytes f(tun::VirtioNetHeader::len, 0);
    f.insert(f.end(), packet.begin(), packet.end());
    write_frame(fd, f);
}

bool tcp_checksums_ok(std::span<const std::uint8_t> p) {
    auto ip = core::Ipv4View::check(p);
    return ip && ip->checksum_valid() &&
           core::checksum_finish(core::checksum_partial(ip->payload(), pseudo(p, ip->payload().size()))) == 0;
}

/// Reads frames for up to `timeout`, segments them, and hands every TCP packet from the
/// server to `on_packet` until it returns true.
struct Reader {
    int fd;
    tun::Segmenter seg{1500};
    core::BufferPool pool{70, 2048};
    std::vector<core::PacketBuf> bufs;
    std::vector<std::uint8_t> frame = std::vector<std::uint8_t>(tun::VirtioNetHeader::len + 65535);
    std::size_t gso_frames = 0;
    bool bad_checksum = false;

    explicit Reader(int f) : fd(f) {
        for (int i = 0; i < 64; ++i) bufs.push_back(pool.acquire(0));
    }
    template <class F>
    bool until(F&& on_packet, std::chrono::milliseconds timeout = 3000ms) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 100) != 1) continue;
            const ssize_t n = ::read(fd, frame.data(), frame.size());
            if (n <= 0) continue;
            const auto vh = tun::VirtioNetHeader::parse(frame);
            const auto r = seg.segment(std::span(frame).first(static_cast<std::size_t>(n)), bufs, 0);
            if (vh.gso_type != tun::VirtioNetHeader::gso_none && r.count > 0) ++gso_frames;
            for (std::size_t i = 0; i < r.count; ++i) {
                auto b = std::as_const(bufs[i]).bytes();
                auto ip = core::Ipv4View::check(b);
                if (!ip || ip->protocol() != core::ip_protocol::tcp || ip->source().value != local_ip) continue;
                if (!tcp_checksums_ok(b)) bad_checksum = true;
                if (on_packet(b)) return true;
            }
        }
        return false;
    }
};

}  // namespace

TEST_CASE("the kernel accepts a coalesced super-packet and its TSO output segments back into the stream") {
    test::enter_private_netns();
    Fd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    REQUIRE(tun.get() >= 0);
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "moff0");
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
    REQUIRE(::ioctl(tun.get(), TUNSETIFF, &ifr) == 0);
    REQUIRE_MESSAGE(::ioctl(tun.get(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4) == 0, std::strerror(errno));
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    Fd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    REQUIRE(::ioctl(ctl.get(), SIOCGIFINDEX, &ifr) == 0);
    const auto ifindex = static_cast<std::uint32_t>(ifr.ifr_ifindex);
    REQUIRE(nl->set_mtu(ifindex, 1500));
    REQUIRE(nl->add_address(ifindex, tun_prefix));
    REQUIRE(nl->set_up(ifindex, true));

    Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(server_port);
    sa.sin_addr.s_addr = htonl(local_ip);
    REQUIRE(::bind(listener.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(listener.get(), 1) == 0);

    // Handshake by hand: MSS 1460 so the kernel's TSO cuts at 1460.
    Reader reader(tun.get());
    std::uint32_t seq = 1000;
    write_plain(tun.get(), peer_segment(seq, 0, 0x02, {}, {0x02, 0x04, 0x05, 0xB4}));
    std::uint32_t server_seq = 0;
    REQUIRE(reader.until([&](std::span<const std::uint8_t> p) {
        if ((p[33] & 0x12) != 0x12) return false;
        server_seq = core::load_be32(p.data() + 24) + 1;
        return true;
    }));
    ++seq;
    write_plain(tun.get(), peer_segment(seq, server_seq, 0x10, {}));
    pollfd lp{listener.get(), POLLIN, 0};
    REQUIRE(::poll(&lp, 1, 3000) == 1);
    Fd conn(::accept(listener.get(), nullptr, nullptr));
    REQUIRE(conn.get() >= 0);

    SUBCASE("three segments coalesced into one write arrive as one stream") {
        Bytes sent;
        std::vector<Bytes> segs;
        for (int i = 0; i < 3; ++i) {
            Bytes payload(1000);
            for (std::size_t k = 0; k < payload.size(); ++k) payload[k] = static_cast<std::uint8_t>(i * 31 + k);
            segs.push_back(peer_segment(seq, server_seq, i == 2 ? 0x18 : 0x10, payload));
            seq += 1000;
            sent.insert(sent.end(), payload.begin(), payload.end());
        }
        tun::Coalescer c;
        for (auto& s : segs) c.add(s);
        REQUIRE(c.frame_count() == 1);
        REQUIRE(c.frame_segments(0) == 3);
        write_frame(tun.get(), c.frame(0));
        Bytes got(4000);
        std::size_t have = 0;
        while (have < sent.size()) {
            pollfd cp{conn.get(), POLLIN, 0};
            REQUIRE(::poll(&cp, 1, 3000) == 1);
            const ssize_t n = ::recv(conn.get(), got.data() + have, got.size() - have, 0);
            REQUIRE(n > 0);
            have += static_cast<std::size_t>(n);
        }
        got.resize(have);
        CHECK(got == sent);
    }

    SUBCASE("the kernel's TSO super-packets segment into the bytes the socket sent") {
        Bytes sent(40000);
        for (std::size_t k = 0; k < sent.size(); ++k) sent[k] = static_cast<std::uint8_t>(k * 13 + 5);
        const ssize_t first = ::send(conn.get(), sent.data(), sent.size(), MSG_DONTWAIT);
        REQUIRE(first > 0);
        auto queued = static_cast<std::size_t>(first);
        Bytes got;
        std::map<std::uint32_t, Bytes> ahead;  // out-of-order pieces, by sequence number
        const std::uint32_t base = server_seq;
        bool done = reader.until(
            [&](std::span<const std::uint8_t> p) {
                auto ip = core::Ipv4View::check(p);
                const std::size_t thl = (std::size_t{p[32]} >> 4) * 4;
                const auto payload = ip->payload().subspan(thl);
                if (p.size() > 1500) return false;
                if (!payload.empty())
                    ahead[core::load_be32(p.data() + 24)] = Bytes(payload.begin(), payload.end());
                for (auto it = ahead.find(base + static_cast<std::uint32_t>(got.size())); it != ahead.end();
                     it = ahead.find(base + static_cast<std::uint32_t>(got.size()))) {
                    got.insert(got.end(), it->second.begin(), it->second.end());
                    ahead.erase(it);
                }
                write_plain(tun.get(), peer_segment(seq, base + static_cast<std::uint32_t>(got.size()), 0x10, {}));
                if (queued < sent.size()) {
                    const ssize_t n = ::send(conn.get(), sent.data() + queued, sent.size() - queued, MSG_DONTWAIT);
                    if (n > 0) queued += static_cast<std::size_t>(n);
                }
                return got.size() >= sent.size();
            },
            5000ms);
        REQUIRE(done);
        CHECK(got == sent);
        CHECK_FALSE(reader.bad_checksum);
        CHECK(reader.gso_frames >= 1);  // the kernel did hand over super-packets
        CHECK(reader.seg.drops() == tun::OffloadDrops{});
    }
}

// The same two directions through tun::LinuxDevice itself, as the node uses it: a TCP transfer
// of 200 kB from a socket must reach this peer as MTU-sized packets cut from the kernel's
// super-packets, and 20 segments written in one batch must reach the socket as one merged
// super-packet, the bytes intact both ways.
TEST_CASE("LinuxDevice with offloads: TSO super-packets read as segments, a batch written as one super-packet") {
    test::enter_private_netns();
    auto opened = tun::LinuxDevice::open("moff1", {.offload = true, .mtu = 1500});
    REQUIRE(opened);
    auto& dev = **opened;
    const unsigned tso = tun::tun_offload::csum | tun::tun_offload::tso4;
    REQUIRE((dev.offloads() & tso) == tso);
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    REQUIRE(nl->set_mtu(dev.ifindex(), 1500));
    REQUIRE(nl->add_address(dev.ifindex(), tun_prefix));
    REQUIRE(nl->set_up(dev.ifindex(), true));

    Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(server_port);
    sa.sin_addr.s_addr = htonl(local_ip);
    REQUIRE(::bind(listener.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(listener.get(), 1) == 0);

    constexpr std::size_t headroom = 64;
    core::BufferPool pool{80, 2048};
    std::vector<core::PacketBuf> batch(32);
    auto write_packets = [&](const std::vector<Bytes>& packets) {
        std::vector<core::PacketBuf> out;
        for (const auto& p : packets) {
            out.push_back(pool.acquire(headroom));
            REQUIRE(out.back().resize(p.size()));
            std::copy(p.begin(), p.end(), out.back().data());
        }
        REQUIRE(dev.write(out) == packets.size());
    };
    bool oversized = false, bad_checksum = false;
    // Reads batches until on_packet, given each TCP packet from the server, returns true.
    auto until = [&](auto&& on_packet) {
        const auto deadline = std::chrono::steady_clock::now() + 5s;
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{dev.fd(), POLLIN, 0};
            if (::poll(&p, 1, 100) != 1) continue;
            for (auto& b : batch) {
                if (!b.valid()) b = pool.acquire(headroom);
                b.reset(headroom);
            }
            const std::size_t got = dev.read(batch);
            for (std::size_t i = 0; i < got; ++i) {
                auto b = std::as_const(batch[i]).bytes();
                auto ip = core::Ipv4View::check(b);
                if (!ip || ip->protocol() != core::ip_protocol::tcp || ip->source().value != local_ip) continue;
                oversized = oversized || b.size() > 1500;
                bad_checksum = bad_checksum || !tcp_checksums_ok(b);
                if (on_packet(b)) return true;
            }
        }
        return false;
    };

    std::uint32_t seq = 1000;
    write_packets({peer_segment(seq, 0, 0x02, {}, {0x02, 0x04, 0x05, 0xB4})});
    std::uint32_t server_seq = 0;
    REQUIRE(until([&](std::span<const std::uint8_t> p) {
        if ((p[33] & 0x12) != 0x12) return false;
        server_seq = core::load_be32(p.data() + 24) + 1;
        return true;
    }));
    ++seq;
    write_packets({peer_segment(seq, server_seq, 0x10, {})});
    pollfd lp{listener.get(), POLLIN, 0};
    REQUIRE(::poll(&lp, 1, 3000) == 1);
    Fd conn(::accept(listener.get(), nullptr, nullptr));
    REQUIRE(conn.get() >= 0);

    SUBCASE("the socket's stream arrives as MTU-sized segments cut from super-packets") {
        Bytes sent(200000);
        for (std::size_t k = 0; k < sent.size(); ++k) sent[k] = static_cast<std::uint8_t>(k * 13 + 5);
        const ssize_t first = ::send(conn.get(), sent.data(), sent.size(), MSG_DONTWAIT);
        REQUIRE(first > 0);
        auto queued = static_cast<std::size_t>(first);
        Bytes got;
        std::map<std::uint32_t, Bytes> ahead;
        const std::uint32_t base = server_seq;
        REQUIRE(until([&](std::span<const std::uint8_t> p) {
            const std::size_t thl = (std::size_t{p[32]} >> 4) * 4;
            const auto payload = p.subspan(20 + thl);
            if (!payload.empty()) ahead[core::load_be32(p.data() + 24)] = Bytes(payload.begin(), payload.end());
            for (auto it = ahead.find(base + static_cast<std::uint32_t>(got.size())); it != ahead.end();
                 it = ahead.find(base + static_cast<std::uint32_t>(got.size()))) {
                got.insert(got.end(), it->second.begin(), it->second.end());
                ahead.erase(it);
            }
            write_packets({peer_segment(seq, base + static_cast<std::uint32_t>(got.size()), 0x10, {})});
            if (queued < sent.size()) {
                const ssize_t n = ::send(conn.get(), sent.data() + queued, sent.size() - queued, MSG_DONTWAIT);
                if (n > 0) queued += static_cast<std::size_t>(n);
            }
            return got.size() >= sent.size();
        }));
        CHECK(got == sent);
        CHECK_FALSE(oversized);
        CHECK_FALSE(bad_checksum);
        const auto o = dev.offload_counters();
        CHECK(o.rx_super_packets > 0);
        CHECK(o.rx_segments > o.rx_super_packets);
        CHECK(o.drops == tun::OffloadDrops{});
    }

    SUBCASE("20 segments written in one batch reach the socket as one super-packet") {
        Bytes sent;
        std::vector<Bytes> segs;
        for (int i = 0; i < 20; ++i) {
            Bytes payload(1400);
            for (std::size_t k = 0; k < payload.size(); ++k) payload[k] = static_cast<std::uint8_t>(i * 31 + k);
            segs.push_back(peer_segment(seq, server_seq, i == 19 ? 0x18 : 0x10, payload));
            seq += 1400;
            sent.insert(sent.end(), payload.begin(), payload.end());
        }
        write_packets(segs);
        Bytes got(sent.size() + 1);
        std::size_t have = 0;
        while (have < sent.size()) {
            pollfd cp{conn.get(), POLLIN, 0};
            REQUIRE(::poll(&cp, 1, 3000) == 1);
            const ssize_t n = ::recv(conn.get(), got.data() + have, got.size() - have, 0);
            REQUIRE(n > 0);
            have += static_cast<std::size_t>(n);
        }
        got.resize(have);
        CHECK(got == sent);
        const auto o = dev.offload_counters();
        CHECK(o.tx_super_packets == 1);
        CHECK(o.tx_coalesced == 20);
        CHECK(dev.counters().tx_packets == 22);  // with the handshake's SYN and ACK
    }
}

TEST_CASE("LinuxDevice with USO: UDP datagrams written in one batch reach the socket as the same datagrams") {
    test::enter_private_netns();
    auto opened = tun::LinuxDevice::open("moff2", {.offload = true, .mtu = 1500});
    REQUIRE(opened);
    auto& dev = **opened;
    if ((dev.offloads() & tun::tun_offload::uso4) == 0) {
        MESSAGE("the kernel grants no USO (before Linux 6.2): UDP is written one datagram per frame");
        return;
    }
    auto nl = tun::Netlink::open();
    REQUIRE(nl);
    REQUIRE(nl->set_mtu(dev.ifindex(), 1500));
    REQUIRE(nl->add_address(dev.ifindex(), tun_prefix));
    REQUIRE(nl->set_up(dev.ifindex(), true));

    Fd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(server_port);
    sa.sin_addr.s_addr = htonl(local_ip);
    REQUIRE(::bind(sock.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0);

    // Ten of 1200 bytes and a shorter last one, then one without a checksum (ESP-in-UDP sends
    // none), which merges with nothing here and keeps its zero.
    test::offload::Tcp t;
    t.src = peer_ip;
    t.dst = local_ip;
    t.sport = peer_port;
    t.dport = server_port;
    std::vector<Bytes> sent;
    core::BufferPool pool{16, 2048};
    std::vector<core::PacketBuf> out;
    for (int i = 0; i < 12; ++i, ++t.id) {
        t.payload = test::offload::pattern(i < 10 ? 1200 : 300, static_cast<std::size_t>(i) * 1200);
        Bytes p = test::offload::udp_packet(t);
        if (i == 11) core::store_be16(p.data() + 26, 0);
        sent.push_back(t.payload);
        out.push_back(pool.acquire(64));
        REQUIRE(out.back().resize(p.size()));
        std::copy(p.begin(), p.end(), out.back().data());
    }
    REQUIRE(dev.write(out) == 12);
    const auto o = dev.offload_counters();
    CHECK(o.tx_super_packets == 1);
    CHECK(o.tx_coalesced == 11);
    CHECK(dev.counters().tx_packets == 12);

    for (const Bytes& want : sent) {
        pollfd p{sock.get(), POLLIN, 0};
        REQUIRE(::poll(&p, 1, 3000) == 1);
        Bytes got(2000);
        const ssize_t n = ::recv(sock.get(), got.data(), got.size(), 0);
        REQUIRE(n >= 0);
        got.resize(static_cast<std::size_t>(n));
        CHECK(got == want);
    }
}
