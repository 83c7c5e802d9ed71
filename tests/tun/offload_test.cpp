// SPDX-License-Identifier: MIT
#include "tun/offload.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/checksum.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "tests/support/hex.hpp"
#include "tests/tun/offload_packets.hpp"

using namespace mipsec;
using core::DropReason;
using test::Bytes;
using tun::VirtioNetHeader;
using namespace test::literals;

using namespace test::offload;

namespace {

struct Batch {
    core::BufferPool pool{80, 2048};
    std::vector<core::PacketBuf> bufs;
    explicit Batch(std::size_t n = 64) {
        for (std::size_t i = 0; i < n; ++i) bufs.push_back(pool.acquire(0));
    }
};

const Bytes ip_opts = "01 01 01 00"_hex;                     // NOP NOP NOP EOL
const Bytes ts_opts = "01 01 08 0a 00 00 00 01 00 00 00 02"_hex;  // NOP NOP timestamp

}  // namespace

TEST_CASE("VirtioNetHeader: u8 flags, u8 gso_type, four u16 in host byte order") {
    const VirtioNetHeader vh{1, 5, 54, 1448, 34, 6};
    Bytes b(VirtioNetHeader::len);
    vh.emit(b);
    std::uint16_t words[4];
    std::memcpy(words, b.data() + 2, sizeof words);
    CHECK(b[0] == 1);
    CHECK(b[1] == 5);
    CHECK(words[0] == 54);
    CHECK(words[1] == 1448);
    CHECK(words[2] == 34);
    CHECK(words[3] == 6);
    CHECK(VirtioNetHeader::parse(b) == vh);
}

TEST_CASE("TSO super-packet with IP and TCP options becomes MTU-sized segments") {
    Tcp t;
    t.ip_options = ip_opts;
    t.tcp_options = ts_opts;
    t.flags = ack | psh | fin | cwr;
    t.seq = 0xFFFFFC00;  // the sequence number wraps inside the super-packet
    t.payload = pattern(3000);
    const std::size_t ihl = 24, thl = 32, mtu = 1000, gso = mtu - ihl - thl;
    const Bytes frame = frame_of(tso(ihl, thl, static_cast<std::uint16_t>(gso)), tcp_packet(t, true));
    tun::Segmenter seg(mtu);
    Batch batch;
    auto r = seg.segment(frame, batch.bufs, 32);
    REQUIRE(r.reason == DropReason::None);
    REQUIRE(r.count == 4);
    Bytes stream;
    for (std::size_t i = 0; i < r.count; ++i) {
        CAPTURE(i);
        const auto p = batch.bufs[i].bytes();
        CHECK(batch.bufs[i].headroom() == 32);
        const std::size_t want = i < 3 ? gso : 3000 - 3 * gso;
        REQUIRE(p.size() == ihl + thl + want);
        const auto ip = core::Ipv4View::check(p);
        REQUIRE(ip);
        CHECK(ip->total_length() == p.size());
        CHECK(ip->identification() == 0x1234 + i);
        CHECK(ip->checksum_valid());
        CHECK(to_bytes(ip->options()) == ip_opts);
        CHECK(l4_checksum_ok(p));
        CHECK(core::load_be32(p.data() + ihl + 4) == static_cast<std::uint32_t>(t.seq + i * gso));
        CHECK(core::load_be32(p.data() + ihl + 8) == 77);
        CHECK(Bytes(p.begin() + ihl + 20, p.begin() + ihl + thl) == ts_opts);
        const std::uint8_t flags = p[ihl + 13];
        CHECK(((flags & (fin | psh)) != 0) == (i == 3));
        CHECK(((flags & cwr) != 0) == (i == 0));
        CHECK((flags & ack) != 0);
        stream.insert(stream.end(), p.begin() + ihl + thl, p.end());
    }
    CHECK(stream == t.payload);
    CHECK(seg.super_packets() == 1);
    CHECK(seg.segments() == 4);
}

TEST_CASE("USO super-packet: each UDP segment has its own length and checksum") {
    Tcp t;
    t.payload = pattern(2500);
    const Bytes pkt = udp_packet(t, true);
    const VirtioNetHeader vh{VirtioNetHeader::flag_needs_csum, VirtioNetHeader::gso_udp_l4, 28, 1000, 20, 6};
    tun::Segmenter seg(1028);
    Batch batch;
    auto r = seg.segment(frame_of(vh, pkt), batch.bufs, 0);
    REQUIRE(r.count == 3);
    Bytes stream;
    for (std::size_t i = 0; i < 3; ++i) {
        const auto p = batch.bufs[i].bytes();
        const std::size_t want = i < 2 ? 1000 : 500;
        REQUIRE(p.size() == 28 + want);
        CHECK(core::load_be16(p.data() + 24) == 8 + want);
        CHECK(core::Ipv4View::check(p)->checksum_valid());
        CHECK(core::Ipv4View::check(p)->identification() == 0x1234 + i);
        CHECK(l4_checksum_ok(p));
        stream.insert(stream.end(), p.begin() + 28, p.end());
    }
    CHECK(stream == t.payload);
}

TEST_CASE("a NIC's GRO super-packet (DATA_VALID, no NEEDS_CSUM, as a packet socket reads it) is segmented with fresh checksums") {
    Tcp t;
    t.payload = pattern(2500);
    Bytes pkt = udp_packet(t, true);
    core::store_be16(pkt.data() + 26, 0x1234);  // whatever the merged header held: not trusted
    const VirtioNetHeader vh{VirtioNetHeader::flag_data_valid, VirtioNetHeader::gso_udp_l4, 28, 1000, 0, 0};
    tun::Segmenter seg(1028);
    Batch batch;
    auto r = seg.segment(frame_of(vh, pkt), batch.bufs, 0);
    REQUIRE(r.count == 3);
    Bytes stream;
    for (std::size_t i = 0; i < 3; ++i) {
        const auto p = batch.bufs[i].bytes();
        CHECK(l4_checksum_ok(p));
        stream.insert(stream.end(), p.begin() + 28, p.end());
    }
    CHECK(stream == t.payload);
}

TEST_CASE("gso NONE: NEEDS_CSUM completes the checksum, otherwise bytes pass unchanged") {
    Tcp t;
    t.payload = pattern(100);
    tun::Segmenter seg(1500);
    Batch batch;
    SUBCASE("checksum-partial TCP") {
        const VirtioNetHeader vh{VirtioNetHeader::flag_needs_csum, 0, 40, 0, 20, 16};
        auto r = seg.segment(frame_of(vh, tcp_packet(t, true)), batch.bufs, 16);
        REQUIRE(r.count == 1);
        CHECK(test::to_hex(batch.bufs[0].bytes()) == test::to_hex(tcp_packet(t)));
    }
    SUBCASE("checksum-partial UDP") {
        const VirtioNetHeader vh{VirtioNetHeader::flag_needs_csum, 0, 0, 0, 20, 6};
        auto r = seg.segment(frame_of(vh, udp_packet(t, true)), batch.bufs, 16);
        REQUIRE(r.count == 1);
        CHECK(test::to_hex(batch.bufs[0].bytes()) == test::to_hex(udp_packet(t)));
    }
    SUBCASE("plain packet, even IPv6 or larger than the MTU") {
        for (const Bytes& p : {tcp_packet(t), Bytes{0x60, 0, 0, 0, 0, 0, 59, 64}}) {
            auto r = seg.segment(frame_of({}, p), batch.bufs, 0);
            REQUIRE(r.count == 1);
            CHECK(to_bytes(batch.bufs[0].bytes()) == p);
        }
        tun::Segmenter small(60);
        CHECK(small.segment(frame_of({}, tcp_packet(t)), batch.bufs, 0).count == 1);
    }
}

TEST_CASE("Segmenter drops bad input per reason and writes nothing") {
    Tcp t;
    t.payload = pattern(2000);
    const Bytes good = tcp_packet(t, true);
    auto with = [](Bytes p, std::size_t at, std::uint8_t v) {
        p[at] = v;
        return p;
    };
    Tcp frag = t;
    frag.frag = 0x2000;  // MF
    Bytes padded = good;
    padded.push_back(0);
    Bytes bad_doff = good;
    bad_doff[20 + 12] = 0x40;
    struct Row {
        const char* name;
        Bytes frame;
        std::size_t buffers;
        DropReason reason;
    } rows[] = {
        {"shorter than a vnet header", Bytes(9, 0), 8, DropReason::Truncated},
        {"unknown vnet flag", frame_of({0x04, 0, 0, 0, 0, 0}, good), 8, DropReason::BadVnetHeader},
        {"ECN without GSO", frame_of({0, 0x80, 0, 0, 0, 0}, good), 8, DropReason::BadVnetHeader},
        {"UFO gso type", frame_of({1, 3 /* VIRTIO_NET_HDR_GSO_UDP */, 40, 500, 20, 16}, good), 8, DropReason::BadVnetHeader},
        {"TCPv6 gso type", frame_of({1, 4 /* VIRTIO_NET_HDR_GSO_TCPV6 */, 40, 500, 20, 16}, good), 8, DropReason::BadVnetHeader},
        {"GSO without NEEDS_CSUM", frame_of({0, 1, 40, 500, 20, 16}, good), 8, DropReason::BadVnetHeader},
        {"csum past the end", frame_of({1, 0, 0, 0, 20, 2100}, good), 8, DropReason::BadVnetHeader},
        {"csum_start not the TCP header", frame_of({1, 1, 40, 500, 24, 16}, good), 8, DropReason::GsoInconsistent},
        {"csum_offset not the TCP checksum", frame_of({1, 1, 40, 500, 20, 6}, good), 8, DropReason::GsoInconsistent},
        {"hdr_len shorter than headers", frame_of({1, 1, 39, 500, 20, 16}, good), 8, DropReason::GsoInconsistent},
        {"hdr_len past the packet", frame_of({1, 1, 5000, 500, 20, 16}, good), 8, DropReason::GsoInconsistent},
        {"gso_size 0", frame_of(tso(20, 20, 0), good), 8, DropReason::GsoSizeInvalid},
        {"gso_size above the MTU", frame_of(tso(20, 20, 1461), good), 8, DropReason::GsoSizeInvalid},
        {"IPv6 with GSO", frame_of(tso(20, 20, 500), with(good, 0, 0x65)), 8, DropReason::UnexpectedProtocol},
        {"fragment with GSO", frame_of(tso(20, 20, 500), tcp_packet(frag, true)), 8, DropReason::Fragment},
        {"bytes past total length", frame_of(tso(20, 20, 500), padded), 8, DropReason::GsoInconsistent},
        {"total length past the bytes", frame_of(tso(20, 20, 500), Bytes(good.begin(), good.end() - 1)), 8,
         DropReason::Malformed},
        {"UDP under TCPV4", frame_of(tso(20, 20, 500), udp_packet(t, true)), 8, DropReason::GsoInconsistent},
        {"TCP data offset below 5", frame_of(tso(20, 20, 500), bad_doff), 8, DropReason::Malformed},
        {"headers only", frame_of(tso(20, 20, 500), tcp_packet(Tcp{}, true)), 8, DropReason::GsoInconsistent},
        {"no buffers", frame_of(tso(20, 20, 500), good), 0, DropReason::NoBuffer},
    };
    for (const Row& row : rows) {
        CAPTURE(row.name);
        tun::Segmenter seg(1500);
        Batch batch(row.buffers);
        auto r = seg.segment(row.frame, batch.bufs, 0);
        CHECK(r.count == 0);
        CHECK(r.reason == row.reason);
        CHECK(seg.drops()[static_cast<std::size_t>(row.reason)] == 1);
        CHECK(seg.segments() == 0);
    }
}

TEST_CASE("Segmenter: a batch smaller than the super-packet takes its segments in turns") {
    Tcp t;
    t.payload = pattern(4500);
    const Bytes frame = frame_of(tso(20, 20, 1000), tcp_packet(t, true));
    tun::Segmenter whole(1500), parts(1500);
    Batch all(8), two(2);
    const auto r = whole.segment(frame, all.bufs, 0);
    REQUIRE(r.count == 5);
    CHECK(r.total == 5);
    std::size_t first = 0;
    while (first < 5) {
        const auto p = parts.segment(frame, two.bufs, 8, first);
        REQUIRE(p.reason == DropReason::None);
        CHECK(p.total == 5);
        REQUIRE(p.count == std::min<std::size_t>(2, 5 - first));
        for (std::size_t i = 0; i < p.count; ++i) {
            CHECK(two.bufs[i].headroom() == 8);
            CHECK(test::to_hex(two.bufs[i].bytes()) == test::to_hex(all.bufs[first + i].bytes()));
        }
        first += p.count;
    }
    CHECK(parts.segments() == 5);
    CHECK(parts.super_packets() == 1);
    CHECK(parts.segment(frame, two.bufs, 0, 5).reason == DropReason::Internal);
}

TEST_CASE("Segmenter: a segment larger than the caller's buffer is NoTailroom, not an overflow") {
    Tcp t;
    t.payload = pattern(3000);
    core::BufferPool pool(4, 600);
    std::vector<core::PacketBuf> bufs;
    for (int i = 0; i < 4; ++i) bufs.push_back(pool.acquire(0));
    tun::Segmenter seg(1500);
    auto r = seg.segment(frame_of(tso(20, 20, 1000), tcp_packet(t, true)), bufs, 0);
    CHECK(r.reason == DropReason::NoTailroom);
    CHECK(seg.drops()[static_cast<std::size_t>(DropReason::NoTailroom)] == 1);
}

namespace {

/// Segments of one flow: `sizes` payload bytes each, contiguous from seq 1000.
std::vector<Bytes> flow_segments(std::initializer_list<std::size_t> sizes, Tcp t = {}) {
    std::vector<Bytes> out;
    std::size_t off = 0;
    for (std::size_t n : sizes) {
        t.payload = pattern(n, off);
        out.push_back(tcp_packet(t));
        t.seq += static_cast<std::uint32_t>(n);
        ++t.id;
        off += n;
    }
    return out;
}

std::vector<std::size_t> frame_sizes(tun::Coalescer& c) {
    std::vector<std::size_t> v;
    for (std::size_t i = 0; i < c.frame_count(); ++i) v.push_back(c.frame_segments(i));
    return v;
}

}  // namespace

TEST_CASE("Coalescer merges contiguous segments of one flow into a TSO frame the kernel accepts") {
    Tcp t;
    t.ip_options = ip_opts;
    t.tcp_options = ts_opts;
    auto segs = flow_segments({1000, 1000, 400}, t);
    segs[2][24 + 13] |= psh;  // PSH on the last one: still merged
    segs[2][24 + 16] = 0;     // fix up its checksum after the flag change
    segs[2][24 + 17] = 0;
    core::store_be16(segs[2].data() + 24 + 16,
                     core::checksum_finish(core::checksum_partial(std::span(segs[2]).subspan(24),
                                                                  pseudo(segs[2], 6, segs[2].size() - 24))));
    tun::Coalescer c;
    for (auto& s : segs) c.add(s);
    REQUIRE(c.frame_count() == 1);
    CHECK(c.frame_segments(0) == 3);
    CHECK(c.merged() == 2);
    const Bytes f = to_bytes(c.frame(0));
    const auto vh = VirtioNetHeader::parse(f);
    CHECK(vh == VirtioNetHeader{VirtioNetHeader::flag_needs_csum, VirtioNetHeader::gso_tcpv4, 24 + 32, 1000, 24, 16});
    Bytes p(f.begin() + VirtioNetHeader::len, f.end());
    const auto ip = core::Ipv4View::check(std::span<const std::uint8_t>(p));
    REQUIRE(ip);
    CHECK(ip->total_length() == 24 + 32 + 2400);
    CHECK(ip->checksum_valid());
    CHECK(ip->identification() == 0x1234);
    CHECK((p[24 + 13] & psh) != 0);
    CHECK(Bytes(p.begin() + 56, p.end()) == pattern(2400));
    // The checksum field holds the pseudo-header sum; completing it as the kernel does verifies.
    core::store_be16(p.data() + 24 + 16, core::checksum_finish(core::checksum_partial(std::span(p).subspan(24))));
    CHECK(l4_checksum_ok(p));

    SUBCASE("and the segmenter turns that frame back into the original packets") {
        tun::Segmenter seg(24 + 32 + 1000);
        Batch batch;
        auto r = seg.segment(f, batch.bufs, 0);
        REQUIRE(r.count == 3);
        for (std::size_t i = 0; i < 3; ++i) CHECK(test::to_hex(batch.bufs[i].bytes()) == test::to_hex(segs[i]));
    }
}

TEST_CASE("Coalescer keeps apart what GRO keeps apart") {
    Tcp t;
    SUBCASE("TCP options differ") {
        auto a = flow_segments({1000}, t);
        Tcp u = t;
        u.seq += 1000;
        u.tcp_options = ts_opts;
        u.payload = pattern(1000);
        tun::Coalescer c;
        c.add(a[0]);
        const Bytes b = tcp_packet(u);
        c.add(b);
        CHECK(frame_sizes(c) == std::vector<std::size_t>{1, 1});
    }
    SUBCASE("IP options, TTL, TOS, DF, ack differ") {
        for (int which = 0; which < 5; ++which) {
            CAPTURE(which);
            Tcp u = t;
            u.seq += 1000;
            u.payload = pattern(1000);
            if (which == 0) u.ip_options = ip_opts;
            if (which == 1) u.ttl = 63;
            if (which == 2) u.tos = 4;
            if (which == 3) u.frag = 0;
            if (which == 4) u.ack_number = 78;
            auto a = flow_segments({1000}, t);
            const Bytes b = tcp_packet(u);
            tun::Coalescer c;
            c.add(a[0]);
            c.add(b);
            CHECK(frame_sizes(c) == std::vector<std::size_t>{1, 1});
        }
    }
    SUBCASE("PSH ends a super-packet; FIN, RST, SYN and CWR never join one") {
        for (std::uint8_t flag : {psh, fin, rst, syn, cwr}) {
            CAPTURE(int{flag});
            Tcp u = t;
            u.flags = static_cast<std::uint8_t>(ack | flag);
            u.seq += 1000;
            u.payload = pattern(1000);
            auto a = flow_segments({1000}, t);
            Tcp w = t;
            w.seq += 2000;
            w.payload = pattern(1000);
            const Bytes b = tcp_packet(u), d = tcp_packet(w);
            tun::Coalescer c;
            c.add(a[0]);
            c.add(b);
            c.add(d);
            // PSH merges as the last of the first frame; the others stand alone, and nothing
            // after them joins the frame before them.
            if (flag == psh) CHECK(frame_sizes(c) == std::vector<std::size_t>{2, 1});
            else if (flag == cwr) CHECK(frame_sizes(c) == std::vector<std::size_t>{1, 2});
            else CHECK(frame_sizes(c) == std::vector<std::size_t>{1, 1, 1});
            if (flag != psh && flag != cwr) CHECK(VirtioNetHeader::parse(c.frame(1)) == VirtioNetHeader{});
        }
    }
    SUBCASE("out of order: never reordered, a gap starts a new super-packet") {
        auto s = flow_segments({1000, 1000, 1000, 1000, 1000});
        tun::Coalescer c;
        for (int i : {0, 1, 3, 4, 2}) c.add(s[static_cast<std::size_t>(i)]);
        // 2 arrives after 3 and 4 and must not be slipped in front of them.
        REQUIRE(frame_sizes(c) == std::vector<std::size_t>{2, 2, 1});
        CHECK(core::load_be32(c.frame(1).data() + VirtioNetHeader::len + 24) == 4000);
        CHECK(Bytes(c.frame(2).begin() + VirtioNetHeader::len, c.frame(2).end()) == s[2]);
    }
    SUBCASE("a short segment ends the super-packet") {
        auto s = flow_segments({1000, 500, 1000});
        tun::Coalescer c;
        for (auto& p : s) c.add(p);
        CHECK(frame_sizes(c) == std::vector<std::size_t>{2, 1});
    }
    SUBCASE("interleaved flows merge separately") {
        Tcp u = t;
        u.sport = 40001;
        auto a = flow_segments({1000, 1000}, t);
        auto b = flow_segments({1000, 1000}, u);
        tun::Coalescer c;
        c.add(a[0]);
        c.add(b[0]);
        c.add(a[1]);
        c.add(b[1]);
        CHECK(frame_sizes(c) == std::vector<std::size_t>{2, 2});
        CHECK(core::load_be16(c.frame(1).data() + VirtioNetHeader::len + 20) == 40001);
    }
    SUBCASE("pure ACKs, UDP and non-IP pass through unchanged") {
        auto acks = flow_segments({0, 0});
        Tcp small;
        small.payload = pattern(10);
        const Bytes udp = udp_packet(small);
        const Bytes junk = "60 00 00 00"_hex;
        tun::Coalescer c;
        c.add(acks[0]);
        c.add(acks[1]);
        c.add(udp);
        c.add(junk);
        c.add({});  // an empty read: a frame of just the header, not a copy from nowhere
        REQUIRE(frame_sizes(c) == std::vector<std::size_t>{1, 1, 1, 1, 1});
        CHECK(c.frame(4).size() == VirtioNetHeader::len);
        CHECK(Bytes(c.frame(2).begin() + VirtioNetHeader::len, c.frame(2).end()) == udp);
        CHECK(Bytes(c.frame(3).begin() + VirtioNetHeader::len, c.frame(3).end()) == junk);
        CHECK(VirtioNetHeader::parse(c.frame(3)) == VirtioNetHeader{});
    }
    SUBCASE("64 KiB at most") {
        std::vector<Bytes> s = flow_segments(std::initializer_list<std::size_t>{}, t);
        Tcp u = t;
        for (int i = 0; i < 70; ++i, u.seq += 1000) {
            u.payload = pattern(1000);
            s.push_back(tcp_packet(u));
        }
        tun::Coalescer c;
        for (auto& p : s) c.add(p);
        REQUIRE(c.frame_count() == 2);
        CHECK(c.frame_segments(0) == 65);  // 40 + 65 * 1000 <= 65535 < 40 + 66 * 1000
        CHECK(c.frame(0).size() == VirtioNetHeader::len + 40 + 65000);
        CHECK(c.frame_segments(1) == 5);
    }
}

TEST_CASE("Coalescer drops segments with a broken IP or TCP checksum and counts them") {
    auto s = flow_segments({1000, 1000, 1000});
    s[1][40 + 500] ^= 1;  // payload corrupted in flight
    Bytes bad_ip = flow_segments({1000})[0];
    bad_ip[8] = 1;  // TTL changed, header checksum not
    tun::Coalescer c;
    for (auto& p : s) c.add(p);
    c.add(bad_ip);
    CHECK(frame_sizes(c) == std::vector<std::size_t>{1, 1});
    CHECK(c.drops()[static_cast<std::size_t>(DropReason::BadChecksum)] == 2);
    c.clear();
    CHECK(c.frame_count() == 0);
}

TEST_CASE("Segment then coalesce reproduces a 60 KB super-packet byte for byte") {
    Tcp t;
    t.tcp_options = ts_opts;
    t.flags = ack | psh;
    t.payload = pattern(60000);
    const std::size_t mtu = 1400, gso = mtu - 20 - 32;
    const Bytes frame = frame_of(tso(20, 32, static_cast<std::uint16_t>(gso)), tcp_packet(t, true));
    tun::Segmenter seg(mtu);
    core::BufferPool pool(64, 1500);
    std::vector<core::PacketBuf> bufs;
    for (int i = 0; i < 64; ++i) bufs.push_back(pool.acquire(0));
    auto r = seg.segment(frame, bufs, 60);
    REQUIRE(r.count == (60000 + gso - 1) / gso);
    tun::Coalescer c;
    for (std::size_t i = 0; i < r.count; ++i) c.add(bufs[i].bytes());
    REQUIRE(c.frame_count() == 1);
    CHECK(test::to_hex(c.frame(0)) == test::to_hex(frame));
}

namespace {

/// Datagrams of one flow: `sizes` payload bytes each, identification counting up from 0x1234.
std::vector<Bytes> flow_datagrams(std::initializer_list<std::size_t> sizes, Tcp t = {}) {
    std::vector<Bytes> out;
    std::size_t off = 0;
    for (std::size_t n : sizes) {
        t.payload = pattern(n, off);
        out.push_back(udp_packet(t));
        ++t.id;
        off += n;
    }
    return out;
}

Bytes without_udp_checksum(Bytes p) {
    core::store_be16(p.data() + 20 + 6, 0);
    return p;
}

}  // namespace

TEST_CASE("Coalescer with merge_udp: datagrams of one flow become a USO frame the segmenter cuts back byte for byte") {
    Tcp t;
    t.frag = 0;  // no DF: the identifications must count up, and do
    const auto d = flow_datagrams({1000, 1000, 400}, t);
    tun::Coalescer c(tun::Coalescer::max_super_len, true);
    for (auto& p : d) c.add(p);
    REQUIRE(c.frame_count() == 1);
    CHECK(c.frame_segments(0) == 3);
    CHECK(c.merged() == 2);
    const Bytes f = to_bytes(c.frame(0));
    CHECK(VirtioNetHeader::parse(f) == VirtioNetHeader{VirtioNetHeader::flag_needs_csum, VirtioNetHeader::gso_udp_l4, 28, 1000, 20, 6});
    Bytes p(f.begin() + VirtioNetHeader::len, f.end());
    const auto ip = core::Ipv4View::check(std::span<const std::uint8_t>(p));
    REQUIRE(ip);
    CHECK(ip->total_length() == 28 + 2400);
    CHECK(ip->checksum_valid());
    CHECK(core::load_be16(p.data() + 24) == 8 + 2400);  // UDP length of the whole super-packet
    CHECK(Bytes(p.begin() + 28, p.end()) == pattern(2400));
    // The checksum field holds the pseudo-header sum; completing it as the kernel does verifies.
    core::store_be16(p.data() + 26, core::checksum_finish(core::checksum_partial(std::span(p).subspan(20))));
    CHECK(l4_checksum_ok(p));

    tun::Segmenter seg(1028);
    Batch batch;
    const auto r = seg.segment(f, batch.bufs, 0);
    REQUIRE(r.count == 3);
    for (std::size_t i = 0; i < 3; ++i) CHECK(test::to_hex(batch.bufs[i].bytes()) == test::to_hex(d[i]));
}

TEST_CASE("Coalescer with merge_udp keeps apart what UDP GRO keeps apart") {
    Tcp t;
    auto merge = [](std::initializer_list<Bytes> packets) {
        tun::Coalescer c(tun::Coalescer::max_super_len, true);
        for (auto& p : packets) c.add(p);
        return frame_sizes(c);
    };
    const auto d = flow_datagrams({1000, 1000}, t);
    SUBCASE("another port, TTL, TOS, DF or IP options") {
        for (int which = 0; which < 5; ++which) {
            CAPTURE(which);
            Tcp u = t;
            ++u.id;
            u.payload = pattern(1000);
            if (which == 0) u.sport = 40001;
            if (which == 1) u.ttl = 63;
            if (which == 2) u.tos = 4;
            if (which == 3) u.frag = 0;
            if (which == 4) u.ip_options = ip_opts;
            CHECK(merge({d[0], udp_packet(u)}) == std::vector<std::size_t>{1, 1});
        }
    }
    SUBCASE("without DF the identification must count up; with DF it may be anything (RFC 6864)") {
        Tcp u = t;
        u.id = 0x9999;
        u.payload = pattern(1000);
        CHECK(merge({d[0], udp_packet(u)}) == std::vector<std::size_t>{2});
        Tcp v = t, w = t;
        v.frag = w.frag = 0;
        w.id = 0x9999;
        v.payload = w.payload = pattern(1000);
        CHECK(merge({udp_packet(v), udp_packet(w)}) == std::vector<std::size_t>{1, 1});
    }
    SUBCASE("datagrams with and without a checksum do not mix; without merge among themselves") {
        CHECK(merge({d[0], without_udp_checksum(d[1])}) == std::vector<std::size_t>{1, 1});
        CHECK(merge({without_udp_checksum(d[0]), without_udp_checksum(d[1])}) == std::vector<std::size_t>{2});
    }
    SUBCASE("a shorter datagram ends the super-packet, a longer one starts another; empty ones stand alone") {
        const auto s = flow_datagrams({1000, 500, 1000, 1200, 0, 1200});
        CHECK(merge({s[0], s[1], s[2]}) == std::vector<std::size_t>{2, 1});
        CHECK(merge({s[2], s[3]}) == std::vector<std::size_t>{1, 1});
        CHECK(merge({s[4], s[5]}) == std::vector<std::size_t>{1, 1});
        CHECK(merge({s[3], s[4]}) == std::vector<std::size_t>{1, 1});  // found by fuzz_tun_offload_coalesce
    }
    SUBCASE("a TCP segment of another flow in between does not split it; a fragment passes alone") {
        const auto tcp = flow_segments({1000});
        CHECK(merge({d[0], tcp[0], d[1]}) == std::vector<std::size_t>{2, 1});
        Bytes frag = d[1];
        core::store_be16(frag.data() + 6, 0x2000);  // MF
        core::store_be16(frag.data() + 10, 0);
        core::store_be16(frag.data() + 10, core::internet_checksum(std::span(frag).first(20)));
        CHECK(merge({d[0], frag}) == std::vector<std::size_t>{1, 1});
    }
    SUBCASE("at most 64 datagrams, and 64 KiB") {
        std::vector<Bytes> s;
        Tcp u = t;
        for (int i = 0; i < 70; ++i, ++u.id) {
            u.payload = pattern(100);
            s.push_back(udp_packet(u));
        }
        tun::Coalescer c(tun::Coalescer::max_super_len, true);
        for (auto& p : s) c.add(p);
        CHECK(frame_sizes(c) == std::vector<std::size_t>{64, 6});
        std::vector<Bytes> big;
        for (int i = 0; i < 50; ++i, ++u.id) {
            u.payload = pattern(1400);
            big.push_back(udp_packet(u));
        }
        tun::Coalescer b(tun::Coalescer::max_super_len, true);
        for (auto& p : big) b.add(p);
        CHECK(frame_sizes(b) == std::vector<std::size_t>{46, 4});  // 28 + 46 * 1400 <= 65535 < 28 + 47 * 1400
    }
}

TEST_CASE("Coalescer with merge_udp drops a datagram with a broken UDP checksum and counts it") {
    auto d = flow_datagrams({1000, 1000, 1000});
    d[1][28 + 10] ^= 1;  // payload corrupted in flight
    tun::Coalescer c(tun::Coalescer::max_super_len, true);
    for (auto& p : d) c.add(p);
    // The broken one closes its flow's super-packet: the third does not join the first.
    CHECK(frame_sizes(c) == std::vector<std::size_t>{1, 1});
    CHECK(c.drops()[static_cast<std::size_t>(DropReason::BadChecksum)] == 1);
}
