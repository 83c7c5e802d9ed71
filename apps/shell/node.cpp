// SPDX-License-Identifier: MIT
#include "apps/shell/node.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "apps/shell/config_reload.hpp"
#include "apps/shell/host_network.hpp"
#include "apps/shell/key_log.hpp"
#include "apps/shell/stage_factory.hpp"
#include "apps/shell/status_json.hpp"
#include "apps/shell/transport.hpp"
#include "core/buffer_pool.hpp"
#include "core/core_lock.hpp"
#include "core/mtu_guard.hpp"
#include "core/pipeline.hpp"
#include "crypto/aead_contexts.hpp"
#include "crypto/random.hpp"
#include "ipsec/esp_offload.hpp"
#include "tun/link_device.hpp"
#include "tun/linux_device.hpp"
#include "tun/netlink.hpp"

namespace mipsec::shell {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace {

constexpr auto backpressure_pause = std::chrono::milliseconds(1);

// A loop that ends with an exception is a bug: surface it from io_context::run() so `main`
// reports it and exits non-zero, instead of a silently dead reader.
void rethrow(std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
}

// One thread of the data path: its io_context, its own buffers (pools are per worker, so the
// common case never shares a free list), its batches and what it did.
struct DataWorker {
    DataWorker(asio::io_context& context, const char* loops, std::size_t buffers, std::size_t buffer_size, core::BufferPool::Sharing sharing,
               std::size_t batch)
        : io(context), runs(loops), pool(buffers, buffer_size, sharing) {
        in.resize(batch);
        out.reserve(batch);
    }
    asio::io_context& io;
    const char* runs;  // for status: which loops this thread runs
    core::BufferPool pool;  // before the batches: they hold its buffers
    std::vector<core::PacketBuf> in;
    std::vector<core::PacketBuf> out;
    std::uint64_t batches = 0;  // batches read (TUN or socket)
    std::uint64_t packets = 0;  // packets in them
    std::uint64_t backpressure_pauses = 0;
    // AEAD work done outside the core lock (core/aead_offload.hpp) with this thread's own
    // instances of the SAs' keys.
    crypto::AeadContexts aead;
    std::uint64_t seals = 0;           // seals the ESP layers left to this thread
    std::uint64_t opens = 0;           // ESP packets this thread opened before the stages
    std::uint64_t seal_failures = 0;   // packets not sent: their seal failed (a library failure)
};

class RunningNode final : public Node, private core::PipelineIo {
public:
    RunningNode(asio::io_context& io, const NodeConfig& config, const core::Logger& log, NodeParts parts)
        : io_(io), config_(config), log_(log.child(config.name)), threaded_(config.workers > 1),
          main_(io, threaded_ ? "TUN -> encapsulate -> send; IKE, Mobile IP, timers, link events, control"
                              : "TUN -> encapsulate -> send; sockets -> decapsulate -> TUN; IKE, Mobile IP, timers, link events, control",
                config.buffers, config.buffer_size, threaded_ ? core::BufferPool::Sharing::Threads : core::BufferPool::Sharing::OneThread,
                config.batch),
          transport_(std::move(parts.transport)), device_(std::move(parts.device)), host_(std::move(parts.host)),
          monitor_links_(parts.monitor_links), timer_(io) {
        if (!host_) host_ = make_linux_host_network(config_, log_);
        if (threaded_) {
            inbound_io_ = std::make_unique<asio::io_context>(1);
            inbound_ = std::make_unique<DataWorker>(*inbound_io_, "sockets -> decapsulate -> TUN", config.buffers, config.buffer_size,
                                                    core::BufferPool::Sharing::Threads, config.batch);
        }
    }

    ~RunningNode() override { stop_inbound(); }

    void start() {
        StageBuildContext ctx{config_.name, false, &random_, core::Clock::now(), [this](const std::string& prefix) {
                                  key_logs_.push_back(std::make_unique<FileKeyLog>(prefix));
                                  return key_logs_.back().get();
                              }};
        std::vector<std::unique_ptr<core::Stage>> stages;
        std::size_t index = 0;
        for (const auto& entry : config_.pipeline) {
            ConfigReader reader(entry, config_.pointer + "/pipeline/" + std::to_string(index++));
            stages.push_back(build_stage(reader, ctx));
        }
        pipeline_ = std::make_unique<core::Pipeline>(std::move(stages), main_.pool, log_);
        wipe_secrets(config_);  // the stages hold their own copies of the keys
        pipeline_->attach(this);
        // With one thread nothing would run beside the stages: the seal stays where it is.
        if (threaded_) pipeline_->attach(&aead_offload_);
        if (pipeline_->headroom() + Transport::rebuilt_header_len + config_.transport.link_mtu + pipeline_->tailroom() > main_.pool.block_len())
            throw std::runtime_error("node " + config_.name + ": buffer_size " + std::to_string(config_.buffer_size) +
                                     " is too small for link MTU plus " + std::to_string(pipeline_->headroom() + pipeline_->tailroom()) +
                                     " bytes of stage overhead; raise pool.buffer_size");

        if (!transport_) transport_ = std::make_unique<SocketTransport>(config_.transport, config_.batch, log_.child("transport"));

        // RFC 5265 §5.2: the TUN MTU fits the lightest stack the configuration may use (mode c
        // rather than cvc), so no access mode is limited by another; guard_ answers DF packets
        // too big for the stack active now.
        const std::size_t tun_mtu = config_.tun.mtu.value_or(config_.transport.link_mtu - core::least_stack_overhead(*pipeline_));
        if (device_) {
            mtu_ = tun_mtu;
            if (config_.inner_is_link) host_->attach_link(device_->ifindex());
            else host_->configure_tun(device_->ifindex(), mtu_);
        } else if (config_.inner_is_link) {
            auto link = tun::LinkDevice::open(config_.tun.name);
            if (!link)
                throw std::runtime_error("node " + config_.name + ": cannot serve link " + config_.tun.name + ": " + link.error().message() +
                                         " (needs an existing interface and root or CAP_NET_RAW)");
            device_ = std::move(*link);
            mtu_ = config_.transport.link_mtu;
            host_->attach_link(device_->ifindex());
        } else {
            mtu_ = tun_mtu;
            auto device = tun::LinuxDevice::open(config_.tun.name, {.offload = config_.tun.offload, .mtu = mtu_});
            if (!device) throw std::runtime_error("node " + config_.name + ": cannot open TUN device " + config_.tun.name + ": " + device.error().message());
            tun_device_ = device->get();
            device_ = std::move(*device);
            if (config_.tun.offload && tun_device_->offloads() == 0)
                log_.warn("the kernel granted no TUN offloads on ", config_.tun.name, ": one packet per read and write");
            if (tun_device_->tx_queue_len() < tun::LinuxDevice::default_tx_queue_len)
                log_.warn("TUN ", config_.tun.name, " queues ", tun_device_->tx_queue_len(), " packets, not ",
                          tun::LinuxDevice::default_tx_queue_len, " (no CAP_NET_ADMIN?): bursts routed into it may be dropped");
            host_->configure_tun(device_->ifindex(), mtu_);
        }

        if (!config_.inner_is_link) guard_.emplace(core::MtuGuard::Config{.outer_mtu = config_.transport.link_mtu});

        // What the node writes to its own TUN device is inner traffic; a raw socket must not
        // take it for outer packets. A served link (foreign agent) is where outer packets come from.
        if (!config_.inner_is_link) transport_->ignore_inbound_from(device_->ifindex());
        tun_fd_ = std::make_unique<asio::posix::stream_descriptor>(io_, ::dup(device_->fd()));
        // The sockets' readers run on the inbound worker's thread when there is one.
        DataWorker& receiver = inbound_ ? *inbound_ : main_;
        for (const auto& s : transport_->sockets())
            socket_fds_.push_back(std::make_unique<asio::posix::stream_descriptor>(receiver.io, ::dup(s.fd)));
        if (monitor_links_) open_link_monitor();

        answers_.reserve(config_.batch);
        started_ = std::chrono::steady_clock::now();
        asio::co_spawn(io_, tun_loop(), rethrow);
        for (std::size_t i = 0; i < socket_fds_.size(); ++i) {
            if (!transport_->receives(i)) continue;
            if (!inbound_) {
                asio::co_spawn(io_, socket_loop(i, main_), rethrow);
                continue;
            }
            // A loop that ends with an exception on the inbound thread ends io_context::run()
            // on the main one, as there.
            asio::co_spawn(*inbound_io_, socket_loop(i, *inbound_), [this](std::exception_ptr e) {
                if (e) asio::post(io_, [e] { std::rethrow_exception(e); });
            });
        }
        if (monitor_fd_) asio::co_spawn(io_, link_loop(), rethrow);
        asio::co_spawn(io_, timer_loop(), rethrow);
        log_.info("up: tun ", config_.tun.name, " mtu ", mtu_, ", ", pipeline_->size(), " stages, headroom ",
                  pipeline_->headroom(), ", tailroom ", pipeline_->tailroom(), threaded_ ? ", inbound data path on its own thread" : "");
        announce_present_addresses();
        if (inbound_) inbound_thread_ = std::thread([this] { inbound_io_->run(); });
    }

    void stop() override {
        // Goodbyes (IKE Delete payloads) leave while the sockets are still open.
        if (!stopping_) {
            auto core = lock_core();
            pipeline_->shutdown();
        }
        stopping_ = true;
        stop_inbound();
        boost::system::error_code ignored;
        if (tun_fd_) tun_fd_->close(ignored);
        for (auto& s : socket_fds_) s->close(ignored);
        if (monitor_fd_) monitor_fd_->close(ignored);
        timer_.cancel();
    }

    const std::string& name() const override { return config_.name; }
    const NodeConfig& config() const override { return config_; }

    PreparedReload prepare_reload(const NodeConfig& next) override {
        auto core = lock_core();
        // The running configuration keeps only fingerprints of its keys: compare like with like.
        NodeConfig fingerprinted = next;
        wipe_secrets(fingerprinted);
        auto changes = diff_node_config(config_, fingerprinted);
        if (!changes.refused.empty()) throw ReloadRefused(std::move(changes.refused));
        // Parse only: what a stage opened when it started (key logs, interfaces) stays its own.
        StageBuildContext ctx{config_.name, /*dry_run=*/true, &random_, core::Clock::now(), nullptr};
        PreparedReload plan{next, {}};
        for (const auto& change : changes.stages) {
            const auto pointer = next.pointer + "/pipeline/" + std::to_string(change.index);
            ConfigReader reader(next.pipeline.at(change.index), pointer);
            std::string keys;
            for (const auto& k : change.keys) keys += (keys.empty() ? "" : ", ") + k;
            const auto* type = find_stage_type(change.type);
            plan.steps.push_back({pointer + " " + change.type + " (" + keys + " changed)", type->reconfigure(pipeline_->stage(change.index), reader, ctx)});
        }
        return plan;
    }

    std::vector<std::string> apply_reload(PreparedReload plan) override {
        auto core = lock_core();
        std::vector<std::string> lines;
        for (auto& step : plan.steps) {
            std::string line = step.stage;
            for (const auto& detail : step.apply()) line += "; " + detail;
            log_.info("reload: ", line);
            lines.push_back(std::move(line));
        }
        config_ = std::move(plan.next);
        wipe_secrets(config_);
        if (!lines.empty()) ++reloads_applied_;
        // A removed mobile node's binding is announced gone by the next poll: now, so its
        // routes are withdrawn at once.
        if (!stopping_) {
            pipeline_->set_now(core::Clock::now());
            rearm_timer(true);
        }
        return lines;
    }

    nlohmann::json status() const override {
        // Every figure is read with the lock of the thread side that writes it held, in the
        // node's lock order (inbound worker, core, send, TUN write).
        std::unique_lock<std::mutex> inbound(inbound_mutex_, std::defer_lock), send(send_mutex_, std::defer_lock),
            tun_write(tun_write_mutex_, std::defer_lock);
        std::unique_lock<core::CoreLock> core(core_mutex_, std::defer_lock);
        if (threaded_) {
            inbound.lock();
            core.lock();
            send.lock();
            tun_write.lock();
        }
        nlohmann::json j;
        j["name"] = config_.name;
        j["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_).count();
        j["reloads_applied"] = reloads_applied_;
        const auto& dc = device_->counters();
        j[config_.inner_is_link ? "link" : "tun"] = {{"name", config_.tun.name}, {"mtu", mtu_}, {"rx_packets", dc.rx_packets}, {"tx_packets", dc.tx_packets},
                    {"rx_errors", dc.rx_errors}, {"tx_errors", dc.tx_errors}, {"tx_failures", write_failures_status(dc.tx_failures)}};
        if (config_.inner_is_link) j["link"]["left_to_kernel"] = inner_unchanged_;
        if (guard_) {
            const auto& g = guard_->counters();
            j["tun"]["active_mtu"] = guard_->mtu();
            j["tun"]["stack_overhead"] = guard_->overhead();
            j["tun"]["too_big"] = {{"dropped", g.dropped_too_big}, {"icmp_frag_needed_sent", g.icmp_frag_needed_sent},
                                   {"icmp_rate_limited", g.icmp_rate_limited}, {"not_answerable", g.not_answerable},
                                   {"sent_for_fragmentation", g.sent_for_fragmentation}};
        }
        if (!config_.inner_is_link) j["tun"]["kill_switch"] = config_.tun.kill_switch;
        if (tun_device_ && config_.tun.offload) j["tun"]["offload"] = offload_status(tun_device_->offloads(), tun_device_->offload_counters());
        nlohmann::json socks = nlohmann::json::array();
        for (const auto& s : transport_->sockets()) {
            nlohmann::json o;
            if (s.kind == Transport::Kind::Udp) o["udp_port"] = s.port;
            else o["raw_protocol"] = s.protocol;
            o["rx_packets"] = s.counters.rx_packets;
            o["tx_packets"] = s.counters.tx_packets;
            o["rx_errors"] = s.counters.rx_errors;
            o["tx_errors"] = s.counters.tx_errors;
            o["tx_failures"] = write_failures_status(s.counters.tx_failures);
            o["rx_overflows"] = s.counters.rx_overflows;
            if (s.kind == Transport::Kind::Raw) o["rx_own_device"] = s.counters.rx_own_device;
            o["receive_buffer"] = s.receive_buffer;
            o["send_buffer"] = s.send_buffer;
            if (s.kind == Transport::Kind::Udp) add_offload_status(o, s);
            socks.push_back(o);
        }
        j["transport"] = {{"local", config_.transport.local.to_string()}, {"sockets", socks}, {"unroutable", transport_->unroutable()},
                          {"inbound_unclaimed", inbound_unclaimed_}, {"outbound_unclaimed", outbound_unclaimed_},
                          {"path_mtu", path_mtu_status(*transport_)}};
        const auto pauses = main_.backpressure_pauses + (inbound_ ? inbound_->backpressure_pauses : 0);
        j["pool"] = {{"buffers", main_.pool.block_count()}, {"available", main_.pool.available()}, {"exhausted", main_.pool.exhausted_count()},
                     {"backpressure_pauses", pauses}};
        nlohmann::json workers = nlohmann::json::array();
        for (const DataWorker* w : std::initializer_list<const DataWorker*>{&main_, inbound_.get()}) {
            if (w == nullptr) continue;
            workers.push_back({{"thread", w == &main_ ? "main" : "inbound"}, {"runs", w->runs}, {"batches", w->batches}, {"packets", w->packets},
                               {"backpressure_pauses", w->backpressure_pauses},
                               {"aead", {{"seals", w->seals}, {"opens", w->opens}, {"seal_failures", w->seal_failures},
                                         {"keys", w->aead.size()}, {"key_clones", w->aead.clones()}}},
                               {"pool", {{"buffers", w->pool.block_count()}, {"available", w->pool.available()}, {"exhausted", w->pool.exhausted_count()}}}});
        }
        j["workers"] = workers;
        j["pipeline"] = pipeline_status(*pipeline_);
        return j;
    }

private:
    void open_link_monitor() {
        auto monitor = tun::NetlinkMonitor::open();
        if (!monitor) {
            log_.warn("rtnetlink monitor unavailable (", monitor.error().message(), "): link changes will not be seen");
            return;
        }
        monitor_ = std::make_unique<tun::NetlinkMonitor>(std::move(*monitor));
        monitor_fd_ = std::make_unique<asio::posix::stream_descriptor>(io_, ::dup(monitor_->fd()));
    }

    // Stages that follow an interface's address (a mobile node's care-of address) learn the
    // addresses that were already there before we started, as if they had just appeared.
    void announce_present_addresses() {
        pipeline_->set_now(core::Clock::now());
        for (const auto& a : host_->present_addresses()) pipeline_->dispatch(a);
    }

    // Fills the worker's in-batch with fresh buffers at `headroom`; returns how many it could get.
    static std::size_t refill(DataWorker& w, std::size_t headroom) {
        std::size_t n = 0;
        for (; n < w.in.size(); ++n) {
            if (!w.in[n].valid()) w.in[n] = w.pool.acquire(headroom);
            else w.in[n].reset(headroom);
            if (!w.in[n].valid()) break;
        }
        return n;
    }

    // The seals the ESP layers left in this batch, outside the core lock; a packet whose seal
    // failed is not sent (counted). Keys of removed SAs are let go now and then.
    static void finish_seals(DataWorker& w) {
        std::size_t kept = 0;
        for (std::size_t i = 0; i < w.out.size(); ++i) {
            if (w.out[i].meta().aead_seal) {
                ++w.seals;
                if (!ipsec::finish_seal(w.out[i], w.aead)) {
                    ++w.seal_failures;
                    continue;
                }
            }
            if (kept != i) w.out[kept] = std::move(w.out[i]);
            ++kept;
        }
        w.out.erase(w.out.begin() + static_cast<std::ptrdiff_t>(kept), w.out.end());
        if (w.batches % 1024 == 0) w.aead.sweep();
    }

    // Lets the other readers and the timer run between two full batches.
    static awaitable<void> yield_now(DataWorker& w) { co_await asio::post(w.io, use_awaitable); }

    static awaitable<void> pause_for_buffers(DataWorker& w) {
        ++w.backpressure_pauses;
        asio::steady_timer t(w.io, backpressure_pause);
        co_await t.async_wait(asio::as_tuple(use_awaitable));
    }

    // With one worker there is one thread and these locks are never taken: the single-threaded
    // path is the same as without them. With an inbound worker, core_mutex_ guards the pipeline
    // (every stage and control plane), guard_ and the node's own figures; send_mutex_ the
    // transport's send side; tun_write_mutex_ the device's write side; inbound_mutex_ the
    // inbound worker's batch (its pool, receive side, counters), so status() reads them at rest.
    // Lock order: inbound, core, then send or TUN write.
    std::unique_lock<core::CoreLock> lock_core() const {
        return threaded_ ? std::unique_lock(core_mutex_) : std::unique_lock<core::CoreLock>();
    }
    std::unique_lock<std::mutex> lock_send() const { return threaded_ ? std::unique_lock(send_mutex_) : std::unique_lock<std::mutex>(); }
    std::unique_lock<std::mutex> lock_tun_write() const {
        return threaded_ ? std::unique_lock(tun_write_mutex_) : std::unique_lock<std::mutex>();
    }
    std::unique_lock<std::mutex> lock_inbound() const { return threaded_ ? std::unique_lock(inbound_mutex_) : std::unique_lock<std::mutex>(); }

    // Closes the inbound worker's sockets on its own thread (Asio objects belong to one) and
    // waits for it; its loops end as their waits are cancelled.
    void stop_inbound() {
        if (!inbound_thread_.joinable()) return;
        stopping_ = true;
        asio::post(*inbound_io_, [this] {
            boost::system::error_code ignored;
            for (auto& s : socket_fds_) s->close(ignored);
        });
        inbound_thread_.join();
    }

    awaitable<void> tun_loop() {
        DataWorker& w = main_;
        while (!stopping_) {
            auto [ec] = co_await tun_fd_->async_wait(asio::posix::stream_descriptor::wait_read, asio::as_tuple(use_awaitable));
            if (ec || stopping_) co_return;
            for (;;) {
                std::size_t room = refill(w, pipeline_->headroom());
                if (room == 0) {
                    co_await pause_for_buffers(w);
                    break;
                }
                std::size_t got = device_->read(std::span(w.in).first(room));
                if (got == 0) break;
                {
                    auto core = lock_core();
                    ++w.batches;
                    w.packets += got;
                    const auto now = core::Clock::now();
                    pipeline_->set_now(now);
                    w.out.clear();
                    for (std::size_t i = 0; i < got; ++i) {
                        std::optional<core::QuotedHeader> too_big;
                        if (guard_) {
                            if (active_mtu_stale_) refresh_active_mtu();
                            too_big = guard_->too_big(w.in[i]);
                        }
                        const auto v = pipeline_->encapsulate(w.in[i]);
                        if (too_big && v.continues() && !guard_->fits_outer(w.in[i])) {
                            // RFC 1191: a DF packet too big for the active stack is answered, not lost.
                            if (guard_->answer(w.in[i], *too_big, now) == core::MtuGuard::Outcome::Answered)
                                answers_.push_back(std::move(w.in[i]));
                            continue;
                        }
                        if (v.unclaimed()) {
                            // A served link's traffic is the kernel's too: only what a stage took is
                            // ours to send. From a TUN, everything was routed to us: it leaves as is.
                            if (config_.inner_is_link) {
                                ++inner_unchanged_;
                                continue;
                            }
                            ++outbound_unclaimed_;
                        } else if (!v.passed()) {
                            continue;
                        }
                        w.out.push_back(std::move(w.in[i]));
                    }
                    apply_device_mtu();
                }
                finish_seals(w);
                {
                    auto send = lock_send();
                    transport_->send(w.out);
                }
                w.out.clear();  // returns the buffers to the pool
                if (!answers_.empty()) {
                    write_inner(answers_);
                    answers_.clear();
                }
                {
                    auto core = lock_core();
                    rearm_timer(true);
                }
                if (got < room) break;
                co_await yield_now(w);  // a busy TUN must not starve the sockets and the timer
            }
        }
    }

    // On the main thread with one worker; on the inbound worker's own thread otherwise.
    awaitable<void> socket_loop(std::size_t index, DataWorker& w) {
        auto& fd = *socket_fds_[index];
        const bool on_main = &w == &main_;
        const std::size_t headroom = 64;  // room to rebuild IP/UDP headers; stages only pull inbound
        while (!stopping_) {
            auto [ec] = co_await fd.async_wait(asio::posix::stream_descriptor::wait_read, asio::as_tuple(use_awaitable));
            if (ec || stopping_) co_return;
            for (;;) {
                auto batch = lock_inbound();
                std::size_t room = refill(w, headroom);
                if (room == 0) {
                    if (batch.owns_lock()) batch.unlock();
                    co_await pause_for_buffers(w);
                    break;
                }
                std::size_t got = transport_->receive(index, std::span(w.in).first(room));
                if (got == 0) break;
                if (threaded_) w.opens += ipsec::preopen_esp(std::span(w.in).first(got), aead_offload_, w.aead);
                {
                    auto core = lock_core();
                    ++w.batches;
                    w.packets += got;
                    pipeline_->set_now(core::Clock::now());
                    w.out.clear();
                    for (std::size_t i = 0; i < got; ++i) {
                        const auto v = pipeline_->decapsulate(w.in[i]);
                        // No layer recognised it: never ours to hand inward (an ICMP message a raw
                        // socket copied, say), and the kernel has its own copy.
                        if (v.unclaimed()) ++inbound_unclaimed_;
                        if (!v.passed()) continue;
                        w.out.push_back(std::move(w.in[i]));
                    }
                }
                write_inner(w.out);
                w.out.clear();
                {
                    auto core = lock_core();
                    rearm_timer(on_main);
                }
                if (batch.owns_lock()) batch.unlock();
                if (got < room) break;
                co_await yield_now(w);
            }
        }
    }

    awaitable<void> link_loop() {
        std::vector<core::ControlEvent> events;
        while (!stopping_) {
            auto [ec] = co_await monitor_fd_->async_wait(asio::posix::stream_descriptor::wait_read, asio::as_tuple(use_awaitable));
            if (ec || stopping_) co_return;
            events.clear();
            monitor_->drain(events);
            auto core = lock_core();
            pipeline_->set_now(core::Clock::now());
            for (auto& e : events) pipeline_->dispatch(std::move(e));
            rearm_timer(true);
        }
    }

    awaitable<void> timer_loop() {
        while (!stopping_) {
            {
                auto core = lock_core();
                pipeline_->set_now(core::Clock::now());
                auto next = pipeline_->poll();
                raise_path_mtu_changes();
                if (guard_ && active_mtu_stale_) refresh_active_mtu();
                deadline_ = next.value_or(core::Clock::now() + std::chrono::seconds(1));
                timer_.expires_at(deadline_);
            }
            co_await timer_.async_wait(asio::as_tuple(use_awaitable));
        }
    }

    // Packets can move a stage's deadline earlier (a retransmission, a keepalive reset);
    // poll once and pull the timer in if needed. The caller holds the core lock; the timer
    // belongs to the main thread, so the inbound worker has the main thread move it.
    void rearm_timer(bool on_main) {
        raise_path_mtu_changes();
        auto next = pipeline_->poll();
        if (guard_ && active_mtu_stale_) refresh_active_mtu();
        if (next && *next < deadline_) {
            deadline_ = *next;
            if (on_main) {
                timer_.expires_at(deadline_);  // cancels the pending wait; timer_loop re-polls
            } else {
                asio::post(io_, [this] {
                    auto core = lock_core();
                    timer_.expires_at(deadline_);
                });
            }
        }
    }

    // PipelineIo: spontaneous output (control packets, keepalives, packets delivered inward),
    // on whichever thread holds the core lock.
    void send_outer(core::PacketBuf&& packet) override {
        // Control packets are sealed in the stages (Pipeline): nothing should be pending here.
        if (!ipsec::finish_seal(packet, control_aead_)) return;
        auto send = lock_send();
        transport_->send(std::span(&packet, 1));
    }
    void deliver_inner(core::PacketBuf&& packet) override { write_inner(std::span(&packet, 1)); }

    // The device counts each packet it could not write, by reason (status shows them); the log
    // says so too, rate-limited (log_'s rate limit is only used here, under the TUN write lock).
    void write_inner(std::span<core::PacketBuf> packets) {
        auto tun_write = lock_tun_write();
        if (device_->write(packets) < packets.size())
            log_.limited(core::LogLevel::Warn, core::Clock::now(), "cannot write to ", device_->name(), ": ", device_->last_write_error().message(),
                         " (packets dropped; see tx_failures in mipsec status)");
    }

    // The TUN MTU a path MTU asked for, applied by the thread that reads the device (its
    // segmenter is the read side's); the caller holds the core lock.
    void apply_device_mtu() {
        if (!pending_device_mtu_) return;
        if (tun_device_) tun_device_->set_mtu(*pending_device_mtu_);
        pending_device_mtu_.reset();
    }

    // A send refused as too big taught the transport a path MTU; tell the stages, now that
    // none is mid-packet.
    void raise_path_mtu_changes() {
        std::vector<Transport::PathMtu> changes;
        {
            auto send = lock_send();
            changes = transport_->take_path_mtu_changes();
        }
        for (const auto& change : changes) {
            log_.info("path MTU to ", change.destination.to_string(), " is ", change.mtu, " (a packet was refused as too big for it)");
            pipeline_->dispatch(core::PathMtuChanged{change.mtu, change.destination});
        }
    }

    // Whatever changed a stage's state raised an event; the sum is taken again before the next
    // packet from the TUN, once no stage is mid-packet.
    void refresh_active_mtu() {
        active_mtu_stale_ = false;
        const std::size_t before = guard_->mtu();
        guard_->set_overhead(core::active_overhead(*pipeline_));
        if (guard_->mtu() != before)
            log_.info("the active stack carries inner packets of up to ", guard_->mtu(), " bytes (", guard_->overhead(),
                      " bytes of overhead under an outer MTU of ", guard_->outer_mtu(), ")");
    }

    // The inner MTU follows a smaller outer path, as the kernel's own tunnels do: the kernel
    // then tells inner senders (ICMP fragmentation needed, RFC 1191) instead of our dropping
    // their DF packets at the socket one by one; guard_ answers for the stack active now. It
    // never grows back by itself.
    void follow_path_mtu(std::size_t path_mtu) {
        if (config_.inner_is_link) return;
        if (guard_ && path_mtu < guard_->outer_mtu()) {
            guard_->set_outer_mtu(path_mtu);
            active_mtu_stale_ = true;
        }
        const std::size_t overhead = core::least_stack_overhead(*pipeline_);
        const std::size_t inner = std::max<std::size_t>(576, path_mtu > overhead ? path_mtu - overhead : 0);
        if (inner >= mtu_) return;
        if (config_.tun.mtu) {
            log_.warn("path MTU ", path_mtu, " leaves ", inner, " bytes for inner packets, but tun.mtu fixes ", mtu_, ": bigger DF packets are dropped");
            return;
        }
        if (!host_->set_tun_mtu(inner)) return;
        if (threaded_) pending_device_mtu_ = inner;  // applied by the main thread's next TUN batch
        else if (tun_device_) tun_device_->set_mtu(inner);
        log_.info("MTU of ", config_.tun.name, " lowered from ", mtu_, " to ", inner, " to fit path MTU ", path_mtu);
        mtu_ = inner;
    }

    void on_event(const core::RaisedEvent& e) override {
        active_mtu_stale_ = true;
        if (const auto* mtu = std::get_if<core::PathMtuChanged>(&e.event)) follow_path_mtu(mtu->mtu);
        host_->on_event(e);
    }

    asio::io_context& io_;
    NodeConfig config_;
    core::Logger log_;
    const bool threaded_;  // an inbound worker thread (config "workers": 2)
    crypto::KeystreamRandom random_;  // before the pipeline: SAs keep a reference to it
    std::vector<std::unique_ptr<FileKeyLog>> key_logs_;  // likewise for stages that log keys
    // Workers before the pipeline: a stage may hold their buffers (core.impair).
    DataWorker main_;
    std::unique_ptr<asio::io_context> inbound_io_;
    std::unique_ptr<DataWorker> inbound_;
    std::thread inbound_thread_;
    mutable core::CoreLock core_mutex_;
    mutable std::mutex send_mutex_;
    mutable std::mutex tun_write_mutex_;
    mutable std::mutex inbound_mutex_;
    std::optional<std::size_t> pending_device_mtu_;
    core::AeadOffload aead_offload_;     // before the pipeline: its stages publish keys in it
    crypto::AeadContexts control_aead_;  // send_outer()'s, under the core lock
    std::unique_ptr<core::Pipeline> pipeline_;
    std::unique_ptr<Transport> transport_;
    std::unique_ptr<tun::Device> device_;
    tun::LinuxDevice* tun_device_ = nullptr;  // device_, when this node opened a TUN device itself
    std::unique_ptr<HostNetwork> host_;
    bool monitor_links_ = true;
    std::unique_ptr<tun::NetlinkMonitor> monitor_;
    std::unique_ptr<asio::posix::stream_descriptor> tun_fd_;
    std::vector<std::unique_ptr<asio::posix::stream_descriptor>> socket_fds_;
    std::unique_ptr<asio::posix::stream_descriptor> monitor_fd_;
    asio::steady_timer timer_;
    core::TimePoint deadline_{};
    std::vector<core::PacketBuf> answers_;  // ICMP fragmentation needed, back into the TUN
    std::optional<core::MtuGuard> guard_;   // a TUN's outbound packets against the active stack
    bool active_mtu_stale_ = true;
    std::size_t mtu_ = 0;
    std::uint64_t inbound_unclaimed_ = 0;   // from the wire, no layer's: the kernel has it
    std::uint64_t outbound_unclaimed_ = 0;  // from the TUN, no layer's: sent as it is
    std::uint64_t inner_unchanged_ = 0;
    std::uint64_t reloads_applied_ = 0;
    std::chrono::steady_clock::time_point started_{};
    std::atomic<bool> stopping_ = false;
};

}  // namespace

std::unique_ptr<Node> Node::start(asio::io_context& io, const NodeConfig& config, const core::Logger& log) {
    return start(io, config, log, NodeParts{});
}

std::unique_ptr<Node> Node::start(asio::io_context& io, const NodeConfig& config, const core::Logger& log, NodeParts parts) {
    auto node = std::make_unique<RunningNode>(io, config, log, std::move(parts));
    node->start();  // on throw, the destructor closes the TUN device (and with it its routes) and sockets
    return node;
}

}  // namespace mipsec::shell
