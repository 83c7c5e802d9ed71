// SPDX-License-Identifier: MIT
#pragma once
// MtuGuard: outbound inner packets against the MTU of the stack active now (RFC 5265 §5.2).
// The TUN MTU fits the lightest stack the configuration may use (least_stack_overhead()), so
// that no access mode is limited by a heavier one; in a heavier mode (RFC 5265 cvc: i-MIP in
// ESP in x-MIP) a packet from the TUN can then be too big for the layers that will wrap it.
//   1. Before the stages (too_big): a packet that fits the active stack goes on, one comparison.
//      Too big without DF: it goes on too; the outer packet is fragmented, as any tunnel's.
//      Too big with DF: its IP header and first 8 bytes are kept, for the answer.
//   2. After the stages passed it (fits_outer): if the wrapped packet is bigger than the outer
//      MTU it is dropped and answered into the TUN with ICMP "fragmentation needed" carrying
//      the active stack's MTU (answer; RFC 1191 §4, as a tunnel entry point does, RFC 2003
//      §5.1), so the sender's path MTU discovery adapts instead of its packets vanishing.
//   Judging the wrapped packet, not only the estimate, means no answer while the stack drops
//   user data anyway (RFC 5265 detection undecided, no SA yet: the stage counts it) and so no
//   MTU is announced for a stack that is not carrying anything. The answer is built in the
//   dropped packet's own buffer; answers are rate-limited (a token bucket) and never sent about
//   ICMP errors or non-first fragments (RFC 1122 §3.2.2).
// Sans-I/O: the owner sets the outer MTU (the link's, or a smaller path MTU it learned) and
// the active overhead (active_overhead() of its pipeline, recomputed after events, not per
// packet) and passes the time in. Not thread-safe.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "core/packet_buf.hpp"
#include "core/time.hpp"

namespace mipsec::core {

class Pipeline;

/// What the stages add to a user packet in the state they are in now: the sum of overhead().
std::size_t active_overhead(const Pipeline& pipeline) noexcept;
/// What the lightest stack the configuration may use adds: least_overhead() summed down to the
/// first stage that may idle every stage below it (those add nothing then).
std::size_t least_stack_overhead(const Pipeline& pipeline) noexcept;

/// What an ICMP error quotes of a packet (RFC 792: its IP header and first 8 bytes of
/// payload), kept before the stages wrap and encrypt it.
struct QuotedHeader {
    std::array<std::uint8_t, 60 + 8> bytes{};
    std::size_t len = 0;
    /// Not an ICMP error, not a non-first fragment, from a unicast source (RFC 1122 §3.2.2).
    bool answerable = false;
    std::span<const std::uint8_t> span() const noexcept { return {bytes.data(), len}; }
    /// Copies the quote of a whole IPv4 packet; nullopt for anything else.
    static std::optional<QuotedHeader> of(std::span<const std::uint8_t> packet) noexcept;
};

/// Writes into `out` (replacing what it holds) an ICMP destination unreachable, fragmentation
/// needed (type 3 code 4) message back to the sender of the quoted packet: from that packet's
/// destination (the only address on the way that the sender routes through us and does not
/// own; an ICMP error from its own address would be a martian), quoting `quote` (RFC 792),
/// next-hop MTU `mtu` (RFC 1191 §4), both checksums set. False when `out` has no room.
bool emit_fragmentation_needed(PacketBuf& out, const QuotedHeader& quote, std::uint16_t mtu) noexcept;
/// The same in place of the IPv4 packet `packet` holds; false, and the packet unchanged, when
/// it is not a whole IPv4 packet.
bool make_fragmentation_needed(PacketBuf& packet, std::uint16_t mtu) noexcept;

class MtuGuard {
public:
    /// Never advertised below this (RFC 791: every host accepts 576-byte datagrams; Linux
    /// ignores smaller path MTUs anyway).
    static constexpr std::size_t min_mtu = 576;

    struct Config {
        std::size_t outer_mtu = 1500;
        std::uint32_t answers_per_second = 100;  // token bucket refill
        std::uint32_t answer_burst = 20;         // and depth
    };
    struct Counters {
        std::uint64_t icmp_frag_needed_sent = 0;  // DF packets too big, answered
        std::uint64_t dropped_too_big = 0;        // every DF packet too big (answered or not)
        std::uint64_t icmp_rate_limited = 0;      // of those, not answered: over the rate
        std::uint64_t not_answerable = 0;         // of those, not answered: an ICMP error or non-first fragment
        std::uint64_t sent_for_fragmentation = 0;  // too big without DF: sent on
    };
    enum class Outcome : std::uint8_t {
        Answered,  // the buffer now holds the ICMP message: write it into the TUN
        Dropped,   // not answered (counted)
    };

    explicit MtuGuard(Config config) noexcept;

    void set_outer_mtu(std::size_t mtu) noexcept { outer_mtu_ = mtu; }
    void set_overhead(std::size_t bytes) noexcept { overhead_ = bytes; }
    std::size_t outer_mtu() const noexcept { return outer_mtu_; }
    std::size_t overhead() const noexcept { return overhead_; }
    /// The largest inner packet the active stack carries unfragmented: the outer MTU minus the
    /// active overhead, never below min_mtu.
    std::size_t mtu() const noexcept;

    /// Before the stages: the quote of an inner packet with DF bigger than mtu(), else nullopt
    /// (a too-big one without DF is counted in sent_for_fragmentation; whatever is not IPv4 is
    /// for the stages to judge).
    std::optional<QuotedHeader> too_big(const PacketBuf& inner) noexcept;
    /// After the stages passed it: whether the wrapped packet fits the outer MTU.
    bool fits_outer(const PacketBuf& wrapped) const noexcept { return wrapped.size() <= outer_mtu_; }
    /// The wrapped packet of a quoted inner one did not fit: it is dropped (dropped_too_big) and,
    /// unless unanswerable or over the rate, its buffer becomes the answer, carrying mtu().
    Outcome answer(PacketBuf& wrapped, const QuotedHeader& quote, TimePoint now) noexcept;
    const Counters& counters() const noexcept { return counters_; }

private:
    bool take_token(TimePoint now) noexcept;

    Config config_;
    std::size_t outer_mtu_;
    std::size_t overhead_ = 0;
    Duration credit_;  // token bucket in time: one answer costs 1 s / answers_per_second
    std::optional<TimePoint> last_refill_;
    Counters counters_;
};

}  // namespace mipsec::core
