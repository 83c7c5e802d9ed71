// SPDX-License-Identifier: MIT
#pragma once
// FakeStageContext: a StageContext for testing one stage alone. The test owns the clock
// (`now`), and everything the stage sends, delivers or raises is recorded for assertions.
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/stage.hpp"

namespace mipsec::test {

class FakeStageContext final : public core::StageContext {
public:
    explicit FakeStageContext(core::BufferPool& pool, std::size_t headroom = 128)
        : pool_(pool), headroom_(headroom), log_(core::null_logger()) {}

    core::TimePoint now() const override { return now_; }
    core::PacketBuf allocate() override { return pool_.acquire(headroom_); }
    void send_control(core::PacketBuf&& p) override { sent.push_back(std::move(p)); }
    void deliver_inward(core::PacketBuf&& p) override { delivered.push_back(std::move(p)); }
    void raise(core::ControlEvent e) override { events.push_back(std::move(e)); }
    core::Logger& log() override { return log_; }

    void advance(core::Duration d) { now_ += d; }
    void set_now(core::TimePoint t) { now_ = t; }

    std::vector<core::PacketBuf> sent;
    std::vector<core::PacketBuf> delivered;
    std::vector<core::ControlEvent> events;

private:
    core::BufferPool& pool_;
    std::size_t headroom_;
    core::Logger log_;
    core::TimePoint now_ = core::TimePoint{} + std::chrono::hours(1);
};

}  // namespace mipsec::test
