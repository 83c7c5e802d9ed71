// SPDX-License-Identifier: MIT
#pragma once
// DetachedStageContext: a StageContext for running one stage outside any pipeline —
// benchmarks, fuzz targets, command-line tools. Time is whatever the caller sets; control
// packets, inward deliveries and events are counted and dropped. (Unit tests use
// tests/support/FakeStageContext, which records them instead.)
#include <cstdint>

#include "core/buffer_pool.hpp"
#include "core/stage.hpp"

namespace mipsec::core {

class DetachedStageContext final : public StageContext {
public:
    explicit DetachedStageContext(BufferPool& pool, std::size_t headroom = 64)
        : pool_(pool), headroom_(headroom), log_(null_logger()) {}

    TimePoint now() const override { return now_; }
    PacketBuf allocate() override { return pool_.acquire(headroom_); }
    void send_control(PacketBuf&&) override { ++control_sent; }
    void deliver_inward(PacketBuf&&) override { ++delivered; }
    void raise(ControlEvent) override { ++events; }
    Logger& log() override { return log_; }

    void set_now(TimePoint t) noexcept { now_ = t; }

    std::uint64_t control_sent = 0;
    std::uint64_t delivered = 0;
    std::uint64_t events = 0;

private:
    BufferPool& pool_;
    std::size_t headroom_;
    Logger log_;
    TimePoint now_ = TimePoint{} + std::chrono::hours(1);
};

}  // namespace mipsec::core
