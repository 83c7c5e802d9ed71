// SPDX-License-Identifier: MIT
#include "ipsec/ike/exchange_table.hpp"

#include <algorithm>

namespace mipsec::ipsec::ike {

ExchangeTable::Exchange* ExchangeTable::find(std::uint32_t mid) noexcept {
    for (auto& ex : exchanges_)
        if (ex.message_id == mid) return &ex;
    return nullptr;
}

ExchangeTable::Exchange& ExchangeTable::open(std::uint32_t mid) {
    Exchange ex;
    ex.message_id = mid;
    exchanges_.push_back(std::move(ex));
    return exchanges_.back();
}

std::vector<std::uint32_t> ExchangeTable::prune() {
    std::vector<std::uint32_t> forgotten;
    std::size_t finished = 0;
    for (const auto& ex : exchanges_) finished += ex.finished && ex.message_id != 0;
    while (finished > max_finished) {
        auto it = std::find_if(exchanges_.begin(), exchanges_.end(),
                               [](const Exchange& e) { return e.finished && e.message_id != 0; });
        if (it == exchanges_.end()) break;
        forgotten.push_back(it->message_id);
        exchanges_.erase(it);
        --finished;
    }
    return forgotten;
}

std::uint32_t ExchangeTable::fresh_message_id(crypto::Random& random) {
    std::uint32_t mid = 0;
    while (mid == 0 || seen(mid) || find(mid)) mid = random.next_u32();
    remember(mid);
    return mid;
}

bool ExchangeTable::seen(std::uint32_t mid) const noexcept {
    return std::find(seen_mids_.begin(), seen_mids_.end(), mid) != seen_mids_.end();
}

void ExchangeTable::remember(std::uint32_t mid) {
    if (seen(mid)) return;
    if (seen_mids_.size() >= max_seen_mids) seen_mids_.pop_front();
    seen_mids_.push_back(mid);
}

void ExchangeTable::arm(Exchange& ex, core::TimePoint now, const RetransmitPolicy& policy) noexcept {
    ex.awaiting = true;
    ex.retransmits = 0;
    ex.next_retransmit = now + policy.delay(0);
}

ExchangeTable::Timer ExchangeTable::tick(Exchange& ex, core::TimePoint now, const RetransmitPolicy& policy) noexcept {
    if (!ex.awaiting || ex.finished || now < ex.next_retransmit) return Timer::Wait;
    if (ex.retransmits < policy.retransmits) {
        ++ex.retransmits;
        ex.next_retransmit = now + policy.delay(ex.retransmits);
        return Timer::Resend;
    }
    ex.awaiting = false;
    ex.finished = true;
    return Timer::GiveUp;
}

}  // namespace mipsec::ipsec::ike
