// SPDX-License-Identifier: MIT
#pragma once
// TUN offloads without I/O. A TUN device opened with IFF_VNET_HDR and TUNSETOFFLOAD
// (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO4) hands over IPv4 super-packets of up to 64 KiB, each
// behind a virtio-net header (virtio spec 1.2 §5.1.6, "struct virtio_net_hdr"), and accepts
// the same on write. Segmenter cuts such a super-packet into MTU-sized packets before the
// stages run (what the kernel's TSO/USO would have done: RFC 9293 §3.4 sequence numbers,
// RFC 791 identification/total length/checksum, RFC 768 UDP length); Coalescer merges the
// decrypted TCP segments of one flow back into super-packets after them (the rules of Linux
// GRO: never reorder data, never merge what TCP would treat differently).
//
// The virtio-net header of a TUN device is in host byte order (no TUNSETVNETLE/BE).
// Malformed input is dropped and counted per core::DropReason, never cut into garbage.
// Neither type is thread-safe; one instance per TUN queue.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/drop_reason.hpp"
#include "core/packet_buf.hpp"

namespace mipsec::tun {

/// struct virtio_net_hdr (without num_buffers), as a TUN device with IFF_VNET_HDR and the
/// default vnet header size of 10 bytes puts it in front of every packet.
struct VirtioNetHeader {
    static constexpr std::size_t len = 10;
    static constexpr std::uint8_t flag_needs_csum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
    static constexpr std::uint8_t flag_data_valid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID
    static constexpr std::uint8_t gso_none = 0;         // VIRTIO_NET_HDR_GSO_NONE
    static constexpr std::uint8_t gso_tcpv4 = 1;        // VIRTIO_NET_HDR_GSO_TCPV4
    static constexpr std::uint8_t gso_udp_l4 = 5;       // VIRTIO_NET_HDR_GSO_UDP_L4
    static constexpr std::uint8_t gso_ecn = 0x80;       // VIRTIO_NET_HDR_GSO_ECN

    std::uint8_t flags = 0;
    std::uint8_t gso_type = gso_none;
    std::uint16_t hdr_len = 0;      // bytes of headers (IP + L4) in front of the payload
    std::uint16_t gso_size = 0;     // payload bytes per segment
    std::uint16_t csum_start = 0;   // where the checksummed range starts (the L4 header)
    std::uint16_t csum_offset = 0;  // where the checksum sits, from csum_start

    /// Reads the first `len` bytes; the caller checks the size.
    static VirtioNetHeader parse(std::span<const std::uint8_t> bytes) noexcept;
    /// Writes `len` bytes; out must hold at least that many.
    void emit(std::span<std::uint8_t> out) const noexcept;
    bool operator==(const VirtioNetHeader&) const = default;
};

/// Drops per reason, indexed by core::DropReason.
using OffloadDrops = std::array<std::uint64_t, core::drop_reason_count>;

/// Super-packet (virtio-net header + IPv4 packet, as read from the TUN device) → MTU-sized
/// IPv4 packets. gso_type NONE passes the packet through, completing its L4 checksum when
/// NEEDS_CSUM is set; TCPV4 and UDP_L4 are segmented: each segment gets the original IP
/// header and options (identification incremented per segment, total length and header
/// checksum rewritten) and the original TCP header and options (sequence number advanced,
/// FIN and PSH only on the last segment, CWR only on the first) or UDP header (own length),
/// with its L4 checksum computed over its own bytes. The kernel's hdr_len is not trusted as
/// the header length (on the forwarding path it can cover payload too); the headers are
/// parsed and hdr_len must not be shorter than them.
class Segmenter {
public:
    /// `mtu`: the largest IP packet a segment may be.
    explicit Segmenter(std::size_t mtu) noexcept : mtu_(mtu) {}

    struct Outcome {
        std::size_t count = 0;  // buffers of `out` filled; 0 when dropped
        core::DropReason reason = core::DropReason::None;
        std::size_t total = 0;  // segments the whole frame makes
    };
    /// Writes segments first, first+1, ... of `frame` into out[0..count), each reset to
    /// `headroom` first, as many as `out` holds: a batch smaller than a super-packet takes the
    /// rest with another call starting at first + count, until first + count == total (the
    /// frame is validated again on each call; it must not change in between). Nothing is
    /// written when the frame is dropped: NoBuffer when `out` is empty, NoTailroom when a
    /// segment does not fit in its buffer, Internal when `first` is not below the total.
    Outcome segment(std::span<const std::uint8_t> frame, std::span<core::PacketBuf> out, std::size_t headroom,
                    std::size_t first = 0) noexcept;

    std::size_t mtu() const noexcept { return mtu_; }
    const OffloadDrops& drops() const noexcept { return drops_; }
    std::uint64_t super_packets() const noexcept { return super_packets_; }
    std::uint64_t segments() const noexcept { return segments_; }

private:
    Outcome drop(core::DropReason r) noexcept {
        ++drops_[static_cast<std::size_t>(r)];
        return {0, r};
    }
    std::size_t mtu_;
    OffloadDrops drops_{};
    std::uint64_t super_packets_ = 0;  // frames with GSO cut into more than one packet
    std::uint64_t segments_ = 0;       // packets written
};

/// One frame read whole (virtio-net header + packet) handed out as its segments over as many
/// batches as it takes: what a device that reads super-packets keeps between read() calls
/// (the TUN with offloads, a foreign agent's packet socket).
class FrameCutter {
public:
    /// `capacity`: the largest frame read (0: none; the device reads no frames).
    FrameCutter(std::size_t mtu, std::size_t capacity) : segmenter_(mtu), frame_(capacity) {}

    /// Where the next frame is read.
    std::span<std::uint8_t> buffer() noexcept { return frame_; }
    /// The frame now in buffer() is `len` bytes from `offset` (what precedes it is skipped).
    void load(std::size_t offset, std::size_t len) noexcept {
        offset_ = offset;
        len_ = len;
        next_ = 0;
        pending_ = true;
    }
    /// A frame is loaded and not all of its segments are out yet.
    bool pending() const noexcept { return pending_; }

    struct Cut {
        Segmenter::Outcome outcome;  // count 0: the frame is dropped, for outcome.reason
        bool first = false;          // these are the frame's first segments
        bool super = false;          // the frame asked for segmentation (gso_type not NONE)
    };
    /// The frame's next segments into `out` (non-empty; see Segmenter::segment).
    Cut cut(std::span<core::PacketBuf> out) noexcept;
    /// The segmenter keeps no state between frames but its MTU.
    void set_mtu(std::size_t mtu) noexcept { segmenter_ = Segmenter(mtu); }

private:
    Segmenter segmenter_;
    std::vector<std::uint8_t> frame_;
    std::size_t offset_ = 0;
    std::size_t len_ = 0;
    std::size_t next_ = 0;  // the next segment to hand out, when pending_
    bool pending_ = false;
};

/// Inner IPv4 packets of one batch → frames (virtio-net header + packet) to write to the TUN
/// device. TCP segments of one flow (same addresses, ports, IP TOS/TTL/DF and options, TCP
/// header length, options, flags other than PSH, and acknowledgment number; contiguous
/// sequence numbers; no SYN/FIN/RST/URG; CWR only on the first; PSH ends a super-packet; every
/// segment but the last exactly gso_size bytes of payload) become one super-packet of up to
/// `max_packet_len` bytes: gso_type TCPV4, NEEDS_CSUM with the TCP checksum field holding the
/// pseudo-header sum, as the kernel expects on a TUN write. A segment that does not continue
/// its flow's latest super-packet starts a new one, and anything of a flow that cannot merge
/// closes its open super-packet, so data is never reordered. A TCP segment whose IP or TCP
/// checksum is wrong is dropped (BadChecksum): the kernel would not verify a merged one.
/// With `merge_udp` (a device that took TUN_F_USO4), UDP datagrams of one flow (same
/// addresses, ports, IP TOS/TTL/DF and options; identification consecutive unless DF is set,
/// RFC 6864 §4.1; all with a UDP checksum or all without; every datagram but the last exactly
/// gso_size bytes of payload, the last no longer; at most udp_max_segments) become one
/// super-packet the same way: gso_type UDP_L4, NEEDS_CSUM, which the kernel cuts back into
/// the same datagrams (as Linux UDP GRO merges them). The one visible change: every datagram
/// of a merged frame leaves with a UDP checksum, also one that had none (RFC 768 makes it
/// optional; ESP-in-UDP receivers MUST NOT depend on zero, RFC 3948 §2.1). A datagram whose
/// IP or UDP checksum is wrong is dropped (BadChecksum), as a TCP segment is.
/// Everything else is a frame of its own with gso_type NONE and its bytes unchanged.
///
/// add() keeps a view of each packet: the bytes must stay alive and unchanged until clear().
class Coalescer {
public:
    static constexpr std::size_t max_super_len = 65535;  // IPv4 total length
    /// The kernel refuses a UDP_L4 write of more segments (UDP_MAX_SEGMENTS, 64 before Linux 6.10).
    static constexpr std::size_t udp_max_segments = 64;
    explicit Coalescer(std::size_t max_packet_len = max_super_len, bool merge_udp = false);

    /// Offers the next packet of the batch, in arrival order.
    void add(std::span<const std::uint8_t> packet);
    std::size_t frame_count() const noexcept { return frames_.size(); }
    /// Builds frame i in an internal buffer; valid until the next frame() or clear().
    std::span<const std::uint8_t> frame(std::size_t i) noexcept;
    /// How many packets frame i merges.
    std::size_t frame_segments(std::size_t i) const noexcept { return frames_[i].segments; }
    /// Forgets the batch (frames and packet views); counters stay.
    void clear() noexcept;

    const OffloadDrops& drops() const noexcept { return drops_; }
    std::uint64_t merged() const noexcept { return merged_; }  // segments appended to a super-packet

private:
    struct Segment {
        std::span<const std::uint8_t> bytes;
        std::uint32_t next = no_segment;  // the next segment of the same frame
    };
    struct Frame {
        std::uint32_t first = 0;
        std::uint32_t last = 0;
        std::uint32_t segments = 1;
        std::size_t total_len = 0;    // IP total length after merging
        std::uint16_t gso_size = 0;   // payload of the first segment
        std::uint16_t last_payload = 0;
        std::uint32_t next_seq = 0;   // TCP: sequence number the next segment must carry
        bool udp = false;             // UDP datagrams (UDP_L4) rather than TCP segments (TCPV4)
    };
    static constexpr std::uint32_t no_segment = 0xFFFFFFFFu;

    bool try_merge(Frame& f, std::span<const std::uint8_t> packet) const noexcept;
    bool try_merge_udp(Frame& f, std::span<const std::uint8_t> packet) const noexcept;
    void add_udp(std::span<const std::uint8_t> packet);
    void close_flow(std::span<const std::uint8_t> packet) noexcept;
    std::span<const std::uint8_t> udp_frame(const Frame& f) noexcept;

    std::size_t max_packet_len_;
    bool merge_udp_;
    std::vector<Segment> segments_;
    std::vector<Frame> frames_;
    std::vector<std::uint32_t> open_;  // frames that may still take segments
    std::vector<std::uint8_t> scratch_;
    OffloadDrops drops_{};
    std::uint64_t merged_ = 0;
};

}  // namespace mipsec::tun
