// SPDX-License-Identifier: MIT
// ExchangeTable alone: Message ID allocation and replay memory, pruning of finished exchanges,
// and the retransmission schedule (strongSwan's 4 s x 1.8^n, 5 retransmits).
#include <doctest/doctest.h>

#include <vector>

#include "ipsec/ike/exchange_table.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;
using std::chrono::seconds;

namespace {
/// Hands out the given words in turn (then repeats the last).
class ScriptedRandom final : public crypto::Random {
public:
    explicit ScriptedRandom(std::vector<std::uint32_t> words) : words_(std::move(words)) {}
    void fill(std::span<std::uint8_t> out) noexcept override {
        const std::uint32_t w = words_[std::min(next_, words_.size() - 1)];
        ++next_;
        for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::uint8_t>(w >> (8 * (3 - i % 4)));
    }

private:
    std::vector<std::uint32_t> words_;
    std::size_t next_ = 0;
};
}  // namespace

TEST_CASE("ExchangeTable: fresh Message IDs are never zero, seen or in use, and are remembered") {
    ExchangeTable table;
    table.open(7);
    table.remember(9);
    ScriptedRandom random({0, 7, 9, 11});  // zero, in use, seen, then free
    const auto mid = table.fresh_message_id(random);
    CHECK(mid == 11u);
    CHECK(table.seen(11));
    CHECK(table.find(7) != nullptr);
    CHECK(table.find(11) == nullptr);  // allocated, not opened
}

TEST_CASE("ExchangeTable: the replay memory keeps the last 512 Message IDs") {
    ExchangeTable table;
    for (std::uint32_t m = 1; m <= ExchangeTable::max_seen_mids + 10; ++m) table.remember(m);
    CHECK_FALSE(table.seen(1));
    CHECK_FALSE(table.seen(10));
    CHECK(table.seen(11));
    CHECK(table.seen(ExchangeTable::max_seen_mids + 10));
    table.remember(11);  // already there: not moved, not duplicated
    table.remember(10000);
    CHECK_FALSE(table.seen(11));
}

TEST_CASE("ExchangeTable: the last 8 finished exchanges stay to answer retransmissions; Main Mode's always") {
    ExchangeTable table;
    table.open(0).finished = true;
    for (std::uint32_t m = 1; m <= 12; ++m) table.open(m).finished = m != 12;  // 11 finished, 1 running
    const auto forgotten = table.prune();
    CHECK(forgotten == std::vector<std::uint32_t>{1, 2, 3});
    CHECK(table.find(0) != nullptr);
    CHECK(table.find(3) == nullptr);
    CHECK(table.find(4) != nullptr);
    CHECK(table.find(12) != nullptr);
    CHECK(table.prune().empty());
}

TEST_CASE("ExchangeTable: retransmission resends after 4 s x 1.8^n, five times, then gives up") {
    RetransmitPolicy rp;
    ExchangeTable table;
    auto& ex = table.open(5);
    core::TimePoint now{};
    ExchangeTable::arm(ex, now, rp);
    CHECK(ex.awaiting);
    CHECK(ex.next_retransmit == now + seconds(4));
    CHECK(ExchangeTable::tick(ex, now + seconds(3), rp) == ExchangeTable::Timer::Wait);
    for (unsigned n = 1; n <= rp.retransmits; ++n) {
        CAPTURE(n);
        now = ex.next_retransmit;
        REQUIRE(ExchangeTable::tick(ex, now, rp) == ExchangeTable::Timer::Resend);
        CHECK(ex.retransmits == n);
        CHECK(ex.next_retransmit == now + rp.delay(n));
    }
    CHECK(ExchangeTable::tick(ex, ex.next_retransmit, rp) == ExchangeTable::Timer::GiveUp);
    CHECK(ex.finished);
    CHECK_FALSE(ex.awaiting);
    CHECK(ExchangeTable::tick(ex, ex.next_retransmit + seconds(100), rp) == ExchangeTable::Timer::Wait);
    // An answered exchange is not resent.
    auto& answered = table.open(6);
    ExchangeTable::arm(answered, {}, rp);
    answered.awaiting = false;
    CHECK(ExchangeTable::tick(answered, core::TimePoint{} + seconds(60), rp) == ExchangeTable::Timer::Wait);
}
