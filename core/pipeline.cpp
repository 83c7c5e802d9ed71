// SPDX-License-Identifier: MIT
#include "core/pipeline.hpp"

#include <algorithm>
#include <utility>

namespace mipsec::core {

class Pipeline::Context final : public StageContext {
public:
    Context(Pipeline& p, std::size_t index, Logger log) : p_(p), index_(index), log_(std::move(log)) {}
    TimePoint now() const override { return p_.now_; }
    PacketBuf allocate() override { return p_.pool_.acquire(p_.headroom_below(index_ + 1)); }
    void send_control(PacketBuf&& packet) override {
        ++p_.counters_[index_].control_sent;
        // Control packets leave through send_outer() as they are: nothing below may defer.
        const bool user_packet = std::exchange(p_.user_packet_outward_, false);
        // The sending stage owns the packet: layers below that call it NotMine still send it.
        if (p_.run_outward(index_ + 1, packet).continues() && p_.io_ != nullptr) {
            // What a stage announced before sending must take effect first: a home agent
            // removes a binding (and the shell its host route) before the deregistration
            // reply leaves, or the reply would be routed into the old tunnel.
            p_.show_pending_events_to_io();
            p_.io_->send_outer(std::move(packet));
        }
        p_.user_packet_outward_ = user_packet;
    }
    void deliver_inward(PacketBuf&& packet) override {
        if (p_.run_inward(index_, packet).continues() && p_.io_ != nullptr) p_.io_->deliver_inner(std::move(packet));
    }
    void raise(ControlEvent event) override { p_.events_.push_back({{index_, std::move(event)}, false}); }
    Logger& log() override { return log_; }
    std::size_t position() const override { return index_; }
    bool may_defer_seal() const override { return p_.offload_ != nullptr && p_.user_packet_outward_ && p_.payload_alone_below_[index_]; }
    AeadOffload* aead_offload() override { return p_.payload_alone_below_[index_] ? p_.offload_ : nullptr; }

private:
    Pipeline& p_;
    std::size_t index_;
    Logger log_;
};

Pipeline::Pipeline(std::vector<std::unique_ptr<Stage>> stages, BufferPool& pool, Logger log)
    : stages_(std::move(stages)), counters_(stages_.size()), pool_(pool), log_(std::move(log)) {
    headroom_below_.assign(stages_.size() + 1, 0);
    for (std::size_t i = stages_.size(); i-- > 0;) {
        headroom_below_[i] = headroom_below_[i + 1] + stages_[i]->headroom();
        tailroom_ += stages_[i]->tailroom();
        contexts_.push_back(nullptr);
    }
    headroom_ = headroom_below_[0];
    payload_alone_below_.assign(stages_.size(), true);
    for (std::size_t i = stages_.size(); i-- > 1;)
        payload_alone_below_[i - 1] = payload_alone_below_[i] && stages_[i]->leaves_payload_alone();
    for (std::size_t i = 0; i < stages_.size(); ++i)
        contexts_[i] = std::make_unique<Context>(*this, i, log_.child(stages_[i]->name()));
}

Pipeline::~Pipeline() = default;

std::size_t Pipeline::headroom_below(std::size_t index) const noexcept {
    return headroom_below_[std::min(index, stages_.size())];
}

Verdict Pipeline::run_outward(std::size_t first, PacketBuf& packet) {
    bool claimed = false;
    for (std::size_t i = first; i < stages_.size(); ++i) {
        Verdict v = stages_[i]->encapsulate(packet, *contexts_[i]);
        auto& c = counters_[i];
        switch (v.action) {
            case Action::Pass: ++c.encapsulated; claimed = true; continue;
            case Action::NotMine: ++c.not_mine; continue;
            case Action::Consumed: ++c.consumed; return v;
            case Action::Drop:
                ++c.dropped;
                ++c.drops[static_cast<std::size_t>(v.reason)];
                contexts_[i]->log().limited(LogLevel::Debug, now_, "outbound packet dropped: ", to_string(v.reason));
                return v;
        }
    }
    if (packet.meta().esp_wants_udp && !stages_.empty()) {
        // An ESP layer asked for RFC 3948 encapsulation and nothing below provided it: sending
        // plain ESP where IKE negotiated UDP would vanish in the NAT, so say so instead.
        auto& c = counters_.back();
        ++c.dropped;
        ++c.drops[static_cast<std::size_t>(DropReason::UdpEncapMissing)];
        contexts_.back()->log().limited(LogLevel::Warn, now_, "ESP needs UDP encapsulation but no nat.udp_encap stage is below it");
        return Verdict::drop(DropReason::UdpEncapMissing);
    }
    return claimed ? Verdict::pass() : Verdict::not_mine();
}

Verdict Pipeline::run_inward(std::size_t last_plus_one, PacketBuf& packet) {
    bool claimed = false;
    for (std::size_t i = last_plus_one; i-- > 0;) {
        Verdict v = stages_[i]->decapsulate(packet, *contexts_[i]);
        auto& c = counters_[i];
        switch (v.action) {
            case Action::Pass: ++c.decapsulated; claimed = true; continue;
            case Action::NotMine: ++c.not_mine; continue;
            case Action::Consumed: ++c.consumed; return v;
            case Action::Drop:
                ++c.dropped;
                ++c.drops[static_cast<std::size_t>(v.reason)];
                contexts_[i]->log().limited(LogLevel::Debug, now_, "inbound packet dropped: ", to_string(v.reason));
                return v;
        }
    }
    return claimed ? Verdict::pass() : Verdict::not_mine();
}

Verdict Pipeline::encapsulate(PacketBuf& packet) {
    user_packet_outward_ = true;
    Verdict v = run_outward(0, packet);
    user_packet_outward_ = false;
    drain_events();
    return v;
}

Verdict Pipeline::decapsulate(PacketBuf& packet) {
    Verdict v = run_inward(stages_.size(), packet);
    drain_events();
    return v;
}

std::optional<TimePoint> Pipeline::poll() {
    std::optional<TimePoint> next;
    for (std::size_t i = 0; i < stages_.size(); ++i) {
        auto d = stages_[i]->poll(*contexts_[i]);
        if (d && (!next || *d < *next)) next = d;
    }
    drain_events();
    return next;
}

void Pipeline::shutdown() {
    for (std::size_t i = 0; i < stages_.size(); ++i) stages_[i]->shutdown(*contexts_[i]);
    drain_events();
}

void Pipeline::dispatch(ControlEvent event) {
    events_.push_back({{RaisedEvent::external, std::move(event)}, false});
    drain_events();
}

void Pipeline::show_pending_events_to_io() {
    for (std::size_t i = 0; i < events_.size(); ++i) {  // by index: a handler may queue more
        if (events_[i].io_seen) continue;
        events_[i].io_seen = true;
        io_->on_event(events_[i].event);
    }
}

void Pipeline::drain_events() {
    // Handlers may raise further events; the outermost call drains them all, in order.
    if (draining_) return;
    draining_ = true;
    while (!events_.empty()) {
        QueuedEvent q = std::move(events_.front());
        events_.pop_front();
        for (std::size_t i = 0; i < stages_.size(); ++i) stages_[i]->on_event(q.event, *contexts_[i]);
        if (io_ != nullptr && !q.io_seen) io_->on_event(q.event);
    }
    draining_ = false;
}

}  // namespace mipsec::core
