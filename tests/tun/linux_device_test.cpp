// SPDX-License-Identifier: MIT
// LinuxDevice's read/write paths without root: a SOCK_SEQPACKET socket pair stands for the TUN
// queue (one message per read and write, like a TUN fd), the device adopts one end and the test
// plays the kernel on the other, writing the frames a TUN with IFF_VNET_HDR hands over and
// reading back what the device writes.
#include "tun/linux_device.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "core/buffer_pool.hpp"
#include "tests/support/packets.hpp"
#include "tests/tun/offload_packets.hpp"

using namespace mipsec;
using core::DropReason;
using test::Bytes;
using tun::LinuxDevice;
using tun::VirtioNetHeader;
using namespace test::offload;
using namespace test::literals;

namespace {

constexpr unsigned granted = tun::tun_offload::csum | tun::tun_offload::tso4;
constexpr std::size_t headroom = 64;

/// The device on one end of a SOCK_SEQPACKET pair, the "kernel" on the other.
struct Rig {
    int kernel = -1;
    std::unique_ptr<LinuxDevice> dev;
    core::BufferPool pool{128, 2048};
    std::vector<core::PacketBuf> bufs;

    explicit Rig(unsigned offloads, std::size_t mtu = 1500) {
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
        kernel = sv[1];
        dev = LinuxDevice::adopt(sv[0], "fake0", 7, offloads, mtu);
    }
    ~Rig() { ::close(kernel); }

    void hand_over(const Bytes& frame) const {
        REQUIRE(::send(kernel, frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size()));
    }
    /// A batch of n buffers reset to the headroom, as the shell prepares them.
    std::span<core::PacketBuf> batch(std::size_t n) {
        bufs.resize(n);
        for (auto& b : bufs) {
            if (!b.valid()) b = pool.acquire(headroom);
            b.reset(headroom);
        }
        return bufs;
    }
    /// Frames the device wrote, in order.
    std::vector<Bytes> written() const {
        std::vector<Bytes> out;
        Bytes buf(70000);
        for (;;) {
            const ssize_t n = ::recv(kernel, buf.data(), buf.size(), 0);
            if (n < 0) break;
            out.emplace_back(buf.begin(), buf.begin() + n);
        }
        return out;
    }
};

Bytes packet_of(const Bytes& frame) { return {frame.begin() + VirtioNetHeader::len, frame.end()}; }

}  // namespace

TEST_CASE("offload read: a super-packet larger than the batch is cut across reads, nothing lost") {
    Rig rig(granted, 1500);
    Tcp t;
    t.tcp_options = "01 01 08 0a 00 00 00 01 00 00 00 02"_hex;  // 32-byte TCP header
    t.flags = ack | psh;
    t.payload = pattern(5 * 1448 - 100);  // four full segments and a short one
    const Bytes super = tcp_packet(t, /*partial=*/true);
    rig.hand_over(frame_of(tso(20, 32, 1448), super));
    Tcp after = t;
    after.seq = t.seq + static_cast<std::uint32_t>(t.payload.size());
    after.payload = pattern(100, 9);
    const Bytes plain = tcp_packet(after);
    rig.hand_over(frame_of(VirtioNetHeader{}, plain));

    Bytes stream;
    std::vector<Bytes> got;
    auto take = [&](std::size_t n) {
        for (std::size_t i = 0; i < n; ++i) {
            const auto& b = rig.bufs[i];
            CHECK(b.headroom() == headroom);
            got.push_back(test::bytes_of(b));
        }
    };
    take(rig.dev->read(rig.batch(3)));
    CHECK(got.size() == 3);
    take(rig.dev->read(rig.batch(3)));  // the last two segments, then the plain packet
    REQUIRE(got.size() == 6);
    CHECK(rig.dev->read(rig.batch(3)) == 0);  // would block

    std::uint32_t seq = t.seq;
    for (std::size_t i = 0; i < 5; ++i) {
        CAPTURE(i);
        const auto ip = core::Ipv4View::check(got[i]);
        REQUIRE(ip);
        CHECK(got[i].size() <= 1500);
        CHECK(ip->checksum_valid());
        CHECK(l4_checksum_ok(got[i]));
        CHECK(core::load_be32(got[i].data() + 24) == seq);
        CHECK(((got[i][33] & psh) != 0) == (i == 4));  // PSH only on the last
        const std::size_t payload = got[i].size() - 52;
        stream.insert(stream.end(), got[i].begin() + 52, got[i].end());
        seq += static_cast<std::uint32_t>(payload);
    }
    CHECK(stream == t.payload);
    CHECK(got[5] == plain);

    const auto& c = rig.dev->counters();
    CHECK(c.rx_packets == 6);
    CHECK(c.rx_bytes == super.size() + 4 * 52 + plain.size());
    CHECK(c.rx_errors == 0);
    const auto o = rig.dev->offload_counters();
    CHECK(o.rx_super_packets == 1);
    CHECK(o.rx_segments == 5);
    CHECK(o.drops == tun::OffloadDrops{});
}

TEST_CASE("offload read: a checksum-partial packet without GSO gets its checksum completed") {
    Rig rig(granted);
    Tcp t;
    t.payload = pattern(300);
    const Bytes partial = udp_packet(t, /*partial=*/true);
    rig.hand_over(frame_of({VirtioNetHeader::flag_needs_csum, VirtioNetHeader::gso_none, 0, 0, 20, 6}, partial));
    REQUIRE(rig.dev->read(rig.batch(4)) == 1);
    CHECK(test::bytes_of(rig.bufs[0]) == udp_packet(t));
    CHECK(rig.dev->offload_counters().rx_super_packets == 0);
}

TEST_CASE("offload read: malformed frames are dropped and counted per reason, the next one still arrives") {
    Tcp t;
    t.payload = pattern(3000);
    const Bytes super = tcp_packet(t, true);
    Tcp next = t;
    next.seq = 9000;
    next.payload = pattern(10);
    const Bytes good = tcp_packet(next);

    struct Row {
        const char* name;
        Bytes frame;
        std::size_t mtu;
        DropReason reason;
    };
    VirtioNetHeader bad_flags = tso(20, 20, 1460);
    bad_flags.flags = 0x80;
    VirtioNetHeader bad_csum = tso(20, 20, 1460);
    bad_csum.csum_offset = 6;
    Bytes short_frame = frame_of(tso(20, 20, 1460), super);
    short_frame.resize(short_frame.size() - 100);  // the IP total length says more
    Bytes long_frame = frame_of(tso(20, 20, 1460), super);
    long_frame.resize(long_frame.size() + 100);  // the IP total length says less
    const Row rows[] = {
        {"unknown vnet flag", frame_of(bad_flags, super), 1500, DropReason::BadVnetHeader},
        {"checksum offset off the TCP checksum", frame_of(bad_csum, super), 1500, DropReason::GsoInconsistent},
        {"cut short", short_frame, 1500, DropReason::Malformed},
        {"bytes past the IP total length", long_frame, 1500, DropReason::GsoInconsistent},
        {"segments larger than the TUN MTU", frame_of(tso(20, 20, 1460), super), 1400, DropReason::GsoSizeInvalid},
        {"shorter than a virtio-net header", Bytes(4, 0), 1500, DropReason::Truncated},
    };
    for (const auto& row : rows) {
        const std::string name = row.name;
        CAPTURE(name);
        Rig rig(granted, row.mtu);
        rig.hand_over(row.frame);
        rig.hand_over(frame_of(VirtioNetHeader{}, good));
        REQUIRE(rig.dev->read(rig.batch(8)) == 1);
        CHECK(test::bytes_of(rig.bufs[0]) == good);
        CHECK(rig.dev->counters().rx_errors == 1);
        CHECK(rig.dev->counters().rx_packets == 1);
        const auto o = rig.dev->offload_counters();
        CHECK(o.drops[static_cast<std::size_t>(row.reason)] == 1);
        CHECK(o.rx_super_packets == 0);
    }
}

TEST_CASE("offload read: set_mtu follows a lowered TUN MTU") {
    Tcp t;
    t.payload = pattern(3000);
    Rig rig(granted, 1500);
    rig.hand_over(frame_of(tso(20, 20, 1460), tcp_packet(t, true)));
    CHECK(rig.dev->read(rig.batch(8)) == 3);
    rig.dev->set_mtu(1400);
    rig.hand_over(frame_of(tso(20, 20, 1460), tcp_packet(t, true)));
    rig.hand_over(frame_of(tso(20, 20, 1360), tcp_packet(t, true)));
    REQUIRE(rig.dev->read(rig.batch(8)) == 3);
    CHECK(rig.bufs[0].size() == 1400);
    CHECK(rig.dev->offload_counters().drops[static_cast<std::size_t>(DropReason::GsoSizeInvalid)] == 1);
}

TEST_CASE("offload write: consecutive segments of a flow go out as one super-packet, the rest alone") {
    Rig rig(granted);
    Tcp t;
    Bytes sent;
    std::vector<Bytes> batch;
    for (int i = 0; i < 4; ++i) {
        t.payload = pattern(i == 3 ? 500 : 1400, static_cast<std::size_t>(i) * 1400);
        t.flags = i == 3 ? (ack | psh) : ack;
        batch.push_back(tcp_packet(t));
        sent.insert(sent.end(), t.payload.begin(), t.payload.end());
        t.seq += static_cast<std::uint32_t>(t.payload.size());
        ++t.id;
    }
    Tcp other;
    other.dport = 53;
    other.payload = pattern(60);
    batch.insert(batch.begin() + 2, udp_packet(other));  // another flow between them

    std::vector<core::PacketBuf> bufs;
    std::size_t bytes = 0;
    for (const auto& p : batch) {
        bufs.push_back(test::load(rig.pool, p));
        bytes += p.size();
    }
    CHECK(rig.dev->write(bufs) == 5);
    const auto frames = rig.written();
    REQUIRE(frames.size() == 2);
    const auto vh = VirtioNetHeader::parse(frames[0]);
    CHECK(vh.gso_type == VirtioNetHeader::gso_tcpv4);
    CHECK(vh.flags == VirtioNetHeader::flag_needs_csum);
    CHECK(vh.gso_size == 1400);
    CHECK(vh.hdr_len == 40);
    const Bytes merged = packet_of(frames[0]);
    CHECK(Bytes(merged.begin() + 40, merged.end()) == sent);
    CHECK((merged[33] & psh) != 0);
    CHECK(VirtioNetHeader::parse(frames[1]) == VirtioNetHeader{});
    CHECK(packet_of(frames[1]) == batch[2]);

    const auto& c = rig.dev->counters();
    CHECK(c.tx_packets == 5);
    CHECK(c.tx_bytes == bytes);
    CHECK(c.tx_errors == 0);
    const auto o = rig.dev->offload_counters();
    CHECK(o.tx_super_packets == 1);
    CHECK(o.tx_coalesced == 4);
}

TEST_CASE("offload write: a segment with a broken checksum is not written and counted as a failed write") {
    Rig rig(granted);
    Tcp t;
    t.payload = pattern(1000);
    Bytes broken = tcp_packet(t);
    broken.back() ^= 0xFF;
    t.seq += 1000;
    const Bytes fine = tcp_packet(t);
    std::vector<core::PacketBuf> bufs;
    bufs.push_back(test::load(rig.pool, broken));
    bufs.push_back(test::load(rig.pool, fine));
    CHECK(rig.dev->write(bufs) == 1);
    const auto frames = rig.written();
    REQUIRE(frames.size() == 1);
    CHECK(packet_of(frames[0]) == fine);
    const auto& c = rig.dev->counters();
    CHECK(c.tx_packets == 1);
    CHECK(c.tx_errors == 1);
    CHECK(c.tx_failures[tun::WriteFailure::Other] == 1);
    CHECK(rig.dev->last_error() == std::error_code(EBADMSG, std::system_category()));
    CHECK(rig.dev->offload_counters().drops[static_cast<std::size_t>(DropReason::BadChecksum)] == 1);
}

TEST_CASE("offload write: a refused frame counts every packet merged into it") {
    Rig rig(granted);
    // The smallest send buffer the kernel allows (a few KiB) refuses one bigger message with
    // EMSGSIZE, as a TUN refuses a frame it cannot take.
    const int one = 1;
    REQUIRE(::setsockopt(rig.dev->fd(), SOL_SOCKET, SO_SNDBUF, &one, sizeof one) == 0);
    Tcp t;
    std::vector<core::PacketBuf> bufs;
    for (int i = 0; i < 10; ++i) {
        t.payload = pattern(1400);
        bufs.push_back(test::load(rig.pool, tcp_packet(t)));
        t.seq += 1400;
    }
    CHECK(rig.dev->write(bufs) == 0);
    CHECK(rig.written().empty());
    CHECK(rig.dev->counters().tx_errors == 10);
    CHECK(rig.dev->counters().tx_failures[tun::WriteFailure::MessageTooLong] == 10);
    CHECK(rig.dev->counters().tx_packets == 0);
    CHECK(rig.dev->offload_counters().tx_super_packets == 0);
}

TEST_CASE("without offloads the device reads and writes bare packets, one per system call") {
    Rig rig(0);
    Tcp t;
    t.payload = pattern(1000);
    const Bytes a = tcp_packet(t);
    t.seq += 1000;
    const Bytes b = tcp_packet(t);
    rig.hand_over(a);
    rig.hand_over(b);
    REQUIRE(rig.dev->read(rig.batch(4)) == 2);
    CHECK(test::bytes_of(rig.bufs[0]) == a);
    CHECK(test::bytes_of(rig.bufs[1]) == b);
    std::vector<core::PacketBuf> out;
    out.push_back(test::load(rig.pool, a));
    out.push_back(test::load(rig.pool, b));
    CHECK(rig.dev->write(out) == 2);
    const auto frames = rig.written();
    REQUIRE(frames.size() == 2);
    CHECK(frames[0] == a);
    CHECK(frames[1] == b);
    CHECK(rig.dev->offloads() == 0);
    CHECK(rig.dev->offload_counters().tx_super_packets == 0);
}

TEST_CASE("multi-queue: the queue count is checked before anything is opened, open_queue needs a multi-queue device") {
    // Refused before /dev/net/tun is touched, so without root too (the name is never created).
    for (std::size_t queues : {std::size_t{0}, LinuxDevice::max_queues + 1, std::size_t{100000}}) {
        CAPTURE(queues);
        CHECK(LinuxDevice::open("mqtest0", {.queues = queues}).error() == core::Errc::InvalidArgument);
        CHECK(LinuxDevice::open("mqtest0", {.offload = true, .queues = queues}).error() == core::Errc::InvalidArgument);
    }
    CHECK(LinuxDevice::max_queues == 256);
    // An adopted descriptor is one queue of nobody knows what: there is nothing to attach to.
    Rig rig(granted);
    CHECK_FALSE(rig.dev->multi_queue());
    CHECK(rig.dev->open_queue().error() == core::Errc::InvalidArgument);
}
