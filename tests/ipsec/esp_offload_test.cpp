// SPDX-License-Identifier: MIT
// AEAD work outside the node's lock (core/aead_offload.hpp): a seal left for the data-path
// thread makes the same bytes as one done in the stage, an ESP packet a thread opened early is
// accepted by its SA exactly as if the SA had opened it (replay window, counters, drops), and
// the pipeline lets a stage leave its seal only where that is safe.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "core/aead_offload.hpp"
#include "core/buffer_pool.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "core/pipeline.hpp"
#include "core/udp.hpp"
#include "crypto/aead.hpp"
#include "crypto/aead_contexts.hpp"
#include "ipsec/esp_offload.hpp"
#include "ipsec/sa.hpp"
#include "tests/support/esp_sa.hpp"
#include "tests/support/fixed_random.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/packets.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using core::DropReason;
using ipsec::EspSuite;
using ipsec::Sa;

namespace {

const core::TimePoint t0 = test::esp_t0;
using test::inner_ping;
using test::keymat_for;
using test::make_sa;
constexpr EspSuite aead_suites[] = {EspSuite::AesGcm128, EspSuite::AesGcm256, EspSuite::ChaCha20Poly1305};
const auto local = core::Ipv4Address::from_octets(192, 0, 2, 1);
const auto remote = core::Ipv4Address::from_octets(198, 51, 100, 7);

// An ESP packet as the wire delivers it: in UDP to `port` (RFC 3948), or plain with port 0.
test::Bytes on_the_wire(const test::Bytes& esp, std::uint16_t port) {
    const std::size_t udp_len = port != 0 ? core::UdpHeader::len : 0;
    test::Bytes out(core::Ipv4Header::len + udp_len);
    core::Ipv4Header ip;
    ip.total_length = static_cast<std::uint16_t>(out.size() + esp.size());
    ip.ttl = 64;
    ip.protocol = port != 0 ? core::ip_protocol::udp : core::ip_protocol::esp;
    ip.source = remote;
    ip.destination = local;
    ip.emit(out);
    if (port != 0)
        core::UdpHeader{4500, port, static_cast<std::uint16_t>(udp_len + esp.size()), 0}.emit(std::span(out).subspan(core::Ipv4Header::len));
    out.insert(out.end(), esp.begin(), esp.end());
    return out;
}

// What the stages below the ESP layer do on the way in: take the outer headers off.
void strip_outer(core::PacketBuf& p, std::uint16_t port) { REQUIRE(p.pull(core::Ipv4Header::len + (port != 0 ? core::UdpHeader::len : 0))); }

struct Pair {
    explicit Pair(EspSuite suite, std::uint32_t spi = 0x4242, std::size_t window = ipsec::ReplayWindow::default_size) : key(keymat_for(suite)) {
        Sa::Config cfg{.spi = spi, .suite = suite, .replay_window = window};
        out = std::make_unique<Sa>(make_sa(Sa::Direction::Outbound, cfg, key, rnd));
        in = std::make_unique<Sa>(make_sa(Sa::Direction::Inbound, cfg, key, rnd));
    }
    test::CountingRandom rnd;
    crypto::SecretBytes key;
    std::unique_ptr<Sa> out, in;
    test::Bytes seal(core::BufferPool& pool) {
        auto b = test::load(pool, inner_ping());
        REQUIRE(out->seal(b, 4, t0).passed());
        return test::bytes_of(b);
    }
};

}  // namespace

TEST_CASE("AeadContexts: one clone per key and thread, let go when nobody else holds the key") {
    const auto key = "000102030405060708090a0b0c0d0e0f"_hex;
    auto made = crypto::Aead::create(crypto::AeadAlgorithm::AesGcm128, key);
    REQUIRE(made);
    std::shared_ptr<const crypto::Aead> shared = std::move(*made);
    crypto::AeadContexts contexts(2);
    crypto::Aead* a = contexts.get(shared);
    REQUIRE(a != nullptr);
    CHECK(a != shared.get());
    CHECK(contexts.get(shared) == a);
    CHECK(contexts.clones() == 1);

    // The clone seals as the key it was cloned from would (and does not disturb it).
    std::array<std::uint8_t, 12> nonce{};
    auto reference = crypto::Aead::create(crypto::AeadAlgorithm::AesGcm128, key);
    REQUIRE(reference);
    test::Bytes x(100, 0x5a), y(100, 0x5a);
    std::array<std::uint8_t, 16> tx{}, ty{};
    REQUIRE(a->seal(nonce, {}, x, tx));
    REQUIRE((*reference)->seal(nonce, {}, y, ty));
    CHECK(x == y);
    CHECK(tx == ty);

    auto other = crypto::Aead::create(crypto::AeadAlgorithm::ChaCha20Poly1305, test::Bytes(32, 7));
    auto third = crypto::Aead::create(crypto::AeadAlgorithm::AesGcm256, test::Bytes(32, 9));
    REQUIRE(other);
    REQUIRE(third);
    std::shared_ptr<const crypto::Aead> k2 = std::move(*other), k3 = std::move(*third);
    CHECK(contexts.get(k2) != nullptr);
    CHECK(contexts.get(shared) == a);  // the most recent: k2 is the oldest now
    CHECK(contexts.get(k3) != nullptr);  // capacity 2: k2 made room
    CHECK(contexts.size() == 2);
    CHECK(contexts.get(k2) != nullptr);
    CHECK(contexts.clones() == 4);

    shared.reset();  // the SA is gone: the cache must not keep its key
    k3.reset();
    contexts.sweep();
    CHECK(contexts.size() == 1);
}

TEST_CASE("deferred seal: the same bytes as sealing in the stage, though headers were pushed in front meanwhile") {
    for (auto suite : aead_suites) {
        CAPTURE(ipsec::to_string(suite));
        core::BufferPool pool(8, 2048);
        Pair now(suite), later(suite);
        crypto::AeadContexts contexts;
        for (int i = 0; i < 3; ++i) {
            auto reference = now.seal(pool);
            auto b = test::load(pool, inner_ping());
            REQUIRE(later.out->seal(b, 4, t0, /*defer=*/true).passed());
            REQUIRE(b.meta().aead_seal.has_value());
            CHECK(test::bytes_of(b) != reference);  // not encrypted yet
            // The layers below push their headers (nat.udp_encap, the outer IP header).
            REQUIRE(b.push(28));
            std::fill_n(b.data(), 28, std::uint8_t{0xEE});
            REQUIRE(ipsec::finish_seal(b, contexts));
            CHECK_FALSE(b.meta().aead_seal.has_value());
            CHECK(std::all_of(b.data(), b.data() + 28, [](std::uint8_t x) { return x == 0xEE; }));
            REQUIRE(b.pull(28));
            CHECK(test::bytes_of(b) == reference);
        }
        // Sequence numbers and counters are taken when the seal is prepared.
        CHECK(later.out->sequence() == 3);
        CHECK(later.out->counters().packets == 3);
        CHECK(later.out->counters().bytes == now.out->counters().bytes);
        CHECK(contexts.clones() == 1);

        // A packet without a pending seal goes untouched; one whose seal no longer fits the
        // packet (a layer below trimmed it) is refused, never sealed over other bytes.
        auto plain = test::load(pool, inner_ping());
        CHECK(ipsec::finish_seal(plain, contexts));
        CHECK(test::bytes_of(plain) == inner_ping());
        auto b = test::load(pool, inner_ping());
        REQUIRE(later.out->seal(b, 4, t0, true).passed());
        REQUIRE(b.trim(1));
        CHECK_FALSE(ipsec::finish_seal(b, contexts));
    }
}

TEST_CASE("deferred seal: CBC suites always seal in the stage") {
    core::BufferPool pool(4, 2048);
    test::CountingRandom rnd;
    auto key = keymat_for(EspSuite::AesCbc128HmacSha256);
    auto out = make_sa(Sa::Direction::Outbound, {.spi = 9, .suite = EspSuite::AesCbc128HmacSha256}, key, rnd);
    auto in = make_sa(Sa::Direction::Inbound, {.spi = 9, .suite = EspSuite::AesCbc128HmacSha256}, key, rnd);
    auto b = test::load(pool, inner_ping());
    REQUIRE(out.seal(b, 4, t0, true).passed());
    CHECK_FALSE(b.meta().aead_seal.has_value());
    std::uint8_t nh = 0;
    CHECK(in.open(b, t0, nh).passed());
    CHECK(in.open_key(4500) == nullptr);
}

TEST_CASE("pre-open: the SA accepts what a thread opened, once; the window moves only when the SA takes it") {
    for (auto suite : aead_suites) {
        for (std::uint16_t port : {std::uint16_t{4500}, std::uint16_t{0}}) {
            CAPTURE(ipsec::to_string(suite));
            CAPTURE(port);
            core::BufferPool pool(16, 2048);
            Pair sas(suite);
            core::AeadOffload keys;
            crypto::AeadContexts contexts;
            auto key = sas.in->open_key(port);
            REQUIRE(key != nullptr);
            CHECK(sas.in->open_key(port) == key);  // one key per SA
            keys.publish(key);
            CHECK(keys.live() == 1);

            const auto first = on_the_wire(sas.seal(pool), port);
            const auto second = on_the_wire(sas.seal(pool), port);
            std::vector<core::PacketBuf> batch;
            batch.push_back(test::load(pool, first));
            batch.push_back(test::load(pool, second));
            batch.push_back(test::load(pool, first));  // a replay in the same batch
            CHECK(ipsec::preopen_esp(batch, keys, contexts) == 3);
            CHECK(sas.in->sequence() == 0);  // nothing moved outside the SA
            for (auto& p : batch) {
                REQUIRE(p.meta().esp_opened.has_value());
                CHECK(p.meta().esp_opened->result == DropReason::None);
                strip_outer(p, port);
            }
            std::uint8_t nh = 0;
            REQUIRE(sas.in->open(batch[1], t0, nh).passed());  // out of order: 2 before 1
            CHECK(nh == 4);
            CHECK(test::bytes_of(batch[1]) == inner_ping());
            REQUIRE(sas.in->open(batch[0], t0, nh).passed());
            CHECK(test::bytes_of(batch[0]) == inner_ping());
            CHECK(sas.in->open(batch[2], t0, nh).reason == DropReason::ReplayedSequence);
            CHECK(sas.in->sequence() == 2);
            CHECK(sas.in->counters().packets == 2);
            CHECK(sas.in->counters().replay_drops == 1);
            CHECK_FALSE(batch[0].meta().esp_opened.has_value());  // taken by the SA
        }
    }
}

TEST_CASE("pre-open: forged or damaged packets are AuthFailed at the SA and never move its window") {
    core::BufferPool pool(16, 2048);
    Pair sas(EspSuite::AesGcm128);
    core::AeadOffload keys;
    crypto::AeadContexts contexts;
    keys.publish(sas.in->open_key(4500));
    const auto good = on_the_wire(sas.seal(pool), 4500);
    for (std::size_t i = 28 + 8; i < good.size(); ++i) {  // IV, ciphertext, ICV
        CAPTURE(i);
        auto bad = good;
        bad[i] ^= 0x10;
        std::vector<core::PacketBuf> batch;
        batch.push_back(test::load(pool, bad));
        CHECK(ipsec::preopen_esp(batch, keys, contexts) == 1);
        REQUIRE(batch[0].meta().esp_opened.has_value());
        CHECK(batch[0].meta().esp_opened->result == DropReason::AuthFailed);
        strip_outer(batch[0], 4500);
        std::uint8_t nh = 0;
        CHECK(sas.in->open(batch[0], t0, nh).reason == DropReason::AuthFailed);
    }
    CHECK(sas.in->sequence() == 0);
    CHECK(sas.in->counters().auth_failures == good.size() - 36);
    std::vector<core::PacketBuf> batch;
    batch.push_back(test::load(pool, good));
    ipsec::preopen_esp(batch, keys, contexts);
    strip_outer(batch[0], 4500);
    std::uint8_t nh = 0;
    CHECK(sas.in->open(batch[0], t0, nh).passed());
    // A damaged copy of a packet already accepted is a replay first, as open() finds it
    // (RFC 4303 §3.4.3 checks the window before the ICV): the same reason and counter.
    auto damaged = good;
    damaged.back() ^= 1;
    std::vector<core::PacketBuf> again;
    again.push_back(test::load(pool, damaged));
    ipsec::preopen_esp(again, keys, contexts);
    REQUIRE(again[0].meta().esp_opened.has_value());
    CHECK(again[0].meta().esp_opened->result == DropReason::AuthFailed);
    strip_outer(again[0], 4500);
    CHECK(sas.in->open(again[0], t0, nh).reason == DropReason::ReplayedSequence);
    CHECK(sas.in->counters().replay_drops == 1);
}

TEST_CASE("pre-open: only ESP the key was published for; everything else is left to the stages untouched") {
    core::BufferPool pool(16, 2048);
    Pair sas(EspSuite::AesGcm256, 0x1001);
    core::AeadOffload keys;
    crypto::AeadContexts contexts;
    keys.publish(sas.in->open_key(4500));
    const auto esp = sas.seal(pool);
    auto ike = on_the_wire(esp, 4500);
    std::fill_n(ike.begin() + 28, 4, std::uint8_t{0});  // non-ESP marker: IKE (RFC 3948 §2.2)
    auto keepalive = on_the_wire(test::Bytes{0xFF}, 4500);
    auto fragment = on_the_wire(esp, 4500);
    fragment[6] = 0x20;  // more fragments
    auto short_udp = on_the_wire(esp, 4500);
    core::store_be16(short_udp.data() + 24, 100);  // UDP length below the IP payload
    const std::vector<test::Bytes> untouched = {
        on_the_wire(esp, 500),   // another port than the key's
        on_the_wire(esp, 0),     // plain ESP, the key is for ESP in UDP
        ike, keepalive, fragment, short_udp, inner_ping(),
    };
    std::vector<core::PacketBuf> batch;
    for (const auto& u : untouched) batch.push_back(test::load(pool, u));
    CHECK(ipsec::preopen_esp(batch, keys, contexts) == 0);
    for (std::size_t i = 0; i < batch.size(); ++i) {
        CAPTURE(i);
        CHECK_FALSE(batch[i].meta().esp_opened.has_value());
        CHECK(test::bytes_of(batch[i]) == untouched[i]);
    }
    // An SA that is gone takes its key with it: its SPI is no longer opened early.
    sas.in.reset();
    CHECK(keys.live() == 0);
    std::vector<core::PacketBuf> late;
    late.push_back(test::load(pool, on_the_wire(esp, 4500)));
    CHECK(ipsec::preopen_esp(late, keys, contexts) == 0);
}

TEST_CASE("pre-open: a key for plain ESP opens no UDP, not even to port 0") {
    core::BufferPool pool(8, 2048);
    Pair sas(EspSuite::AesGcm128, 0x2020);
    core::AeadOffload keys;
    crypto::AeadContexts contexts;
    keys.publish(sas.in->open_key(0));
    const auto esp = sas.seal(pool);
    auto to_port_zero = on_the_wire(esp, 4500);
    core::store_be16(to_port_zero.data() + 22, 0);
    std::vector<core::PacketBuf> batch;
    batch.push_back(test::load(pool, to_port_zero));
    batch.push_back(test::load(pool, on_the_wire(esp, 0)));
    CHECK(ipsec::preopen_esp(batch, keys, contexts) == 1);
    CHECK_FALSE(batch[0].meta().esp_opened.has_value());
    CHECK(test::bytes_of(batch[0]) == to_port_zero);
    CHECK(batch[1].meta().esp_opened.has_value());
}

TEST_CASE("pre-open: a packet opened with another SA's key is refused, as its bytes are no longer what was sent") {
    core::BufferPool pool(8, 2048);
    Pair a(EspSuite::AesGcm128, 0x77), b(EspSuite::AesGcm128, 0x77);  // one SPI, one key, two SAs
    core::AeadOffload keys;
    crypto::AeadContexts contexts;
    keys.publish(a.in->open_key(4500));
    std::vector<core::PacketBuf> batch;
    batch.push_back(test::load(pool, on_the_wire(a.seal(pool), 4500)));
    REQUIRE(ipsec::preopen_esp(batch, keys, contexts) == 1);
    strip_outer(batch[0], 4500);
    std::uint8_t nh = 0;
    CHECK(b.in->open(batch[0], t0, nh).reason == DropReason::AuthFailed);
    CHECK(b.in->sequence() == 0);
}

TEST_CASE("open_key: none for ESN (the high half needs the window) or outbound SAs") {
    test::CountingRandom rnd;
    auto key = keymat_for(EspSuite::AesGcm128);
    auto esn = make_sa(Sa::Direction::Inbound, {.spi = 5, .suite = EspSuite::AesGcm128, .esn = true}, key, rnd);
    CHECK(esn.open_key(4500) == nullptr);
    auto out = make_sa(Sa::Direction::Outbound, {.spi = 5, .suite = EspSuite::AesGcm128}, key, rnd);
    CHECK(out.open_key(4500) == nullptr);
}

TEST_CASE("seal and open from two threads at once: every sequence number once, every packet opened") {
    // The node's shape: stages under one lock assign sequence numbers; each thread seals and
    // opens with its own contexts outside it.
    constexpr int per_thread = 2000;
    core::BufferPool pool(64, 2048, core::BufferPool::Sharing::Threads);
    // A thread may stall while the other runs ahead by any amount: a window wider than all
    // the packets keeps this about sequence numbers, not about how far two threads drift.
    Pair sas(EspSuite::AesGcm128, 0x4242, ipsec::ReplayWindow::max_size);
    core::AeadOffload keys;
    keys.publish(sas.in->open_key(4500));
    std::mutex lock;
    std::vector<std::uint32_t> seen;
    std::atomic<int> opened{0};
    auto worker = [&] {
        crypto::AeadContexts contexts;
        for (int i = 0; i < per_thread; ++i) {
            auto b = pool.acquire(128);
            REQUIRE(b.resize(inner_ping().size()));
            std::copy_n(inner_ping().begin(), inner_ping().size(), b.data());
            {
                std::lock_guard g(lock);
                REQUIRE(sas.out->seal(b, 4, t0, true).passed());
            }
            REQUIRE(ipsec::finish_seal(b, contexts));
            REQUIRE(b.push(28));
            const test::Bytes esp(b.data() + 28, b.data() + b.size());
            const auto wire = on_the_wire(esp, 4500);
            std::copy(wire.begin(), wire.end(), b.data());
            std::span one(&b, 1);
            REQUIRE(ipsec::preopen_esp(one, keys, contexts) == 1);
            strip_outer(b, 4500);
            std::lock_guard g(lock);
            seen.push_back(b.meta().esp_opened->seq);
            std::uint8_t nh = 0;
            if (sas.in->open(b, t0, nh).passed() && test::bytes_of(b) == inner_ping()) ++opened;
        }
    };
    std::thread t1(worker), t2(worker);
    t1.join();
    t2.join();
    std::sort(seen.begin(), seen.end());
    CHECK(seen.size() == 2 * per_thread);
    CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
    CHECK(seen.front() == 1);
    CHECK(seen.back() == 2 * per_thread);
    CHECK(opened == 2 * per_thread);
    CHECK(sas.in->counters().drops == 0);
}

namespace {

// Records what its context allowed, per packet; sends a control packet of its own when asked.
class Probe final : public core::Stage {
public:
    explicit Probe(bool payload_alone) : payload_alone_(payload_alone) {}
    std::string_view name() const noexcept override { return "test.probe"; }
    std::size_t headroom() const noexcept override { return 8; }
    bool leaves_payload_alone() const noexcept override { return payload_alone_; }
    core::Verdict encapsulate(core::PacketBuf& p, core::StageContext& ctx) override {
        deferrable.push_back(ctx.may_defer_seal());
        offload.push_back(ctx.aead_offload() != nullptr);
        if (send_control_now) {
            send_control_now = false;
            auto b = ctx.allocate();
            REQUIRE(b.put(20));
            ctx.send_control(std::move(b));
        }
        return p.push(8) ? core::Verdict::pass() : core::Verdict::drop(DropReason::NoHeadroom);
    }
    core::Verdict decapsulate(core::PacketBuf&, core::StageContext& ctx) override {
        offload.push_back(ctx.aead_offload() != nullptr);
        return core::Verdict::not_mine();
    }
    std::vector<bool> deferrable, offload;
    bool send_control_now = false;

private:
    bool payload_alone_;
};

struct NullIo final : core::PipelineIo {
    void send_outer(core::PacketBuf&&) override { ++sent; }
    void deliver_inner(core::PacketBuf&&) override {}
    int sent = 0;
};

}  // namespace

TEST_CASE("Pipeline: a stage may leave its seal only for user packets, with an offload, above layers that leave payloads alone") {
    core::BufferPool pool(8, 2048);
    std::vector<std::unique_ptr<core::Stage>> stages;
    stages.push_back(std::make_unique<Probe>(false));  // 0: like i-MIP over ...
    stages.push_back(std::make_unique<Probe>(true));   // 1: ... ESP over ...
    stages.push_back(std::make_unique<Probe>(true));   // 2: ... nat.udp_encap
    auto& top = static_cast<Probe&>(*stages[0]);
    auto& esp = static_cast<Probe&>(*stages[1]);
    auto& udp = static_cast<Probe&>(*stages[2]);
    core::Pipeline pipeline(std::move(stages), pool, core::Logger("test", core::LogLevel::Off, {}));
    NullIo io;
    pipeline.attach(&io);
    auto run = [&] {
        auto b = pool.acquire(pipeline.headroom());
        REQUIRE(b.put(20));
        pipeline.encapsulate(b);
    };
    run();  // no offload attached: one thread, nothing deferred anywhere
    CHECK(top.deferrable.back() == false);
    CHECK(esp.deferrable.back() == false);

    core::AeadOffload offload;
    pipeline.attach(&offload);
    run();
    // Stage 0 has stage 1 below it, which leaves payloads alone, and stage 2 too: all may.
    CHECK(top.deferrable.back() == true);
    CHECK(esp.deferrable.back() == true);
    CHECK(udp.deferrable.back() == true);

    // A control packet the top stage sends passes stage 1 and 2 in the middle of a user
    // packet: it leaves through send_outer() at once, so nothing below may defer for it, and
    // the user packet that follows may again.
    top.send_control_now = true;
    run();
    CHECK(esp.deferrable == std::vector<bool>{false, true, false, true});
    CHECK(io.sent == 1);  // the control packet; user packets return to the caller

    // Inbound, the stages publish keys only with an offload and payload-alone layers below.
    auto in = pool.acquire(64);
    REQUIRE(in.put(20));
    pipeline.decapsulate(in);
    CHECK(udp.offload.back() == true);
    CHECK(esp.offload.back() == true);
    CHECK(top.offload.back() == true);
}

TEST_CASE("Pipeline: nothing above a layer that reads payloads may leave its seal") {
    core::BufferPool pool(8, 2048);
    std::vector<std::unique_ptr<core::Stage>> stages;
    stages.push_back(std::make_unique<Probe>(true));   // ESP ...
    stages.push_back(std::make_unique<Probe>(false));  // ... over a tap that copies packets
    stages.push_back(std::make_unique<Probe>(true));
    auto& esp = static_cast<Probe&>(*stages[0]);
    auto& tap = static_cast<Probe&>(*stages[1]);
    core::Pipeline pipeline(std::move(stages), pool, core::Logger("test", core::LogLevel::Off, {}));
    NullIo io;
    core::AeadOffload offload;
    pipeline.attach(&io);
    pipeline.attach(&offload);
    auto b = pool.acquire(pipeline.headroom());
    REQUIRE(b.put(20));
    pipeline.encapsulate(b);
    CHECK(esp.deferrable.back() == false);
    CHECK(esp.offload.back() == false);
    CHECK(tap.deferrable.back() == true);  // what is below the tap leaves payloads alone
}
