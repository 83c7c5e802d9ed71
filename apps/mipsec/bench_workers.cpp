// SPDX-License-Identifier: MIT
// `mipsec bench workers`: how far the node's data path scales over threads, in process. Each
// thread does what a node's worker does per batch, on the same objects: under one lock (the
// node's core lock) the pipeline — an ipsec.esp_tunnel stage over nat.udp_encap with a manual
// AEAD SA — runs set_now() and encapsulate() or decapsulate() for the batch; outside it, with
// AEAD offload (core/aead_offload.hpp), the thread seals (ipsec::finish_seal) or opens
// (ipsec::preopen_esp) with its own AeadContexts. Without offload the stage does the AEAD
// under the lock, as with one worker. The sockets and the TUN device are left out: their
// system calls run outside the lock on per-worker queues, so what limits scaling is what runs
// under it, which is what this measures. Rates are of inner packets over wall time, all
// threads together; the figure is the ratio to one thread of the same mode, measured in the
// same run.
#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "apps/mipsec/bench.hpp"
#include "core/aead_offload.hpp"
#include "core/buffer_pool.hpp"
#include "core/core_lock.hpp"
#include "core/ipv4.hpp"
#include "core/logger.hpp"
#include "core/pipeline.hpp"
#include "crypto/aead_contexts.hpp"
#include "crypto/random.hpp"
#include "ipsec/esp_offload.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "ipsec/sa.hpp"
#include "nat/udp_encap_stage.hpp"

namespace mipsec::bench {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t batch = 32;
// Batches each thread opens per round.
constexpr std::size_t batches_per_thread = 256;
const auto client = core::Ipv4Address::from_octets(192, 0, 2, 1);
const auto gateway = core::Ipv4Address::from_octets(198, 51, 100, 2);

struct NullIo final : core::PipelineIo {
    void send_outer(core::PacketBuf&&) override {}
    void deliver_inner(core::PacketBuf&&) override {}
};

std::vector<std::uint8_t> inner_packet(std::size_t len) {
    std::vector<std::uint8_t> p(len, 0xA5);
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(len);
    h.ttl = 64;
    h.protocol = core::ip_protocol::udp;
    h.source = core::Ipv4Address::from_octets(10, 0, 0, 1);
    h.destination = core::Ipv4Address::from_octets(10, 0, 1, 1);
    h.emit(p);
    return p;
}

// One side of the tunnel: ESP over nat.udp_encap, as an IKE-keyed client through a NAT runs.
std::unique_ptr<core::Pipeline> side(core::BufferPool& pool, core::Ipv4Address local, core::Ipv4Address remote, ipsec::Sa sa) {
    ipsec::EspTunnelStage::Config esp{local, remote};
    esp.udp_encapsulation = true;
    auto esp_stage = std::make_unique<ipsec::EspTunnelStage>(esp);
    if (sa.direction() == ipsec::Sa::Direction::Outbound) (void)esp_stage->install_outbound(std::move(sa));
    else (void)esp_stage->install_inbound(std::move(sa));
    nat::UdpEncapStage::Config udp;
    udp.keepalive = core::Duration::zero();
    udp.local = local;
    udp.remote = remote;
    std::vector<std::unique_ptr<core::Stage>> stages;
    stages.push_back(std::move(esp_stage));
    stages.push_back(std::make_unique<nat::UdpEncapStage>(udp));
    return std::make_unique<core::Pipeline>(std::move(stages), pool, core::Logger("bench", core::LogLevel::Off, {}));
}

struct Result {
    double pps = 0;
    std::uint64_t failures = 0;  // packets that did not pass: must stay 0
};

class Tunnel {
public:
    // One SA pair per thread: with SO_REUSEPORT the kernel steers each peer's datagrams to one
    // worker's socket, so what a worker opens is its peers' SAs, while every worker's TUN queue
    // may carry packets for any SA (the first one here, shared by all threads outbound).
    Tunnel(ipsec::EspSuite suite, std::size_t threads)
        : pool_((threads + 2) * batch * (batches_per_thread + 2), 2048, core::BufferPool::Sharing::Threads) {
        for (std::size_t t = 0; t < threads; ++t) {
            crypto::SecretBytes keymat(ipsec::keymat_len(suite));
            random_.fill(keymat.mutable_span());
            auto make = [&](ipsec::Sa::Direction d) {
                ipsec::Sa::Config c;
                c.spi = static_cast<std::uint32_t>(0x1000 + t);
                c.suite = suite;
                return std::move(*ipsec::Sa::create(d, c, keymat, random_, core::Clock::now()));
            };
            out_.push_back(side(pool_, client, gateway, make(ipsec::Sa::Direction::Outbound)));
            in_.push_back(side(pool_, gateway, client, make(ipsec::Sa::Direction::Inbound)));
            out_.back()->attach(&io_);
            in_.back()->attach(&io_);
        }
    }

    void offload(bool on) {
        for (auto& p : out_) p->attach(on ? &offload_ : nullptr);
        for (auto& p : in_) p->attach(on ? &offload_ : nullptr);
        offloading_ = on;
    }

    Result encapsulate(std::size_t threads, std::size_t len, std::chrono::milliseconds duration) {
        const auto inner = inner_packet(len);
        core::Pipeline& out = *out_.front();
        std::atomic<std::uint64_t> packets{0}, failures{0};
        std::barrier start(static_cast<std::ptrdiff_t>(threads));
        std::vector<std::thread> workers;
        for (std::size_t t = 0; t < threads; ++t) {
            workers.emplace_back([&] {
                crypto::AeadContexts contexts;
                std::vector<core::PacketBuf> bufs(batch);
                std::uint64_t done = 0, failed = 0;
                start.arrive_and_wait();
                const auto began = Clock::now();
                while (Clock::now() - began < duration) {
                    for (auto& b : bufs) {
                        if (!b.valid()) b = pool_.acquire(out.headroom());
                        else b.reset(out.headroom());
                        (void)b.resize(len);
                        std::memcpy(b.data(), inner.data(), core::Ipv4Header::len);
                    }
                    {
                        std::lock_guard core(lock_);
                        out.set_now(core::Clock::now());
                        for (auto& b : bufs) failed += out.encapsulate(b).passed() ? 0 : 1;
                    }
                    for (auto& b : bufs) failed += ipsec::finish_seal(b, contexts) ? 0 : 1;
                    done += batch;
                }
                packets += done;
                failures += failed;
            });
        }
        for (auto& w : workers) w.join();
        // Every thread worked `duration` by its own clock, from one barrier.
        return {static_cast<double>(packets) / std::chrono::duration<double>(duration).count(), failures};
    }

    // Seals rounds of batches for each thread's SA untimed (fresh sequence numbers for the
    // replay window), then times the threads opening their own, all under the one lock.
    Result decapsulate(std::size_t threads, std::size_t len, std::chrono::milliseconds duration) {
        const auto inner = inner_packet(len);
        std::vector<std::vector<std::vector<core::PacketBuf>>> batches(threads);
        for (auto& mine : batches) mine.resize(batches_per_thread);
        // Apart, not side by side in one vector: each thread writes its own on every batch.
        std::vector<std::unique_ptr<crypto::AeadContexts>> contexts;
        for (std::size_t t = 0; t < threads; ++t) contexts.push_back(std::make_unique<crypto::AeadContexts>());
        std::uint64_t packets = 0, failures = 0;
        Clock::duration timed{};
        const bool was = offloading_;
        while (timed < duration) {
            offload(false);  // the wire packets are sealed in the stage, untimed
            for (std::size_t t = 0; t < threads; ++t) {
                out_[t]->set_now(core::Clock::now());
                for (auto& bufs : batches[t]) {
                    bufs.resize(batch);
                    for (auto& b : bufs) {
                        if (!b.valid()) b = pool_.acquire(out_[t]->headroom());
                        else b.reset(out_[t]->headroom());
                        (void)b.resize(len);
                        std::memcpy(b.data(), inner.data(), len);
                        (void)out_[t]->encapsulate(b);
                    }
                }
            }
            offload(was);
            std::atomic<std::uint64_t> failed{0};
            // Each thread reads the clock itself: the one that completes the barrier runs on at
            // once while the others (this one too) are still being woken.
            std::vector<Clock::time_point> began(threads), ended(threads);
            std::barrier start(static_cast<std::ptrdiff_t>(threads));
            std::vector<std::thread> workers;
            for (std::size_t t = 0; t < threads; ++t) {
                workers.emplace_back([&, t] {
                    start.arrive_and_wait();
                    began[t] = Clock::now();
                    std::uint64_t bad = 0;
                    for (auto& bufs : batches[t]) {
                        if (offloading_) ipsec::preopen_esp(bufs, offload_, *contexts[t]);
                        std::lock_guard core(lock_);
                        in_[t]->set_now(core::Clock::now());
                        for (auto& b : bufs) bad += in_[t]->decapsulate(b).passed() ? 0 : 1;
                        // What came out must be what went in (once per batch: cheap next to the batch).
                        if (bufs.front().size() != len || std::memcmp(bufs.front().data(), inner.data(), len) != 0) ++bad;
                    }
                    ended[t] = Clock::now();
                    failed += bad;
                });
            }
            for (auto& w : workers) w.join();
            timed += *std::max_element(ended.begin(), ended.end()) - *std::min_element(began.begin(), began.end());
            packets += threads * batches_per_thread * batch;
            failures += failed;
        }
        return {static_cast<double>(packets) / std::chrono::duration<double>(timed).count(), failures};
    }

private:
    crypto::KeystreamRandom random_;
    core::BufferPool pool_;
    NullIo io_;
    core::AeadOffload offload_;
    bool offloading_ = false;
    std::vector<std::unique_ptr<core::Pipeline>> out_, in_;
    core::CoreLock lock_;
};

}  // namespace

int run_workers(const WorkersOptions& options) {
    const auto suite = ipsec::parse_esp_suite(options.suite);
    if (!suite || !ipsec::is_aead(*suite)) {
        std::fprintf(stderr, "mipsec bench workers: --suite %s is not an AEAD suite (aes128gcm16, aes256gcm16, chacha20poly1305)\n",
                     options.suite.c_str());
        return 2;
    }
    std::printf("mipsec bench workers: %s, %zu-byte inner packets, batches of %zu, best of %d rounds of %d ms; %u cores\n",
                options.suite.c_str(), options.size, batch, options.rounds, options.milliseconds, std::thread::hardware_concurrency());
    std::printf("%-4s %-24s %7s %9s %9s %11s\n", "dir", "AEAD", "threads", "Mpps", "Gbit/s", "vs 1 thread");
    bool clean = true;
    const auto duration = std::chrono::milliseconds(options.milliseconds);
    for (const char* direction : {"out", "in"}) {
        for (bool offload : {false, true}) {
            double one = 0;
            for (std::size_t threads : options.threads) {
                double best = 0;
                for (int r = 0; r < options.rounds; ++r) {
                    Tunnel tunnel(*suite, threads);
                    tunnel.offload(offload);
                    const auto result = direction[0] == 'o' ? tunnel.encapsulate(threads, options.size, duration)
                                                            : tunnel.decapsulate(threads, options.size, duration);
                    if (result.failures != 0) {
                        std::fprintf(stderr, "bench: %llu packets did not pass (%s, %zu threads)\n",
                                     static_cast<unsigned long long>(result.failures), direction, threads);
                        clean = false;
                    }
                    best = std::max(best, result.pps);
                }
                if (threads == 1) one = best;
                std::printf("%-4s %-24s %7zu %9.3f %9.2f %10.2fx\n", direction, offload ? "outside the lock" : "in the stage, under it",
                            threads, best / 1e6, best * static_cast<double>(options.size) * 8 / 1e9, one > 0 ? best / one : 0.0);
            }
        }
    }
    return clean ? 0 : 1;
}

}  // namespace mipsec::bench
