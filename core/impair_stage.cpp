// SPDX-License-Identifier: MIT
#include "core/impair_stage.hpp"

#include <algorithm>
#include <cstring>

namespace mipsec::core {

namespace {
std::uint64_t splitmix64(std::uint64_t& x) noexcept {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

// Min-heap order on (due, order): std::push_heap keeps the "largest" first, so invert.
bool leaves_later(const auto& a, const auto& b) noexcept {
    if (a.due != b.due) return a.due > b.due;
    return a.order > b.order;
}

// Distinct streams per direction: the seed's outbound and inbound decisions never share draws.
constexpr std::uint64_t outbound_stream = 0x6f7574626f756e64ULL;  // "outbound"
constexpr std::uint64_t inbound_stream = 0x696e626f756e6421ULL;   // "inbound!"
}  // namespace

SeededRandom::SeededRandom(std::uint64_t seed) noexcept {
    for (auto& word : s_) word = splitmix64(seed);
}

std::uint64_t SeededRandom::next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

ImpairStage::State::State(const Direction& c, std::uint64_t seed) : cfg(c), random(seed) {
    // Reserved once: holding a packet never allocates.
    heap.reserve(cfg.queue);
    waiting.reserve(cfg.queue);
}

ImpairStage::ImpairStage(Config cfg)
    : seed_(cfg.seed), out_(cfg.outbound, cfg.seed ^ outbound_stream), in_(cfg.inbound, cfg.seed ^ inbound_stream) {}

Verdict ImpairStage::encapsulate(PacketBuf& packet, StageContext& ctx) { return impair(out_, packet, ctx); }

Verdict ImpairStage::decapsulate(PacketBuf& packet, StageContext& ctx) { return impair(in_, packet, ctx); }

bool ImpairStage::lose(State& d) {
    bool lost = false;
    const bool was_bad = d.bad;
    if (d.cfg.burst) {
        const Burst& b = *d.cfg.burst;
        lost = d.random.chance(d.bad ? b.loss_bad : d.cfg.loss);
        // The state moves after each packet (Gilbert-Elliott), so a burst's first packet is the
        // one after the transition.
        if (d.bad) {
            if (d.random.chance(b.p_bad_good)) d.bad = false;
        } else if (d.random.chance(b.p_good_bad)) {
            d.bad = true;
            ++d.counters.bad_state_entries;
        }
    } else {
        lost = d.random.chance(d.cfg.loss);
    }
    if (lost) {
        ++d.counters.lost;
        if (was_bad) ++d.counters.lost_in_burst;
    }
    return lost;
}

void ImpairStage::corrupt(State& d, PacketBuf& packet) {
    // After the IPv4 header (IHL words): the packet still reaches the layer whose integrity
    // check (ESP ICV, UDP/ICMP checksum, MIP authenticator) must catch it.
    std::size_t header = 0;
    if (packet.size() >= 20 && (packet.data()[0] >> 4) == 4) header = std::size_t{packet.data()[0] & 0x0fu} * 4;
    if (header < 20 || header >= packet.size()) {
        ++d.counters.corrupt_skipped;
        return;
    }
    const std::uint64_t bit = d.random.below(std::uint64_t{packet.size() - header} * 8);
    packet.data()[header + bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    ++d.counters.corrupted;
}

Duration ImpairStage::sample_delay(State& d) {
    if (d.cfg.jitter <= Duration::zero()) return d.cfg.delay;
    const auto j = d.cfg.jitter.count();
    const auto offset = static_cast<Duration::rep>(d.random.below(static_cast<std::uint64_t>(j) * 2 + 1)) - j;
    return std::max(Duration::zero(), d.cfg.delay + Duration(offset));
}

void ImpairStage::hold(State& d, TimePoint due, PacketBuf&& packet) {
    d.heap.push_back({due, d.next_order++, std::move(packet)});
    std::push_heap(d.heap.begin(), d.heap.end(), [](const Held& a, const Held& b) { return leaves_later(a, b); });
}

void ImpairStage::successor_left(State& d, TimePoint at) {
    // Packets held back for reordering leave right behind the first packet that came after
    // them, at its time and after it in order.
    for (auto& w : d.waiting) hold(d, at, std::move(w.packet));
    d.waiting.clear();
}

Verdict ImpairStage::impair(State& d, PacketBuf& packet, StageContext& ctx) {
    auto& c = d.counters;
    ++c.packets;
    if (lose(d)) return Verdict::drop(DropReason::Impaired);
    if (d.random.chance(d.cfg.corrupt)) corrupt(d, packet);

    const TimePoint now = ctx.now();
    if (d.random.chance(d.cfg.duplicate)) {
        // A copy with the original's headroom, tailroom and metadata, so every stage it still
        // has to cross (below it outbound, which push; above it inbound) finds the same room.
        PacketBuf copy = ctx.allocate();
        std::size_t head = copy.valid() ? std::max(copy.headroom(), packet.headroom()) : 0;
        if (copy.valid() && head + packet.size() > copy.capacity()) head = packet.headroom();
        if (!copy.valid() || head + packet.size() > copy.capacity()) {
            ++c.duplicate_no_buffer;
        } else {
            copy.reset(head);
            (void)copy.resize(packet.size());
            std::memcpy(copy.data(), packet.data(), packet.size());
            copy.meta() = packet.meta();
            const TimePoint due = now + sample_delay(d);
            if (d.heap.size() + d.waiting.size() >= d.cfg.queue) {
                ++c.queue_overflow;
            } else {
                hold(d, due, std::move(copy));
                ++c.duplicated;
            }
        }
    }

    const bool reorder = d.random.chance(d.cfg.reorder);
    const Duration delay = sample_delay(d);
    if (!reorder && delay == Duration::zero()) {
        successor_left(d, now);
        ++c.passed;
        return Verdict::not_mine();
    }
    if (d.heap.size() + d.waiting.size() >= d.cfg.queue) {
        ++c.queue_overflow;
        return Verdict::drop(DropReason::Impaired);
    }
    const TimePoint due = now + delay;
    if (reorder) {
        d.waiting.push_back({due + d.cfg.reorder_max, 0, std::move(packet)});
        ++c.reordered;
        return Verdict::consumed();
    }
    hold(d, due, std::move(packet));
    successor_left(d, due);
    ++c.delayed;
    return Verdict::consumed();
}

std::optional<TimePoint> ImpairStage::release(State& d, StageContext& ctx, bool outbound) {
    const TimePoint now = ctx.now();
    // A reordered packet whose successor never came leaves at its cap.
    for (std::size_t i = 0; i < d.waiting.size();) {
        if (d.waiting[i].due <= now) {
            hold(d, d.waiting[i].due, std::move(d.waiting[i].packet));
            d.waiting.erase(d.waiting.begin() + static_cast<std::ptrdiff_t>(i));
        } else {
            ++i;
        }
    }
    const auto later = [](const Held& a, const Held& b) { return leaves_later(a, b); };
    while (!d.heap.empty() && d.heap.front().due <= now) {
        std::pop_heap(d.heap.begin(), d.heap.end(), later);
        PacketBuf packet = std::move(d.heap.back().packet);
        d.heap.pop_back();
        ++d.counters.released;
        if (outbound) {
            ctx.send_control(std::move(packet));
        } else {
            ctx.deliver_inward(std::move(packet));
        }
    }
    std::optional<TimePoint> next;
    if (!d.heap.empty()) next = d.heap.front().due;
    for (const auto& w : d.waiting)
        if (!next || w.due < *next) next = w.due;
    return next;
}

std::optional<TimePoint> ImpairStage::poll(StageContext& ctx) {
    auto a = release(out_, ctx, true);
    auto b = release(in_, ctx, false);
    if (a && b) return std::min(*a, *b);
    return a ? a : b;
}

void ImpairStage::report_direction(StatusSink& out, std::string_view key, const State& d) {
    const auto& c = d.counters;
    out.begin_object(key);
    out.field("packets", c.packets);
    out.field("passed", c.passed);
    out.field("lost", c.lost);
    out.field("lost_in_burst", c.lost_in_burst);
    out.field("bursts", c.bad_state_entries);
    out.field("corrupted", c.corrupted);
    out.field("corrupt_skipped", c.corrupt_skipped);
    out.field("duplicated", c.duplicated);
    out.field("duplicate_no_buffer", c.duplicate_no_buffer);
    out.field("delayed", c.delayed);
    out.field("reordered", c.reordered);
    out.field("released", c.released);
    out.field("queue_overflow", c.queue_overflow);
    out.field("held", static_cast<std::uint64_t>(d.heap.size() + d.waiting.size()));
    out.field("burst_state", std::string_view(d.bad ? "bad" : "good"));
    out.end();
}

void ImpairStage::report(StatusSink& out) const {
    out.field("seed", seed_);
    report_direction(out, "outbound", out_);
    report_direction(out, "inbound", in_);
}

}  // namespace mipsec::core
