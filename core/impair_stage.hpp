// SPDX-License-Identifier: MIT
#pragma once
// ImpairStage (`tap.impair`): a bad network on demand, at any position in a pipeline, because
// the kernels we test on have no netem. Per direction (outbound = encapsulate, inbound =
// decapsulate) it loses packets (independently, or in bursts from a Gilbert-Elliott two-state
// model), duplicates them, delays them with jitter, reorders them and corrupts one bit.
//
// Every decision comes from a seeded PRNG (xoshiro256**, one stream per direction derived
// from `seed`), never from a global generator or the clock, and time only from ctx.now(): the
// same seed and the same packets at the same times give the same decisions, so a failing run
// replays exactly. The two directions draw from separate streams so that how outbound and
// inbound packets interleave does not change either direction's decisions.
//
// Per packet, in this order: loss (drop, DropReason::Impaired); corruption (one bit flipped
// in place, chosen uniformly among the bytes after the IPv4 header so the packet still routes
// and the layer that owns the payload must notice; a packet with nothing after its header is
// left intact and counted as corrupt_skipped); duplication (a copy in a second buffer, held
// like a delayed packet and released by the next poll() at the earliest); delay (delay ±
// jitter, uniform; like netem, jitter alone can reorder); reordering (the packet is held until
// the next packet of its direction that is not itself reordered leaves, then follows it; or,
// if none comes, until `reorder_max` after its due time).
//
// Held packets sit in a bounded queue per direction (a full queue drops, counted as
// queue_overflow) and leave from poll() at their due time: outbound through ctx.send_control(),
// which the stages below wrap, inbound through ctx.deliver_inward(), which the stages above
// unwrap. A packet that is neither dropped nor held goes by with Verdict::not_mine(), even
// when corrupted: this stage never claims traffic, so placing it changes no layer's view of
// which packets are the node's. Held packets occupy pool buffers until they leave.
// Known edge: a released packet continues even if no layer on its way claims it (the pipeline
// sends or delivers what a stage hands it), so put the stage on a path that carries only the
// node's own traffic, e.g. between two tunnel stages or outside the outermost one.
// Not thread-safe; one instance per pipeline position.
// Config: {"type": "tap.impair", "seed": 7, "outbound": {"loss": 0.2, "delay_ms": 20, ...},
//          "inbound": {...}}
#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "core/stage.hpp"

namespace mipsec::core {

/// xoshiro256** seeded through splitmix64: fast, small, and reproducible on every host.
/// Not for keys or nonces (crypto::Random is); for simulating a network only.
class SeededRandom {
public:
    explicit SeededRandom(std::uint64_t seed) noexcept;
    std::uint64_t next() noexcept;
    /// Uniform in [0, 1).
    double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
    /// Uniform in [0, n); n > 0.
    std::uint64_t below(std::uint64_t n) noexcept {
        return static_cast<std::uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
    }
    /// True with probability p; draws nothing for p <= 0 or p >= 1.
    bool chance(double p) noexcept {
        if (p <= 0.0) return false;
        if (p >= 1.0) return true;
        return unit() < p;
    }

private:
    std::array<std::uint64_t, 4> s_{};
};

class ImpairStage final : public Stage {
public:
    /// Gilbert-Elliott: a Good and a Bad state, switching per packet with the two transition
    /// probabilities; a packet is lost with `loss` in Good and `loss_bad` in Bad. Bursts of
    /// Bad last 1/p_bad_good packets on average; the long-run share of Bad is
    /// p_good_bad / (p_good_bad + p_bad_good).
    struct Burst {
        double p_good_bad = 0.0;
        double p_bad_good = 1.0;
        double loss_bad = 1.0;
    };
    struct Direction {
        double loss = 0.0;  // independent loss; with `burst`, the loss in the Good state
        std::optional<Burst> burst;
        double duplicate = 0.0;
        double reorder = 0.0;
        Duration delay{};
        Duration jitter{};
        Duration reorder_max = std::chrono::milliseconds(100);
        double corrupt = 0.0;
        std::size_t queue = 256;  // packets held at once (delayed, reordered, duplicates)
    };
    struct Config {
        std::uint64_t seed = 0;
        Direction outbound;
        Direction inbound;
    };
    struct Counters {
        std::uint64_t packets = 0;          // entered the stage in this direction
        std::uint64_t passed = 0;           // went on at once (not_mine)
        std::uint64_t lost = 0;             // dropped by the loss model (all states)
        std::uint64_t lost_in_burst = 0;    // of those, lost in the Bad state
        std::uint64_t corrupted = 0;
        std::uint64_t corrupt_skipped = 0;  // chosen for corruption but nothing after the IP header
        std::uint64_t duplicated = 0;       // copies made and held
        std::uint64_t duplicate_no_buffer = 0;  // copies the pool had no buffer for
        std::uint64_t delayed = 0;          // originals held for a delay
        std::uint64_t reordered = 0;        // originals held back behind their successor
        std::uint64_t released = 0;         // held packets (originals and copies) sent on
        std::uint64_t queue_overflow = 0;   // originals or copies dropped because the queue was full
        std::uint64_t bad_state_entries = 0;  // Good -> Bad transitions (bursts begun)
    };

    explicit ImpairStage(Config cfg);
    std::string_view name() const noexcept override { return "tap.impair"; }
    std::size_t headroom() const noexcept override { return 0; }
    Verdict encapsulate(PacketBuf& packet, StageContext& ctx) override;
    Verdict decapsulate(PacketBuf& packet, StageContext& ctx) override;
    std::optional<TimePoint> poll(StageContext& ctx) override;
    void report(StatusSink& out) const override;

    const Counters& outbound_counters() const noexcept { return out_.counters; }
    const Counters& inbound_counters() const noexcept { return in_.counters; }
    std::size_t held(bool outbound) const noexcept {
        const auto& d = outbound ? out_ : in_;
        return d.heap.size() + d.waiting.size();
    }

private:
    struct Held {
        TimePoint due;
        std::uint64_t order;  // ties on `due` leave in arrival order
        PacketBuf packet;
    };
    struct State {
        State(const Direction& c, std::uint64_t seed);
        Direction cfg;
        SeededRandom random;
        bool bad = false;
        std::uint64_t next_order = 0;
        std::vector<Held> heap;     // min-heap on (due, order)
        std::vector<Held> waiting;  // reordered, waiting for a successor; `due` is the cap
        Counters counters;
    };

    Verdict impair(State& d, PacketBuf& packet, StageContext& ctx);
    static bool lose(State& d);
    static void corrupt(State& d, PacketBuf& packet);
    static Duration sample_delay(State& d);
    static void hold(State& d, TimePoint due, PacketBuf&& packet);
    static void successor_left(State& d, TimePoint at);
    static std::optional<TimePoint> release(State& d, StageContext& ctx, bool outbound);
    static void report_direction(StatusSink& out, std::string_view key, const State& d);

    std::uint64_t seed_;
    State out_;
    State in_;
};

}  // namespace mipsec::core
