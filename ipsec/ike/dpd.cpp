// SPDX-License-Identifier: MIT
#include "ipsec/ike/dpd.hpp"

namespace mipsec::ipsec::ike {

std::uint32_t Dpd::probe(core::TimePoint now, bool retry) noexcept {
    ++seq_;
    if (!first_unacked_) {
        first_unacked_ = seq_;
        first_sent_ = now;
        retries_ = 0;
    } else if (retry) {
        ++retries_;
    }
    next_ = now + retransmit_.delay(retries_);
    if (timeout_ > core::Duration::zero() && next_ > first_sent_ + timeout_) next_ = first_sent_ + timeout_;
    return seq_;
}

bool Dpd::acknowledge(std::uint32_t seq) noexcept {
    if (!first_unacked_) return false;
    // Unsigned distances: correct across the wrap of the 32-bit counter.
    if (seq - *first_unacked_ > seq_ - *first_unacked_) return false;
    first_unacked_.reset();
    retries_ = 0;
    return true;
}

Dpd::Due Dpd::due(core::TimePoint now, core::TimePoint last_rx) const noexcept {
    if (delay_ <= core::Duration::zero()) return Due::Nothing;
    if (first_unacked_) {
        if (now < next_) return Due::Nothing;
        if (timeout_ > core::Duration::zero() && now >= first_sent_ + timeout_) return Due::PeerDead;
        return retries_ < retransmit_.retransmits ? Due::Retry : Due::PeerDead;
    }
    return now >= last_rx + delay_ ? Due::Probe : Due::Nothing;
}

std::optional<core::TimePoint> Dpd::next(core::TimePoint last_rx) const noexcept {
    if (delay_ <= core::Duration::zero()) return std::nullopt;
    return first_unacked_ ? next_ : last_rx + delay_;
}

}  // namespace mipsec::ipsec::ike
