// SPDX-License-Identifier: MIT
#include "ipsec/ike/dpd.hpp"

#include <algorithm>

namespace mipsec::ipsec::ike {

std::uint32_t Dpd::probe(core::TimePoint now, bool retry) noexcept {
    ++seq_;
    if (!first_unacked_) {
        first_unacked_ = seq_;
        first_sent_ = now;
        retries_ = 0;
        answer_by_.reset();
    } else if (retry) {
        ++retries_;
    }
    next_ = now + retransmit_.delay(retries_);
    if (timeout_ > core::Duration::zero() && next_ > first_sent_ + timeout_) next_ = first_sent_ + timeout_;
    if (answer_by_) next_ = std::min(now + urgent_retry_, *answer_by_);
    return seq_;
}

void Dpd::expect_answer_by(core::TimePoint now, core::TimePoint deadline, core::Duration retry_every) noexcept {
    if (!first_unacked_) return;
    answer_by_ = deadline;
    urgent_retry_ = retry_every;
    next_ = std::min(now + retry_every, deadline);
}

bool Dpd::acknowledge(std::uint32_t seq) noexcept {
    if (!first_unacked_) return false;
    // Unsigned distances: correct across the wrap of the 32-bit counter.
    if (seq - *first_unacked_ > seq_ - *first_unacked_) return false;
    first_unacked_.reset();
    retries_ = 0;
    answer_by_.reset();
    return true;
}

Dpd::Due Dpd::due(core::TimePoint now, core::TimePoint last_rx) const noexcept {
    if (first_unacked_ && answer_by_) {
        if (now >= *answer_by_) return Due::PeerDead;
        return now < next_ ? Due::Nothing : Due::Retry;
    }
    if (delay_ <= core::Duration::zero()) return Due::Nothing;
    if (first_unacked_) {
        if (now < next_) return Due::Nothing;
        if (timeout_ > core::Duration::zero() && now >= first_sent_ + timeout_) return Due::PeerDead;
        return retries_ < retransmit_.retransmits ? Due::Retry : Due::PeerDead;
    }
    return now >= last_rx + delay_ ? Due::Probe : Due::Nothing;
}

std::optional<core::TimePoint> Dpd::next(core::TimePoint last_rx) const noexcept {
    if (first_unacked_ && answer_by_) return next_;
    if (delay_ <= core::Duration::zero()) return std::nullopt;
    return first_unacked_ ? next_ : last_rx + delay_;
}

}  // namespace mipsec::ipsec::ike
