// SPDX-License-Identifier: MIT
#include <set>
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "core/ipv4.hpp"
#include "core/pipeline.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec::core;
using mipsec::test::Bytes;

namespace {

// A stage that wraps with a tagged header of `len` bytes and a tagged trailer of `tail` bytes,
// and checks both on the way in; it records the order it ran in.
class TagStage final : public Stage {
public:
    TagStage(std::uint8_t tag, std::size_t len, std::size_t tail, std::vector<std::string>* trace)
        : tag_(tag), len_(len), tail_(tail), trace_(trace), name_("test.tag" + std::to_string(tag)) {}
    std::string_view name() const noexcept override { return name_; }
    std::size_t headroom() const noexcept override { return len_; }
    std::size_t tailroom() const noexcept override { return tail_; }
    Verdict encapsulate(PacketBuf& p, StageContext& ctx) override {
        if (trace_) trace_->push_back("enc" + std::to_string(tag_));
        if (!p.push(len_)) return Verdict::drop(DropReason::NoHeadroom);
        if (!p.put(tail_)) return Verdict::drop(DropReason::NoTailroom);
        std::fill_n(p.data(), len_, tag_);
        std::fill_n(p.data() + p.size() - tail_, tail_, static_cast<std::uint8_t>(~tag_));
        if (raise_on_packet) ctx.raise(PathMtuChanged{tag_, {}});
        return Verdict::pass();
    }
    Verdict decapsulate(PacketBuf& p, StageContext&) override {
        if (trace_) trace_->push_back("dec" + std::to_string(tag_));
        if (p.size() < len_ + tail_) return Verdict::drop(DropReason::Truncated);
        for (std::size_t i = 0; i < len_; ++i)
            if (p.data()[i] != tag_) return Verdict::drop(DropReason::NotForUs);
        if (p.data()[0] == 0xEE) return Verdict::consumed();
        (void)p.pull(len_);
        (void)p.trim(tail_);
        return Verdict::pass();
    }
    void on_event(const RaisedEvent& e, StageContext&) override { events.push_back(e.origin); }
    std::optional<TimePoint> poll(StageContext& ctx) override {
        if (send_on_poll) {
            if (raise_before_send) ctx.raise(PathMtuChanged{1280, {}});
            auto b = ctx.allocate();
            REQUIRE(b.valid());
            REQUIRE(b.put(4));
            std::fill_n(b.data(), 4, std::uint8_t{0xAB});
            ctx.send_control(std::move(b));
            send_on_poll = false;
        }
        return deadline;
    }

    bool raise_on_packet = false;
    bool send_on_poll = false;
    bool raise_before_send = false;
    std::optional<TimePoint> deadline;
    std::vector<std::size_t> events;

private:
    std::uint8_t tag_;
    std::size_t len_, tail_;
    std::vector<std::string>* trace_;
    std::string name_;
};

class RecordingIo final : public PipelineIo {
public:
    void send_outer(PacketBuf&& p) override {
        outer.emplace_back(p.bytes().begin(), p.bytes().end());
        order.push_back("packet");
    }
    void deliver_inner(PacketBuf&& p) override { inner.emplace_back(p.bytes().begin(), p.bytes().end()); }
    void on_event(const RaisedEvent& e) override {
        events.push_back(e.origin);
        order.push_back("event");
    }
    std::vector<Bytes> outer, inner;
    std::vector<std::size_t> events;
    std::vector<std::string> order;
};

struct Spec {
    std::uint8_t tag;
    std::size_t len, tail;
};

std::vector<std::unique_ptr<Stage>> make(const std::vector<Spec>& specs, std::vector<std::string>* trace = nullptr) {
    std::vector<std::unique_ptr<Stage>> v;
    for (auto s : specs) v.push_back(std::make_unique<TagStage>(s.tag, s.len, s.tail, trace));
    return v;
}

}  // namespace

TEST_CASE("encapsulate runs inner to outer, decapsulate outer to inner, sums headroom") {
    BufferPool pool(8, 512);
    std::vector<std::string> trace;
    Pipeline p(make({{1, 8, 0}, {2, 20, 4}, {3, 12, 16}}, &trace), pool, null_logger());
    CHECK(p.headroom() == 40);
    CHECK(p.tailroom() == 20);
    auto buf = pool.acquire(p.headroom());
    REQUIRE(buf.put(10));
    REQUIRE(p.encapsulate(buf).passed());
    CHECK(buf.headroom() == 0);
    CHECK(buf.data()[0] == 3);  // outermost header is the last stage's
    REQUIRE(p.decapsulate(buf).passed());
    CHECK(trace == std::vector<std::string>{"enc1", "enc2", "enc3", "dec3", "dec2", "dec1"});
    CHECK(p.counters(1).encapsulated == 1);
    CHECK(p.counters(1).decapsulated == 1);
}

TEST_CASE("every stage order round-trips through the mirrored peer without reallocating") {
    std::vector<Spec> specs = {{1, 20, 0}, {2, 28, 33}, {3, 8, 0}, {4, 32, 0}};
    std::array<int, 4> order = {0, 1, 2, 3};
    int permutations = 0;
    do {
        std::vector<Spec> chosen;
        for (int i : order) chosen.push_back(specs[static_cast<std::size_t>(i)]);
        BufferPool pool(4, 2048);
        Pipeline tx(make(chosen), pool, null_logger());
        Pipeline rx(make(chosen), pool, null_logger());
        auto buf = pool.acquire(tx.headroom());
        REQUIRE(buf.put(100));
        for (std::size_t i = 0; i < 100; ++i) buf.data()[i] = static_cast<std::uint8_t>(i);
        const auto* block = buf.block();
        const auto* payload = buf.data();
        REQUIRE(tx.encapsulate(buf).passed());
        REQUIRE(rx.decapsulate(buf).passed());
        CHECK(buf.block() == block);
        CHECK(buf.data() == payload);
        REQUIRE(buf.size() == 100);
        for (std::size_t i = 0; i < 100; ++i) REQUIRE(buf.data()[i] == i);
        ++permutations;
    } while (std::next_permutation(order.begin(), order.end()));
    CHECK(permutations == 24);
}

TEST_CASE("drops and consumption stop the chain and are counted per stage and reason") {
    BufferPool pool(4, 512);
    std::vector<std::string> trace;
    Pipeline p(make({{1, 8, 0}, {2, 8, 0}}, &trace), pool, null_logger());
    auto buf = pool.acquire(p.headroom());
    REQUIRE(buf.put(8));
    std::fill_n(buf.data(), 8, std::uint8_t{9});
    auto v = p.decapsulate(buf);  // stage 2 sees tag 9: not its tunnel
    CHECK(v.action == Action::Drop);
    CHECK(v.reason == DropReason::NotForUs);
    CHECK(trace == std::vector<std::string>{"dec2"});
    CHECK(p.counters(1).dropped == 1);
    CHECK(p.counters(1).drops[static_cast<std::size_t>(DropReason::NotForUs)] == 1);
    CHECK(p.counters(0).dropped == 0);

    auto small = pool.acquire(0);  // no headroom at all: the first stage cannot push
    REQUIRE(small.put(4));
    v = p.encapsulate(small);
    CHECK(v.reason == DropReason::NoHeadroom);
    CHECK(p.counters(0).drops[static_cast<std::size_t>(DropReason::NoHeadroom)] == 1);
}

TEST_CASE("control packets are wrapped only by the stages below the sender") {
    BufferPool pool(4, 512);
    auto stages = make({{1, 8, 0}, {2, 16, 0}, {3, 4, 0}});
    auto* middle = static_cast<TagStage*>(stages[1].get());
    middle->send_on_poll = true;
    Pipeline p(std::move(stages), pool, null_logger());
    RecordingIo io;
    p.attach(&io);
    (void)p.poll();
    REQUIRE(io.outer.size() == 1);
    // 4 bytes of stage 3's tag around the 4-byte payload; stage 1 and 2 did not wrap it.
    CHECK(mipsec::test::to_hex(io.outer[0]) == "03030303abababab");
    CHECK(p.counters(1).control_sent == 1);
    CHECK(p.counters(2).encapsulated == 1);
    CHECK(p.counters(0).encapsulated == 0);
    CHECK(pool.available() == 4);
}

TEST_CASE("events are delivered after the packet to every stage and the io, with their origin") {
    BufferPool pool(4, 512);
    auto stages = make({{1, 8, 0}, {2, 8, 0}});
    auto* inner = static_cast<TagStage*>(stages[0].get());
    auto* outer = static_cast<TagStage*>(stages[1].get());
    inner->raise_on_packet = true;
    Pipeline p(std::move(stages), pool, null_logger());
    RecordingIo io;
    p.attach(&io);
    auto buf = pool.acquire(p.headroom());
    REQUIRE(buf.put(1));
    REQUIRE(p.encapsulate(buf).passed());
    CHECK(inner->events == std::vector<std::size_t>{0});
    CHECK(outer->events == std::vector<std::size_t>{0});
    CHECK(io.events == std::vector<std::size_t>{0});
    p.dispatch(LinkChanged{3, "eth0", true});
    CHECK(outer->events.back() == RaisedEvent::external);
}

TEST_CASE("an event raised before a control packet reaches the io first, once; stages still get it") {
    BufferPool pool(4, 512);
    auto stages = make({{1, 8, 0}, {2, 8, 0}});
    auto* inner = static_cast<TagStage*>(stages[0].get());
    auto* outer = static_cast<TagStage*>(stages[1].get());
    inner->send_on_poll = true;
    inner->raise_before_send = true;
    Pipeline p(std::move(stages), pool, null_logger());
    RecordingIo io;
    p.attach(&io);
    (void)p.poll();
    CHECK(io.order == std::vector<std::string>{"event", "packet"});
    CHECK(io.events == std::vector<std::size_t>{0});
    CHECK(inner->events == std::vector<std::size_t>{0});
    CHECK(outer->events == std::vector<std::size_t>{0});
}

TEST_CASE("poll returns the earliest stage deadline") {
    BufferPool pool(2, 256);
    auto stages = make({{1, 8, 0}, {2, 8, 0}, {3, 8, 0}});
    TimePoint t0{};
    static_cast<TagStage*>(stages[0].get())->deadline = t0 + std::chrono::seconds(5);
    static_cast<TagStage*>(stages[2].get())->deadline = t0 + std::chrono::seconds(2);
    Pipeline p(std::move(stages), pool, null_logger());
    auto next = p.poll();
    REQUIRE(next);
    CHECK(*next == t0 + std::chrono::seconds(2));
}

TEST_CASE("drops are logged at debug level, rate-limited per stage") {
    BufferPool pool(4, 512);
    std::vector<std::string> lines;
    Logger log("n", LogLevel::Debug, [&](LogLevel, std::string_view c, std::string_view m) { lines.push_back(std::string(c) + ": " + std::string(m)); });
    Pipeline p(make({{1, 8, 0}}), pool, log);
    p.set_now(TimePoint{} + std::chrono::hours(1));
    for (int i = 0; i < 50; ++i) {
        auto buf = pool.acquire(0);
        REQUIRE(buf.put(2));
        CHECK(p.decapsulate(buf).reason == DropReason::Truncated);
    }
    CHECK(p.counters(0).drops[static_cast<std::size_t>(DropReason::Truncated)] == 50);
    REQUIRE(lines.size() == 10);  // a burst of 10, the other 40 counted but not printed
    CHECK(lines[0] == "n/test.tag1: inbound packet dropped: truncated");
}

TEST_CASE("every drop reason has its own name (status keys, Prometheus labels)") {
    std::set<std::string_view> seen;
    for (std::size_t i = 0; i < mipsec::core::drop_reason_count; ++i) {
        const auto name = mipsec::core::to_string(static_cast<mipsec::core::DropReason>(i));
        CAPTURE(i);
        CHECK_FALSE(name.empty());
        CHECK(name != "invalid");
        CHECK(seen.insert(name).second);
    }
    CHECK(mipsec::core::to_string(mipsec::core::DropReason::Count) == "invalid");
}
