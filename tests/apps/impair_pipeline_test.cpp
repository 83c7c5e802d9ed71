// SPDX-License-Identifier: MIT
// tap.impair inside real pipelines built from JSON: between two mip.ipip tunnels on one side
// (outbound impairment, released through the stage below it) and outside mip.ipip on the
// other (inbound impairment, released through the stage above it). What survives arrives
// byte for byte; the counters account for every packet.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>

#include "apps/shell/stage_factory.hpp"
#include "core/endian.hpp"
#include "core/impair_stage.hpp"
#include "core/ipv4.hpp"
#include "core/pipeline.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/packets.hpp"

using namespace mipsec;
using namespace std::chrono_literals;
using test::Bytes;

namespace {

class RecordingIo final : public core::PipelineIo {
public:
    void send_outer(core::PacketBuf&& p) override { outer.push_back(test::bytes_of(p)); }
    void deliver_inner(core::PacketBuf&& p) override { inner.push_back(test::bytes_of(p)); }
    std::vector<Bytes> outer, inner;
};

std::unique_ptr<core::Pipeline> build(const nlohmann::json& stages, core::BufferPool& pool) {
    std::vector<std::unique_ptr<core::Stage>> built;
    for (std::size_t i = 0; i < stages.size(); ++i) {
        shell::ConfigReader entry(stages[i], "/pipeline/" + std::to_string(i));
        built.push_back(shell::build_stage(entry, shell::StageBuildContext{}));
    }
    return std::make_unique<core::Pipeline>(std::move(built), pool, core::null_logger());
}

Bytes inner_packet(std::uint16_t id) {
    Bytes p(20 + 40);
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(p.size());
    h.identification = id;
    h.ttl = 64;
    h.protocol = 17;
    h.source = core::Ipv4Address::from_octets(10, 1, 0, 1);
    h.destination = core::Ipv4Address::from_octets(10, 2, 0, 1);
    h.emit(p);
    for (std::size_t i = 0; i < 40; ++i) p[20 + i] = static_cast<std::uint8_t>(id + i);
    return p;
}

}  // namespace

TEST_CASE("tap.impair between two IP-in-IP tunnels and outside one: what survives round-trips intact") {
    core::BufferPool pool(2048, 512);
    // Sender: inner tunnel, impairment, outer tunnel. Held packets re-enter below the stage,
    // so they still get the outer header.
    auto sender = build(nlohmann::json::parse(R"([
      {"type": "mip.ipip", "local": "192.0.2.1", "remote": "192.0.2.2"},
      {"type": "tap.impair", "seed": 21,
       "outbound": {"loss": 0.2, "duplicate": 0.1, "reorder": 0.1, "delay_ms": 5, "jitter_ms": 2, "queue": 64}},
      {"type": "mip.ipip", "local": "198.51.100.1", "remote": "198.51.100.2"}
    ])"), pool);
    // Receiver: the same two tunnels, with inbound impairment outside them: released packets
    // are unwrapped by both tunnels above it.
    auto receiver = build(nlohmann::json::parse(R"([
      {"type": "mip.ipip", "local": "192.0.2.2", "remote": "192.0.2.1"},
      {"type": "mip.ipip", "local": "198.51.100.2", "remote": "198.51.100.1"},
      {"type": "tap.impair", "seed": 22, "inbound": {"loss": 0.1, "delay_ms": 3, "jitter_ms": 3, "duplicate": 0.05}}
    ])"), pool);
    RecordingIo tx, rx;
    sender->attach(&tx);
    receiver->attach(&rx);

    std::map<Bytes, int> sent;
    core::TimePoint now = core::TimePoint{} + 1h;
    auto carry = [&] {
        for (auto& outer : tx.outer) {
            auto buf = test::load(pool, outer, 64);
            if (receiver->decapsulate(buf).passed()) rx.inner.push_back(test::bytes_of(buf));
        }
        tx.outer.clear();
    };
    const int count = 3000;
    for (int i = 0; i < count; ++i) {
        sender->set_now(now);
        receiver->set_now(now);
        auto inner = inner_packet(static_cast<std::uint16_t>(i));
        ++sent[inner];
        auto buf = test::load(pool, inner, sender->headroom());
        auto v = sender->encapsulate(buf);
        if (v.passed()) tx.outer.push_back(test::bytes_of(buf));
        (void)sender->poll();
        carry();
        (void)receiver->poll();
        now += 1ms;
    }
    for (int i = 0; i < 200; ++i) {  // let every held packet leave
        sender->set_now(now);
        receiver->set_now(now);
        (void)sender->poll();
        carry();
        (void)receiver->poll();
        now += 1ms;
    }

    auto& out_stage = static_cast<core::ImpairStage&>(sender->stage(1));
    auto& in_stage = static_cast<core::ImpairStage&>(receiver->stage(2));
    const auto& o = out_stage.outbound_counters();
    const auto& in = in_stage.inbound_counters();
    CHECK(o.packets == count);
    CHECK(o.lost > 0);
    CHECK(o.duplicated > 0);
    CHECK(o.reordered > 0);
    CHECK(in.lost > 0);
    CHECK(in.duplicated > 0);
    CHECK(out_stage.held(true) == 0);
    CHECK(in_stage.held(false) == 0);
    CHECK(o.queue_overflow == 0);

    // Every packet that arrived is one that was sent, unchanged; the counts add up.
    const std::uint64_t left_sender = count - o.lost + o.duplicated;
    CHECK(in.packets == left_sender);
    CHECK(rx.inner.size() == left_sender - in.lost + in.duplicated);
    bool out_of_order = false;
    for (std::size_t i = 0; i < rx.inner.size(); ++i) {
        CHECK(sent.count(rx.inner[i]) == 1);
        if (i > 0 && core::load_be16(rx.inner[i].data() + 4) < core::load_be16(rx.inner[i - 1].data() + 4)) out_of_order = true;
    }
    CHECK(out_of_order);

    // The pipeline counted the stage's drops by reason, and what it released as control sends.
    CHECK(sender->counters(1).drops[static_cast<std::size_t>(core::DropReason::Impaired)] == o.lost);
    CHECK(sender->counters(1).control_sent == o.released);
    CHECK(pool.available() == pool.block_count());
}
