// SPDX-License-Identifier: MIT
// tap.impair under arbitrary settings and an arbitrary schedule of packets both ways and
// clock steps: must never crash, exceed its queue, leak a buffer or lose count of a packet.
// Input: 12 setting bytes, then operations: 0 = outbound packet, 1 = inbound packet (one length
// byte, then that many packet bytes), 2 = advance the clock by one byte of milliseconds and poll.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/buffer_pool.hpp"
#include "core/detached_stage_context.hpp"
#include "core/impair_stage.hpp"

namespace {
using mipsec::core::ImpairStage;

void require(bool ok) {
    if (!ok) std::abort();
}

double probability(std::uint8_t b) { return b >= 250 ? 1.0 : b / 255.0; }

ImpairStage::Direction direction(const std::uint8_t* s) {
    ImpairStage::Direction d;
    d.loss = probability(s[0]) / 2;
    if (s[1] & 1) d.burst = ImpairStage::Burst{probability(s[1]), probability(s[2]), probability(s[3])};
    d.duplicate = probability(s[2]);
    d.reorder = probability(s[3]);
    d.corrupt = probability(s[4]);
    d.delay = std::chrono::milliseconds(s[5] % 32);
    d.jitter = std::chrono::milliseconds(s[5] / 32);
    d.reorder_max = std::chrono::milliseconds(s[4] % 64);
    d.queue = 1 + s[1] % 16;
    return d;
}

void check_accounts(const ImpairStage::Counters& c, std::uint64_t not_mine, std::uint64_t dropped, std::uint64_t consumed) {
    require(c.passed == not_mine);
    require(c.lost <= dropped && dropped - c.lost <= c.queue_overflow);
    require(c.delayed + c.reordered == consumed);
    require(c.packets == not_mine + dropped + consumed);
    require(c.lost_in_burst <= c.lost);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static mipsec::core::BufferPool pool(48, 512);
    if (size < 12) return 0;
    {
        mipsec::core::DetachedStageContext ctx(pool);
        ImpairStage::Config cfg;
        cfg.seed = data[0] | (std::uint64_t{data[1]} << 8);
        cfg.outbound = direction(data + 1);
        cfg.inbound = direction(data + 6);
        ImpairStage stage(cfg);
        std::uint64_t not_mine[2] = {}, dropped[2] = {}, consumed[2] = {};
        std::size_t at = 12;
        while (at < size) {
            const std::uint8_t op = data[at++] % 3;
            if (op == 2) {
                if (at >= size) break;
                ctx.set_now(ctx.now() + std::chrono::milliseconds(data[at++]));
                auto next = stage.poll(ctx);
                require(!next || *next > ctx.now());
                continue;
            }
            if (at >= size) break;
            const std::size_t wanted = data[at++];
            const std::size_t len = std::min(wanted, size - at);
            auto buf = pool.acquire(64);
            if (!buf.valid()) break;  // every buffer held: the queue bound keeps this rare
            require(buf.resize(len));
            std::memcpy(buf.data(), data + at, len);
            at += len;
            const bool out = op == 0;
            auto v = out ? stage.encapsulate(buf, ctx) : stage.decapsulate(buf, ctx);
            switch (v.action) {
                case mipsec::core::Action::NotMine: ++not_mine[out]; require(buf.valid() && buf.size() == len); break;
                case mipsec::core::Action::Drop:
                    ++dropped[out];
                    require(v.reason == mipsec::core::DropReason::Impaired);
                    break;
                case mipsec::core::Action::Consumed: ++consumed[out]; require(!buf.valid()); break;
                case mipsec::core::Action::Pass: require(false); break;
            }
            require(stage.held(true) <= cfg.outbound.queue && stage.held(false) <= cfg.inbound.queue);
        }
        check_accounts(stage.outbound_counters(), not_mine[1], dropped[1], consumed[1]);
        check_accounts(stage.inbound_counters(), not_mine[0], dropped[0], consumed[0]);
        // Everything held leaves eventually, through the right door.
        ctx.set_now(ctx.now() + std::chrono::seconds(2));
        require(stage.poll(ctx) == std::nullopt);
        require(stage.held(true) == 0 && stage.held(false) == 0);
        const auto& o = stage.outbound_counters();
        const auto& i = stage.inbound_counters();
        require(ctx.control_sent == o.released && ctx.delivered == i.released);
        require(o.released == o.delayed + o.reordered + o.duplicated);
        require(i.released == i.delayed + i.reordered + i.duplicated);
    }
    require(pool.available() == pool.block_count());
    return 0;
}
