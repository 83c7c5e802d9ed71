// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <set>
#include <string>

#include "ipsec/replay_window.hpp"

using namespace mipsec;
using core::DropReason;
using ipsec::ReplayWindow;

namespace {

// The RFC 4303 §3.4.3 semantics written as plainly as possible, to compare the ring against.
class ModelWindow {
public:
    explicit ModelWindow(std::uint64_t size) : size_(size) {}
    DropReason check(std::uint64_t seq) const {
        if (seq == 0) return DropReason::SequenceTooOld;
        if (seq > highest_) return DropReason::None;
        if (highest_ - seq >= size_) return DropReason::SequenceTooOld;
        return seen_.count(seq) ? DropReason::ReplayedSequence : DropReason::None;
    }
    DropReason accept(std::uint64_t seq) {
        auto r = check(seq);
        if (r != DropReason::None) return r;
        seen_.insert(seq);
        if (seq > highest_) highest_ = seq;
        return r;
    }

private:
    std::uint64_t size_;
    std::uint64_t highest_ = 0;
    std::set<std::uint64_t> seen_;
};

}  // namespace

TEST_CASE("ring size: power-of-two blocks covering the window plus one (RFC 6479 §2)") {
    struct Row {
        std::size_t size, blocks, effective;
    };
    const Row rows[] = {
        {32, 2, 32}, {64, 2, 64}, {65, 4, 65}, {100, 4, 100}, {1024, 32, 1024}, {4096, 128, 4096},
        {8, 2, 32},        // clamped up to the RFC 4303 minimum
        {10000, 128, 4096},  // clamped down to the maximum
    };
    for (const auto& r : rows) {
        CAPTURE(r.size);
        ReplayWindow w(r.size);
        CHECK(w.blocks() == r.blocks);
        CHECK(w.size() == r.effective);
    }
    CHECK(ReplayWindow().size() == 1024);
    CHECK_FALSE(ReplayWindow::valid_size(31));
    CHECK(ReplayWindow::valid_size(32));
    CHECK(ReplayWindow::valid_size(4096));
    CHECK_FALSE(ReplayWindow::valid_size(4097));
}

TEST_CASE("sequence number 0 is never accepted (RFC 4303 §3.3.3)") {
    ReplayWindow w;
    CHECK(w.check(0) == DropReason::SequenceTooOld);
    CHECK(w.accept(0) == DropReason::SequenceTooOld);
    CHECK(w.highest() == 0);
    CHECK(w.accept(1) == DropReason::None);
    CHECK(w.check(0) == DropReason::SequenceTooOld);
}

TEST_CASE("window edges with W = 1024") {
    ReplayWindow w(1024);
    REQUIRE(w.accept(2000) == DropReason::None);
    struct Row {
        std::uint64_t seq;
        DropReason expected;
    };
    const Row rows[] = {
        {2000, DropReason::ReplayedSequence},
        {2001, DropReason::None},
        {1999, DropReason::None},
        {977, DropReason::None},             // T - W + 1: the oldest number still inside
        {976, DropReason::SequenceTooOld},   // T - W: just outside
        {1, DropReason::SequenceTooOld},
        {~std::uint64_t{0}, DropReason::None},
    };
    for (const auto& r : rows) {
        CAPTURE(r.seq);
        CHECK(w.check(r.seq) == r.expected);
    }
    CHECK(w.accept(977) == DropReason::None);
    CHECK(w.check(977) == DropReason::ReplayedSequence);
    // Moving T by one pushes 977 out: now too old rather than replayed.
    CHECK(w.accept(2001) == DropReason::None);
    CHECK(w.check(977) == DropReason::SequenceTooOld);
    CHECK(w.check(978) == DropReason::None);
}

TEST_CASE("check() never changes the window; accept() refuses exactly what check() refuses") {
    ReplayWindow w(64);
    REQUIRE(w.accept(100) == DropReason::None);
    for (std::uint64_t s = 0; s < 300; ++s) (void)w.check(s);
    CHECK(w.highest() == 100);
    CHECK(w.check(99) == DropReason::None);
    CHECK(w.check(101) == DropReason::None);
    CHECK(w.accept(100) == DropReason::ReplayedSequence);
    CHECK(w.accept(36) == DropReason::SequenceTooOld);
    CHECK(w.highest() == 100);
}

TEST_CASE("jumps of a whole ring or more clear every block") {
    for (std::uint64_t jump : {63u, 64u, 65u, 127u, 128u, 129u, 4096u, 1000000u}) {
        CAPTURE(jump);
        ReplayWindow w(64);  // 2 blocks
        for (std::uint64_t s = 1; s <= 64; ++s) REQUIRE(w.accept(s) == DropReason::None);
        const std::uint64_t t = 64 + jump;
        REQUIRE(w.accept(t) == DropReason::None);
        for (std::uint64_t s = t - 63; s < t; ++s) {
            CAPTURE(s);
            const auto expected = s <= 64 ? DropReason::ReplayedSequence : DropReason::None;
            CHECK(w.check(s) == expected);
        }
        CHECK(w.check(t - 64) == DropReason::SequenceTooOld);
    }
}

TEST_CASE("\"too old\" is computed in 64 bits: no 32-bit overflow near 2^32 (RFC 6479 sample pitfall)") {
    ReplayWindow w(1024, 0xFFFFFFF0u);
    // The RFC's `seq + size < last` in 32 bits wraps here and admits ancient numbers.
    CHECK(w.check(0xFFFFFFF0u - 1023) == DropReason::None);
    CHECK(w.check(0xFFFFFFF0u - 1024) == DropReason::SequenceTooOld);
    CHECK(w.check(5) == DropReason::SequenceTooOld);
    // Past 2^32 (ESN): the window continues seamlessly.
    REQUIRE(w.accept(0x100000010ull) == DropReason::None);
    CHECK(w.check(0x100000010ull - 1023) == DropReason::None);
    CHECK(w.check(0x100000010ull - 1024) == DropReason::SequenceTooOld);
    CHECK(w.check(0xFFFFFFF0u) == DropReason::ReplayedSequence);  // preset T counts as seen
    CHECK(w.check(0xFFFFFFF1u) == DropReason::None);
    CHECK(w.check(0x10) == DropReason::SequenceTooOld);
    // The very top of the 64-bit space.
    ReplayWindow top(32, ~std::uint64_t{0} - 1);
    CHECK(top.accept(~std::uint64_t{0}) == DropReason::None);
    CHECK(top.check(~std::uint64_t{0}) == DropReason::ReplayedSequence);
    CHECK(top.check(~std::uint64_t{0} - 31) == DropReason::None);
    CHECK(top.check(~std::uint64_t{0} - 32) == DropReason::SequenceTooOld);
}

TEST_CASE("the ring agrees with a plain model on random traffic for every window size") {
    for (std::size_t size : {32u, 64u, 100u, 200u, 1024u, 4096u}) {
        CAPTURE(size);
        std::mt19937_64 rng(size);
        ReplayWindow w(size);
        ModelWindow m(size);
        std::uint64_t top = 0;
        for (int i = 0; i < 60000; ++i) {
            // Mostly in-order with reordering, duplicates, occasional large jumps and old junk.
            std::uint64_t seq;
            switch (rng() % 8) {
                case 0: seq = top + 1 + rng() % (3 * size); break;
                case 1: seq = top > 2 * size ? top - rng() % (2 * size) : rng() % (top + 2); break;
                case 2: seq = top; break;
                case 3: seq = rng() % (top + 2); break;
                default: seq = top + 1 - std::min<std::uint64_t>(top, rng() % 8); break;
            }
            CAPTURE(seq);
            const bool do_accept = rng() % 4 != 0;
            if (do_accept) {
                REQUIRE(w.accept(seq) == m.accept(seq));
            } else {
                REQUIRE(w.check(seq) == m.check(seq));
            }
            top = std::max(top, w.highest());
        }
    }
}

TEST_CASE("ESN: high half inferred per RFC 4303 Appendix A") {
    constexpr std::size_t w = 1024;
    struct Row {
        const char* name;
        std::uint64_t highest;
        std::uint32_t seq_low;
        std::optional<std::uint64_t> expected;
    };
    const Row rows[] = {
        // Case A: Tl = 0x1000 >= W-1, window 0x0C01..0x1000 inside subspace 5.
        {"A: equal to T", 0x500001000ull, 0x1000, 0x500001000ull},
        {"A: bottom of the window", 0x500001000ull, 0x0C01, 0x500000C01ull},
        {"A: below the window wraps into the next subspace", 0x500001000ull, 0x0C00, 0x600000C00ull},
        {"A: low 0 wraps", 0x500001000ull, 0, 0x600000000ull},
        {"A: ahead in the same subspace", 0x500001000ull, 0xFFFFFFFF, 0x5FFFFFFFFull},
        {"A: boundary Tl = W-1, low 0 is the bottom of the window", 0x5000003FFull, 0, 0x500000000ull},
        {"A: boundary Tl = W-1, low 1", 0x5000003FFull, 1, 0x500000001ull},
        {"B: boundary Tl = W-2, low 2^32-1 is the bottom of the window", 0x5000003FEull, 0xFFFFFFFF, 0x4FFFFFFFFull},
        {"B: boundary Tl = W-2, low 2^32-2 is ahead", 0x5000003FEull, 0xFFFFFFFE, 0x5FFFFFFFEull},
        // Case B: Tl = 0x10 < W-1, window straddles 4:FFFFFC11 .. 5:00000010.
        {"B: top of the old subspace", 0x500000010ull, 0xFFFFFFFF, 0x4FFFFFFFFull},
        {"B: bottom of the window in the old subspace", 0x500000010ull, 0xFFFFFC11, 0x4FFFFFC11ull},
        {"B: just below the window is far ahead", 0x500000010ull, 0xFFFFFC10, 0x5FFFFFC10ull},
        {"B: low part of the window", 0x500000010ull, 0x5, 0x500000005ull},
        {"B: ahead", 0x500000010ull, 0x20, 0x500000020ull},
        {"B: fresh SA, first packet", 0, 1, 1ull},
        {"B: fresh SA, no subspace below 0", 0, 0xFFFFFFFF, std::nullopt},
        {"A: no subspace after 2^64-1", 0xFFFFFFFF00001000ull, 0x5, std::nullopt},
    };
    for (const auto& r : rows) {
        CAPTURE(std::string(r.name));
        CHECK(ipsec::infer_esn(r.seq_low, r.highest, w) == r.expected);
    }
}

TEST_CASE("ESN: the window follows the sequence across a 2^32 boundary") {
    ReplayWindow w(64, 0x1FFFFFFF0ull);
    auto receive = [&](std::uint32_t low) {
        auto full = ipsec::infer_esn(low, w.highest(), w.size());
        REQUIRE(full);
        return std::pair{*full, w.accept(*full)};
    };
    auto [s1, r1] = receive(0x10);
    CHECK(s1 == 0x200000010ull);
    CHECK(r1 == DropReason::None);
    auto [s2, r2] = receive(0xFFFFFFF5);  // late packet from the old subspace, still in the window
    CHECK(s2 == 0x1FFFFFFF5ull);
    CHECK(r2 == DropReason::None);
    auto [s3, r3] = receive(0xFFFFFFF0);  // the preset T again
    CHECK(s3 == 0x1FFFFFFF0ull);
    CHECK(r3 == DropReason::ReplayedSequence);
    // Below the window in the old subspace is read as far ahead in the current one: the
    // ambiguity Appendix A accepts, resolved by the ICV (computed with the wrong high half).
    CHECK(ipsec::infer_esn(0xFFFFFF00, w.highest(), w.size()) == 0x2FFFFFF00ull);
    CHECK(w.highest() == 0x200000010ull);
}
