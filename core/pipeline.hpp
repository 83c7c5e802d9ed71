// SPDX-License-Identifier: MIT
#pragma once
// Pipeline: an ordered list of stages, inner first, built from configuration.
//
//  1. The shell reads a packet from the TUN device into a buffer at offset headroom(), so
//     no stage ever moves the payload.
//  2. encapsulate() runs stages 0..n-1; each pushes its header into the headroom.
//  3. A Pass verdict leaves a whole outer IPv4 packet for the shell to send. Stages that call
//     a packet NotMine hand it on untouched; if no stage claimed it, the pipeline's verdict is
//     NotMine and the shell decides (a served link's own traffic stays with the kernel).
//  4. decapsulate() runs stages n-1..0 on a packet from the wire; Pass leaves an inner
//     packet for the TUN device; NotMine means no layer recognised it (the kernel has it).
//  5. Control packets a stage sends (send_control) are wrapped by the stages below it and
//     go to the PipelineIo's send_outer; deliver_inward goes through the stages above.
//  6. Events raised meanwhile are queued and delivered to every stage and to the
//     PipelineIo once the packet is done, in order, until the queue is empty.
//  7. With an AeadOffload attached (several workers), ESP layers above stages that leave
//     payloads alone may leave AEAD work to the data-path threads (core/aead_offload.hpp):
//     encapsulate() may return packets whose seal is still pending, never send_control().
// Each drop is counted per stage and per reason. Not thread-safe: one pipeline per thread.
#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/stage.hpp"

namespace mipsec::core {

/// Where a pipeline's spontaneous output goes; implemented by the shell, or by tests.
class PipelineIo {
public:
    virtual void send_outer(PacketBuf&& packet) = 0;
    virtual void deliver_inner(PacketBuf&& packet) = 0;
    virtual void on_event(const RaisedEvent&) {}

protected:
    ~PipelineIo() = default;
};

struct StageCounters {
    std::uint64_t encapsulated = 0;  // packets passed outward
    std::uint64_t decapsulated = 0;  // packets passed inward
    std::uint64_t not_mine = 0;      // packets that were not this layer's, handed on untouched
    std::uint64_t consumed = 0;      // control traffic taken by the stage
    std::uint64_t control_sent = 0;  // control packets the stage sent
    std::uint64_t dropped = 0;
    std::array<std::uint64_t, drop_reason_count> drops{};
};

class Pipeline {
public:
    /// `stages` inner first. The pool must outlive the pipeline.
    Pipeline(std::vector<std::unique_ptr<Stage>> stages, BufferPool& pool, Logger log);
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;
    ~Pipeline();

    void attach(PipelineIo* io) noexcept { io_ = io; }
    /// Lets the ESP layers that can leave AEAD work to the data-path threads (null: none);
    /// whoever calls encapsulate() then runs each packet's PacketMeta::aead_seal before it
    /// sends it. Must outlive the pipeline.
    void attach(AeadOffload* offload) noexcept { offload_ = offload; }
    void set_now(TimePoint now) noexcept { now_ = now; }
    TimePoint now() const noexcept { return now_; }

    /// Bytes every stage together may push in front / put behind; read TUN packets at
    /// headroom() and leave tailroom() free.
    std::size_t headroom() const noexcept { return headroom_; }
    std::size_t tailroom() const noexcept { return tailroom_; }

    Verdict encapsulate(PacketBuf& packet);
    Verdict decapsulate(PacketBuf& packet);
    /// Runs every stage's timers; returns the earliest deadline any stage asked for.
    std::optional<TimePoint> poll();
    /// Every stage's shutdown(), innermost first, so that what they send still passes the
    /// stages below.
    void shutdown();
    /// An event from outside (rtnetlink, the shell), delivered to every stage.
    void dispatch(ControlEvent event);

    std::size_t size() const noexcept { return stages_.size(); }
    Stage& stage(std::size_t i) noexcept { return *stages_[i]; }
    const Stage& stage(std::size_t i) const noexcept { return *stages_[i]; }
    const StageCounters& counters(std::size_t i) const noexcept { return counters_[i]; }
    BufferPool& pool() noexcept { return pool_; }
    Logger& log() noexcept { return log_; }

private:
    class Context;
    friend class Context;

    Verdict run_outward(std::size_t first, PacketBuf& packet);
    Verdict run_inward(std::size_t last_plus_one, PacketBuf& packet);
    std::size_t headroom_below(std::size_t index) const noexcept;
    void drain_events();
    void show_pending_events_to_io();

    std::vector<std::unique_ptr<Stage>> stages_;
    std::vector<std::unique_ptr<Context>> contexts_;
    std::vector<StageCounters> counters_;
    std::vector<std::size_t> headroom_below_;  // [i] = sum of headroom of stages i..n-1
    BufferPool& pool_;
    Logger log_;
    PipelineIo* io_ = nullptr;
    AeadOffload* offload_ = nullptr;
    // [i]: every stage below stage i leaves payloads alone.
    std::vector<bool> payload_alone_below_;
    // Inside encapsulate() and not inside a stage's send_control(): a user packet.
    bool user_packet_outward_ = false;
    TimePoint now_{};
    std::size_t headroom_ = 0;
    std::size_t tailroom_ = 0;
    struct QueuedEvent {
        RaisedEvent event;
        bool io_seen = false;
    };
    std::deque<QueuedEvent> events_;
    bool draining_ = false;
};

}  // namespace mipsec::core
