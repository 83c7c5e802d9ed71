// SPDX-License-Identifier: MIT
#pragma once
// Dpd: Dead Peer Detection (RFC 3706) for one IKE SA as a task of its own, without crypto or
// I/O: which sequence number an R-U-THERE carries, which R-U-THERE-ACK counts, when to probe
// (`delay` without authenticated traffic from the peer), when to probe again (the IKE
// retransmission schedule) and when the peer is dead (after the last retransmission). The
// Session wraps the notifies in protected Informationals (RFC 3706 §5.1). Not thread-safe.
#include <cstdint>
#include <optional>

#include "core/time.hpp"
#include "ipsec/ike/session_config.hpp"

namespace mipsec::ipsec::ike {

class Dpd {
public:
    /// `delay`: idle time before a probe (zero: probes only on request, never on a timer).
    /// `timeout`: how long the first unanswered probe may wait before the peer counts as dead,
    /// however many retransmissions the schedule still has (zero: the schedule alone decides).
    Dpd(core::Duration delay, RetransmitPolicy retransmit, core::Duration timeout = core::Duration::zero())
        : delay_(delay), retransmit_(retransmit), timeout_(timeout) {}

    /// Phase 1 completed: our sequence numbers start after `seq` (RFC 3706 §7 suggests a random
    /// start with the top bit clear, leaving room to count up).
    void start(std::uint32_t seq) noexcept { seq_ = seq; }
    /// An R-U-THERE is sent now (`retry`: the retransmission of an unanswered one); its
    /// sequence number.
    std::uint32_t probe(core::TimePoint now, bool retry) noexcept;
    /// An R-U-THERE-ACK: true when it answers one of ours still outstanding (RFC 3706 §5.3:
    /// only a sequence number we sent counts).
    bool acknowledge(std::uint32_t seq) noexcept;

    enum class Due : std::uint8_t { Nothing, Probe, Retry, PeerDead };
    /// What the timer asks for at `now`, the peer's last authenticated traffic at `last_rx`.
    Due due(core::TimePoint now, core::TimePoint last_rx) const noexcept;
    /// When due() next has something to do (nullopt without a timer).
    std::optional<core::TimePoint> next(core::TimePoint last_rx) const noexcept;

    bool outstanding() const noexcept { return first_unacked_.has_value(); }

    /// The outstanding probe must be answered by `deadline`, retried every `retry_every` until
    /// then, whatever the idle timer and schedule say: the caller has reason to doubt the peer
    /// still knows us (it may have dropped the SA while we were away) and a dead SA costs more
    /// than a needless new negotiation. A no-op with no probe outstanding.
    void expect_answer_by(core::TimePoint now, core::TimePoint deadline, core::Duration retry_every) noexcept;

private:
    core::Duration delay_;
    RetransmitPolicy retransmit_;
    core::Duration timeout_;
    core::TimePoint first_sent_{};
    std::uint32_t seq_ = 0;
    std::optional<std::uint32_t> first_unacked_;
    unsigned retries_ = 0;
    core::TimePoint next_{};
    std::optional<core::TimePoint> answer_by_;
    core::Duration urgent_retry_{};
};

}  // namespace mipsec::ipsec::ike
