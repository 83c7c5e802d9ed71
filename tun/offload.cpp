// SPDX-License-Identifier: MIT
#include "tun/offload.hpp"

#include <algorithm>
#include <cstring>

#include "core/checksum.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"

namespace mipsec::tun {

namespace {

using core::DropReason;

// TCP header (RFC 9293 §3.1) offsets and flag bits.
constexpr std::size_t tcp_min_len = 20;
constexpr std::size_t tcp_seq = 4;
constexpr std::size_t tcp_ack = 8;
constexpr std::size_t tcp_flags = 13;
constexpr std::size_t tcp_checksum = 16;
constexpr std::uint8_t tcp_fin = 0x01;
constexpr std::uint8_t tcp_syn = 0x02;
constexpr std::uint8_t tcp_rst = 0x04;
constexpr std::uint8_t tcp_psh = 0x08;
constexpr std::uint8_t tcp_ack_flag = 0x10;
constexpr std::uint8_t tcp_urg = 0x20;
constexpr std::uint8_t tcp_cwr = 0x80;
// UDP header (RFC 768).
constexpr std::size_t udp_len = 8;
constexpr std::size_t udp_length = 4;
constexpr std::size_t udp_checksum = 6;
// IPv4 header (RFC 791).
constexpr std::size_t ip_total_length = 2;
constexpr std::size_t ip_identification = 4;
constexpr std::size_t ip_checksum = 10;

std::size_t tcp_header_len(const std::uint8_t* tcp) noexcept { return std::size_t{tcp[12]} >> 4 << 2; }

std::uint32_t pseudo_sum(std::span<const std::uint8_t> ip, std::uint8_t protocol, std::size_t l4_len) noexcept {
    return core::pseudo_header_sum({core::load_be32(ip.data() + 12)}, {core::load_be32(ip.data() + 16)}, protocol,
                                   static_cast<std::uint16_t>(l4_len));
}

void store_ip_checksum(std::uint8_t* ip, std::size_t ihl) noexcept {
    core::store_be16(ip + ip_checksum, 0);
    core::store_be16(ip + ip_checksum, core::internet_checksum({ip, ihl}));
}

}  // namespace

// <linux/virtio_net.h> does not compile as C++ (a member named `class`) and Debian's copy
// predates GSO_UDP_L4, so the layout is spelled out: u8 flags, u8 gso_type, then four u16 in
// the device's byte order, which for a TUN device is the host's.
namespace {
std::uint16_t load_host16(const std::uint8_t* p) noexcept {
    std::uint16_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
void store_host16(std::uint8_t* p, std::uint16_t v) noexcept { std::memcpy(p, &v, sizeof v); }
}  // namespace

VirtioNetHeader VirtioNetHeader::parse(std::span<const std::uint8_t> bytes) noexcept {
    const std::uint8_t* b = bytes.data();
    return {b[0], b[1], load_host16(b + 2), load_host16(b + 4), load_host16(b + 6), load_host16(b + 8)};
}

void VirtioNetHeader::emit(std::span<std::uint8_t> out) const noexcept {
    std::uint8_t* b = out.data();
    b[0] = flags;
    b[1] = gso_type;
    store_host16(b + 2, hdr_len);
    store_host16(b + 4, gso_size);
    store_host16(b + 6, csum_start);
    store_host16(b + 8, csum_offset);
}

Segmenter::Outcome Segmenter::segment(std::span<const std::uint8_t> frame, std::span<core::PacketBuf> out,
                                      std::size_t headroom, std::size_t first) noexcept {
    if (frame.size() < VirtioNetHeader::len) return drop(DropReason::Truncated);
    const VirtioNetHeader vh = VirtioNetHeader::parse(frame);
    const auto pkt = frame.subspan(VirtioNetHeader::len);
    const bool needs_csum = vh.flags & VirtioNetHeader::flag_needs_csum;
    if (vh.flags & ~(VirtioNetHeader::flag_needs_csum | VirtioNetHeader::flag_data_valid))
        return drop(DropReason::BadVnetHeader);
    const std::uint8_t gso = vh.gso_type & ~VirtioNetHeader::gso_ecn;

    if (gso == VirtioNetHeader::gso_none) {
        if (vh.gso_type != VirtioNetHeader::gso_none) return drop(DropReason::BadVnetHeader);  // ECN without GSO
        // Checksum offload only: the L4 checksum field holds the pseudo-header sum and the
        // sum over [csum_start, end) completes it (virtio 1.2 §5.1.6.2), whatever the protocol
        // (an IPv6 or non-IP packet passes too: this half does not need to read it).
        const std::size_t at = std::size_t{vh.csum_start} + vh.csum_offset;
        if (needs_csum && (vh.csum_start >= pkt.size() || at + 2 > pkt.size())) return drop(DropReason::BadVnetHeader);
        if (first != 0) return drop(DropReason::Internal);  // the caller resumed past the end
        if (out.empty()) return drop(DropReason::NoBuffer);
        core::PacketBuf& buf = out[0];
        buf.reset(headroom);
        if (!buf.resize(pkt.size())) return drop(DropReason::NoTailroom);
        std::memcpy(buf.data(), pkt.data(), pkt.size());
        if (needs_csum) {
            auto bytes = buf.bytes();
            core::store_be16(bytes.data() + at, core::checksum_finish(core::checksum_partial(bytes.subspan(vh.csum_start))));
        }
        ++segments_;
        return {1, DropReason::None, 1};
    }
    if (gso != VirtioNetHeader::gso_tcpv4 && gso != VirtioNetHeader::gso_udp_l4) return drop(DropReason::BadVnetHeader);
    // Segmentation offload depends on checksum offload (virtio 1.2 §5.1.3.1: HOST_TSO4 requires
    // CSUM), and the kernel hands over every locally sent GSO packet as checksum-partial. The
    // one other honest kind is what a NIC merged (GRO) and read by a packet socket: checksums
    // verified, DATA_VALID. Each segment's checksum is computed afresh either way.
    const bool data_valid = vh.flags & VirtioNetHeader::flag_data_valid;
    if (!needs_csum && !data_valid) return drop(DropReason::BadVnetHeader);

    const auto ip = core::Ipv4View::check(pkt);
    if (!ip) return drop(core::ipv4_check_failure(pkt));
    if (ip->total_length() != pkt.size()) return drop(DropReason::GsoInconsistent);
    if (ip->is_fragment()) return drop(DropReason::Fragment);
    const bool tcp = gso == VirtioNetHeader::gso_tcpv4;
    if (ip->protocol() != (tcp ? core::ip_protocol::tcp : core::ip_protocol::udp))
        return drop(DropReason::GsoInconsistent);
    const std::size_t ihl = ip->header_len();
    std::size_t l4_len = udp_len;
    if (tcp) {
        if (pkt.size() < ihl + tcp_min_len) return drop(DropReason::Truncated);
        l4_len = tcp_header_len(pkt.data() + ihl);
        if (l4_len < tcp_min_len) return drop(DropReason::Malformed);
    }
    const std::size_t hl = ihl + l4_len;
    if (pkt.size() < hl) return drop(DropReason::Truncated);
    // The checksum fields must point at this packet's own L4 checksum; hdr_len may cover more
    // than the headers (the forwarding path reports the linear part) but never less.
    if ((needs_csum && (vh.csum_start != ihl || vh.csum_offset != (tcp ? tcp_checksum : udp_checksum))) || vh.hdr_len < hl ||
        vh.hdr_len > pkt.size())
        return drop(DropReason::GsoInconsistent);
    const std::size_t payload = pkt.size() - hl;
    if (vh.gso_size == 0 || hl + vh.gso_size > mtu_) return drop(DropReason::GsoSizeInvalid);
    if (payload == 0) return drop(DropReason::GsoInconsistent);
    const std::size_t n = (payload + vh.gso_size - 1) / vh.gso_size;
    if (first >= n) return drop(DropReason::Internal);  // the caller resumed past the end
    if (out.empty()) return drop(DropReason::NoBuffer);
    const std::size_t end = std::min(n, first + out.size());
    for (std::size_t i = first; i < end; ++i) {
        core::PacketBuf& buf = out[i - first];
        buf.reset(headroom);
        if (buf.writable().size() < hl + std::min<std::size_t>(vh.gso_size, payload - i * vh.gso_size))
            return drop(DropReason::NoTailroom);
    }

    const std::uint16_t id = ip->identification();
    const std::uint32_t seq = tcp ? core::load_be32(pkt.data() + ihl + tcp_seq) : 0;
    for (std::size_t i = first; i < end; ++i) {
        const std::size_t off = i * vh.gso_size;
        const std::size_t seg_payload = std::min<std::size_t>(vh.gso_size, payload - off);
        core::PacketBuf& buf = out[i - first];
        (void)buf.resize(hl + seg_payload);  // room checked above
        std::uint8_t* b = buf.data();
        std::memcpy(b, pkt.data(), hl);
        std::memcpy(b + hl, pkt.data() + hl + off, seg_payload);
        // RFC 791: each segment is a datagram of its own with its own identification.
        core::store_be16(b + ip_total_length, static_cast<std::uint16_t>(hl + seg_payload));
        core::store_be16(b + ip_identification, static_cast<std::uint16_t>(id + i));
        store_ip_checksum(b, ihl);
        std::uint8_t* l4 = b + ihl;
        if (tcp) {
            core::store_be32(l4 + tcp_seq, static_cast<std::uint32_t>(seq + off));
            // FIN and PSH belong to the last byte of the stream piece, CWR to its first
            // (RFC 3168 §6.1.2: CWR is set on one segment), as the kernel's TSO does.
            if (i + 1 < n) l4[tcp_flags] &= static_cast<std::uint8_t>(~(tcp_fin | tcp_psh));
            if (i > 0) l4[tcp_flags] &= static_cast<std::uint8_t>(~tcp_cwr);
            core::store_be16(l4 + tcp_checksum, 0);
            const std::size_t len = l4_len + seg_payload;
            core::store_be16(l4 + tcp_checksum, core::checksum_finish(core::checksum_partial(
                                                    {l4, len}, pseudo_sum(buf.bytes(), core::ip_protocol::tcp, len))));
        } else {
            const std::size_t len = udp_len + seg_payload;
            core::store_be16(l4 + udp_length, static_cast<std::uint16_t>(len));
            core::store_be16(l4 + udp_checksum, 0);
            std::uint16_t c = core::checksum_finish(
                core::checksum_partial({l4, len}, pseudo_sum(buf.bytes(), core::ip_protocol::udp, len)));
            core::store_be16(l4 + udp_checksum, c == 0 ? 0xFFFF : c);  // RFC 768: 0 means "none"
        }
    }
    if (n > 1 && first == 0) ++super_packets_;
    segments_ += end - first;
    return {end - first, DropReason::None, n};
}

FrameCutter::Cut FrameCutter::cut(std::span<core::PacketBuf> out) noexcept {
    const auto frame = std::span<const std::uint8_t>(frame_).subspan(offset_, len_);
    Cut c{segmenter_.segment(frame, out, out[0].headroom(), next_), next_ == 0,
          frame.size() >= VirtioNetHeader::len && frame[1] != VirtioNetHeader::gso_none};
    next_ += c.outcome.count;
    // Dropped, or its last segment out: a super-packet larger than the batch waits otherwise.
    if (c.outcome.count == 0 || next_ >= c.outcome.total) pending_ = false;
    return c;
}

Coalescer::Coalescer(std::size_t max_packet_len, bool merge_udp)
    : max_packet_len_(std::min(max_packet_len, max_super_len)),
      merge_udp_(merge_udp),
      scratch_(VirtioNetHeader::len + max_super_len) {}

void Coalescer::clear() noexcept {
    segments_.clear();
    frames_.clear();
    open_.clear();
}

namespace {

// What add() needs of a UDP/IPv4 datagram; valid() false for anything else (a fragment, a
// UDP length that is not the packet's).
struct UdpDatagram {
    std::span<const std::uint8_t> ip;
    std::size_t ihl = 0;
    const std::uint8_t* udp = nullptr;
    std::size_t payload = 0;
    bool valid() const noexcept { return udp != nullptr; }
    bool has_checksum() const noexcept { return core::load_be16(udp + udp_checksum) != 0; }
    std::uint16_t id() const noexcept { return core::load_be16(ip.data() + ip_identification); }
    bool same_flow(const UdpDatagram& o) const noexcept {
        return std::memcmp(ip.data() + 12, o.ip.data() + 12, 8) == 0 && std::memcmp(udp, o.udp, 4) == 0;
    }
};

UdpDatagram parse_udp(std::span<const std::uint8_t> packet) noexcept {
    const auto ip = core::Ipv4View::check(packet);
    if (!ip || ip->protocol() != core::ip_protocol::udp || ip->is_fragment() || ip->total_length() != packet.size())
        return {};
    const std::size_t ihl = ip->header_len();
    if (packet.size() < ihl + udp_len || core::load_be16(packet.data() + ihl + udp_length) != packet.size() - ihl) return {};
    return {packet, ihl, packet.data() + ihl, packet.size() - ihl - udp_len};
}

// What add() needs of a TCP/IPv4 packet; valid() false for anything else.
struct TcpSegment {
    std::span<const std::uint8_t> ip;
    std::size_t ihl = 0;
    std::size_t thl = 0;
    const std::uint8_t* tcp = nullptr;
    std::size_t payload = 0;
    bool valid() const noexcept { return tcp != nullptr; }
    std::uint8_t flags() const noexcept { return tcp[tcp_flags]; }
    std::uint32_t seq() const noexcept { return core::load_be32(tcp + tcp_seq); }
    bool same_flow(const TcpSegment& o) const noexcept {
        return std::memcmp(ip.data() + 12, o.ip.data() + 12, 8) == 0 && std::memcmp(tcp, o.tcp, 4) == 0;
    }
};

TcpSegment parse_tcp(std::span<const std::uint8_t> packet) noexcept {
    const auto ip = core::Ipv4View::check(packet);
    if (!ip || ip->protocol() != core::ip_protocol::tcp || ip->is_fragment() || ip->total_length() != packet.size())
        return {};
    const std::size_t ihl = ip->header_len();
    if (packet.size() < ihl + tcp_min_len) return {};
    const std::size_t thl = tcp_header_len(packet.data() + ihl);
    if (thl < tcp_min_len || ihl + thl > packet.size()) return {};
    return {packet, ihl, thl, packet.data() + ihl, packet.size() - ihl - thl};
}

}  // namespace

void Coalescer::close_flow(std::span<const std::uint8_t> packet) noexcept {
    if (const UdpDatagram d = parse_udp(packet); d.valid()) {
        std::erase_if(open_, [&](std::uint32_t fi) {
            return frames_[fi].udp && parse_udp(segments_[frames_[fi].first].bytes).same_flow(d);
        });
        return;
    }
    const TcpSegment seg = parse_tcp(packet);
    if (!seg.valid()) return;
    std::erase_if(open_, [&](std::uint32_t fi) {
        return !frames_[fi].udp && parse_tcp(segments_[frames_[fi].first].bytes).same_flow(seg);
    });
}

bool Coalescer::try_merge_udp(Frame& f, std::span<const std::uint8_t> packet) const noexcept {
    const UdpDatagram head = parse_udp(segments_[f.first].bytes);
    const UdpDatagram d = parse_udp(packet);
    // An empty datagram is no segment: the kernel would cut the frame into one datagram fewer.
    if (d.payload == 0 || f.last_payload != f.gso_size || d.payload > f.gso_size || f.segments >= udp_max_segments)
        return false;
    if (f.total_len + d.payload > max_packet_len_) return false;
    // The kernel copies the head's IP header into every datagram it cuts (RFC 791 fields the
    // same) and numbers them from the head's identification on; with DF set the
    // identification carries nothing (RFC 6864 §4.1), without it must already be so numbered.
    const auto* a = head.ip.data();
    const auto* b = d.ip.data();
    if (head.ihl != d.ihl || a[1] != b[1] || a[8] != b[8] || ((a[6] ^ b[6]) & 0x40) ||
        std::memcmp(a + 20, b + 20, head.ihl - 20) != 0)
        return false;
    if (!(a[6] & 0x40) && d.id() != static_cast<std::uint16_t>(head.id() + f.segments)) return false;
    // Linux UDP GRO keeps datagrams with and without a checksum apart, and so do we.
    return head.has_checksum() == d.has_checksum();
}

void Coalescer::add_udp(std::span<const std::uint8_t> packet) {
    const UdpDatagram d = parse_udp(packet);
    // The kernel computes each cut datagram's checksum afresh (NEEDS_CSUM): a corrupted one
    // must not come out of it with a valid one. Without a checksum there is nothing to check.
    if (core::internet_checksum(d.ip.first(d.ihl)) != 0 ||
        (d.has_checksum() && core::checksum_finish(core::checksum_partial(
                                 d.ip.subspan(d.ihl), pseudo_sum(d.ip, core::ip_protocol::udp, udp_len + d.payload))) != 0)) {
        ++drops_[static_cast<std::size_t>(DropReason::BadChecksum)];
        close_flow(packet);
        return;
    }
    const auto index = static_cast<std::uint32_t>(segments_.size());
    auto it = std::find_if(open_.rbegin(), open_.rend(), [&](std::uint32_t fi) {
        return frames_[fi].udp && parse_udp(segments_[frames_[fi].first].bytes).same_flow(d);
    });
    if (it != open_.rend()) {
        const std::uint32_t fi = *it;
        Frame& f = frames_[fi];
        if (try_merge_udp(f, packet)) {
            segments_.push_back({packet});
            segments_[f.last].next = index;
            f.last = index;
            ++f.segments;
            f.total_len += d.payload;
            f.last_payload = static_cast<std::uint16_t>(d.payload);
            ++merged_;
            if (d.payload < f.gso_size) open_.erase(std::next(it).base());  // only the last may be short
            return;
        }
        open_.erase(std::next(it).base());  // never reorder: later datagrams go after this one
    }
    segments_.push_back({packet});
    Frame f;
    f.first = f.last = index;
    f.udp = true;
    f.total_len = packet.size();
    f.gso_size = f.last_payload = static_cast<std::uint16_t>(d.payload);
    // An empty datagram cannot be a segment size, and a full-size one leaves no room.
    if (d.payload > 0 && packet.size() < max_packet_len_) open_.push_back(static_cast<std::uint32_t>(frames_.size()));
    frames_.push_back(f);
}

bool Coalescer::try_merge(Frame& f, std::span<const std::uint8_t> packet) const noexcept {
    const TcpSegment head = parse_tcp(segments_[f.first].bytes);
    const TcpSegment seg = parse_tcp(packet);
    if (f.last_payload != f.gso_size || seg.payload > f.gso_size || seg.seq() != f.next_seq) return false;
    if (f.total_len + seg.payload > max_packet_len_) return false;
    // IP: same header length, TOS, TTL, DF and options (RFC 791); the segmenter on the far
    // side of the kernel will copy the head's header into every segment.
    const auto* a = head.ip.data();
    const auto* b = seg.ip.data();
    if (head.ihl != seg.ihl || a[1] != b[1] || a[8] != b[8] || ((a[6] ^ b[6]) & 0x40) ||
        std::memcmp(a + 20, b + 20, head.ihl - 20) != 0)
        return false;
    // TCP: same header length and options, acknowledgment number and flags; CWR only on the
    // head (RFC 3168 §6.1.2), PSH allowed on the last (it then closes the frame).
    if (head.thl != seg.thl || std::memcmp(head.tcp + tcp_ack, seg.tcp + tcp_ack, 4) != 0 ||
        std::memcmp(head.tcp + tcp_min_len, seg.tcp + tcp_min_len, head.thl - tcp_min_len) != 0)
        return false;
    if (seg.flags() & tcp_cwr) return false;
    const auto mask = static_cast<std::uint8_t>(~(tcp_psh | tcp_cwr));
    return (head.flags() & mask) == (seg.flags() & mask);
}

void Coalescer::add(std::span<const std::uint8_t> packet) {
    if (merge_udp_ && parse_udp(packet).valid()) {
        add_udp(packet);
        return;
    }
    const TcpSegment seg = parse_tcp(packet);
    const auto index = static_cast<std::uint32_t>(segments_.size());
    auto start_frame = [&](bool mergeable) {
        segments_.push_back({packet});
        Frame f;
        f.first = f.last = index;
        if (mergeable) {
            f.total_len = packet.size();
            f.gso_size = f.last_payload = static_cast<std::uint16_t>(seg.payload);
            f.next_seq = static_cast<std::uint32_t>(seg.seq() + seg.payload);
            open_.push_back(static_cast<std::uint32_t>(frames_.size()));
        }
        frames_.push_back(f);
    };
    if (!seg.valid()) {
        start_frame(false);
        return;
    }
    // The kernel takes a merged super-packet's checksum on trust (NEEDS_CSUM asks it to
    // compute one), so a corrupted segment must not hide inside one.
    if (core::internet_checksum(seg.ip.first(seg.ihl)) != 0 ||
        core::checksum_finish(core::checksum_partial(seg.ip.subspan(seg.ihl),
                                                     pseudo_sum(seg.ip, core::ip_protocol::tcp, seg.thl + seg.payload))) != 0) {
        ++drops_[static_cast<std::size_t>(DropReason::BadChecksum)];
        close_flow(packet);
        return;
    }
    const std::uint8_t flags = seg.flags();
    const bool eligible = seg.payload > 0 && (flags & tcp_ack_flag) && !(flags & (tcp_syn | tcp_fin | tcp_rst | tcp_urg)) &&
                          packet.size() < max_packet_len_;
    if (!eligible) {
        close_flow(packet);
        start_frame(false);
        return;
    }
    auto it = std::find_if(open_.rbegin(), open_.rend(), [&](std::uint32_t fi) {
        return !frames_[fi].udp && parse_tcp(segments_[frames_[fi].first].bytes).same_flow(seg);
    });
    if (it != open_.rend()) {
        const std::uint32_t fi = *it;
        Frame& f = frames_[fi];
        if (try_merge(f, packet)) {
            segments_.push_back({packet});
            segments_[f.last].next = index;
            f.last = index;
            ++f.segments;
            f.total_len += seg.payload;
            f.last_payload = static_cast<std::uint16_t>(seg.payload);
            f.next_seq = static_cast<std::uint32_t>(seg.seq() + seg.payload);
            ++merged_;
            // A short or pushed segment ends the super-packet: only the last may be either.
            if ((flags & tcp_psh) || seg.payload < f.gso_size) open_.erase(std::next(it).base());
            return;
        }
        open_.erase(std::next(it).base());  // never reorder: later data goes after this one
    }
    start_frame(!(flags & tcp_psh));
}

std::span<const std::uint8_t> Coalescer::frame(std::size_t i) noexcept {
    const Frame& f = frames_[i];
    const auto head_bytes = segments_[f.first].bytes;
    if (f.segments == 1) {
        if (scratch_.size() < VirtioNetHeader::len + head_bytes.size())
            scratch_.resize(VirtioNetHeader::len + head_bytes.size());
        VirtioNetHeader{}.emit(scratch_);
        if (!head_bytes.empty())  // an empty span may have no data() to copy from
            std::memcpy(scratch_.data() + VirtioNetHeader::len, head_bytes.data(), head_bytes.size());
        return std::span(scratch_).first(VirtioNetHeader::len + head_bytes.size());
    }
    if (f.udp) return udp_frame(f);
    const TcpSegment head = parse_tcp(head_bytes);
    std::uint8_t* out = scratch_.data() + VirtioNetHeader::len;
    std::memcpy(out, head_bytes.data(), head_bytes.size());
    std::size_t len = head_bytes.size();
    std::uint8_t last_flags = head.flags();
    for (std::uint32_t s = segments_[f.first].next; s != no_segment; s = segments_[s].next) {
        const TcpSegment seg = parse_tcp(segments_[s].bytes);
        std::memcpy(out + len, seg.tcp + seg.thl, seg.payload);
        len += seg.payload;
        last_flags = seg.flags();
    }
    core::store_be16(out + ip_total_length, static_cast<std::uint16_t>(len));
    store_ip_checksum(out, head.ihl);
    std::uint8_t* tcp = out + head.ihl;
    tcp[tcp_flags] |= last_flags & tcp_psh;
    // NEEDS_CSUM: the checksum field holds the folded, uncomplemented pseudo-header sum and
    // the kernel adds the rest (as tcp_v4_send_check prepares a CHECKSUM_PARTIAL packet).
    core::store_be16(tcp + tcp_checksum,
                     static_cast<std::uint16_t>(~core::checksum_finish(pseudo_sum({out, len}, core::ip_protocol::tcp,
                                                                                  len - head.ihl))));
    VirtioNetHeader vh;
    vh.flags = VirtioNetHeader::flag_needs_csum;
    vh.gso_type = VirtioNetHeader::gso_tcpv4;
    if (head.flags() & tcp_cwr) vh.gso_type |= VirtioNetHeader::gso_ecn;  // as Linux GRO marks it
    vh.hdr_len = static_cast<std::uint16_t>(head.ihl + head.thl);
    vh.gso_size = f.gso_size;
    vh.csum_start = static_cast<std::uint16_t>(head.ihl);
    vh.csum_offset = tcp_checksum;
    vh.emit(scratch_);
    return std::span(scratch_).first(VirtioNetHeader::len + len);
}

std::span<const std::uint8_t> Coalescer::udp_frame(const Frame& f) noexcept {
    const auto head_bytes = segments_[f.first].bytes;
    const UdpDatagram head = parse_udp(head_bytes);
    std::uint8_t* out = scratch_.data() + VirtioNetHeader::len;
    std::memcpy(out, head_bytes.data(), head_bytes.size());
    std::size_t len = head_bytes.size();
    for (std::uint32_t s = segments_[f.first].next; s != no_segment; s = segments_[s].next) {
        const UdpDatagram d = parse_udp(segments_[s].bytes);
        std::memcpy(out + len, d.udp + udp_len, d.payload);
        len += d.payload;
    }
    core::store_be16(out + ip_total_length, static_cast<std::uint16_t>(len));
    store_ip_checksum(out, head.ihl);
    std::uint8_t* udp = out + head.ihl;
    const std::size_t l4 = len - head.ihl;
    // The super-packet's UDP length and pseudo-header sum cover all of it, as a UDP_SEGMENT
    // send leaves them; the kernel adjusts both per datagram when it cuts (__udp_gso_segment).
    core::store_be16(udp + udp_length, static_cast<std::uint16_t>(l4));
    core::store_be16(udp + udp_checksum,
                     static_cast<std::uint16_t>(~core::checksum_finish(pseudo_sum({out, len}, core::ip_protocol::udp, l4))));
    VirtioNetHeader vh;
    vh.flags = VirtioNetHeader::flag_needs_csum;
    vh.gso_type = VirtioNetHeader::gso_udp_l4;
    vh.hdr_len = static_cast<std::uint16_t>(head.ihl + udp_len);
    vh.gso_size = f.gso_size;
    vh.csum_start = static_cast<std::uint16_t>(head.ihl);
    vh.csum_offset = udp_checksum;
    vh.emit(scratch_);
    return std::span(scratch_).first(VirtioNetHeader::len + len);
}

}  // namespace mipsec::tun
