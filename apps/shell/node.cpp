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

// One thread of the data path: its io_context, its TUN queue and transport, its own buffers
// (pools are per worker, so the common case never shares a free list), its batches and what it
// did. Worker 0 runs on the caller's io_context with the node's device and transport; each
// further one on a thread of its own with a queue of the same multi-queue TUN device and a
// transport sharing the UDP ports (SO_REUSEPORT), so the kernel spreads flows over the workers.
struct DataWorker {
    DataWorker(std::size_t worker_index, asio::io_context& context, std::string loops, std::size_t buffers, std::size_t buffer_size,
               core::BufferPool::Sharing sharing, std::size_t batch)
        : index(worker_index), io(context), runs(std::move(loops)), pool(buffers, buffer_size, sharing) {
        in.resize(batch);
        out.reserve(batch);
        answers.reserve(batch);
    }
    std::size_t index;  // 0: the caller's thread
    asio::io_context& io;
    // Workers 1..: the io_context `io` names; before the descriptors bound to it, which must go first.
    std::unique_ptr<asio::io_context> own_io;
    std::string runs;  // for status: which loops this thread runs
    core::BufferPool pool;  // before the batches: they hold its buffers
    tun::Device* device = nullptr;         // its TUN queue
    tun::LinuxDevice* queue = nullptr;     // the same, when the node opened it (set_mtu)
    Transport* transport = nullptr;        // where it sends and what it receives from
    std::unique_ptr<tun::Device> own_device;     // workers 1..: its queue
    std::unique_ptr<Transport> own_transport;    // workers 1..: its sockets
    std::unique_ptr<asio::posix::stream_descriptor> tun_fd;
    std::vector<std::unique_ptr<asio::posix::stream_descriptor>> socket_fds;
    std::thread thread;
    // Workers 1..: held for each batch, so status() reads this worker's counters and pool at
    // rest. The send and TUN-write sides are shared with whoever holds the core lock
    // (send_outer(), deliver_inner(), path MTUs), so each has its lock too.
    std::mutex batch_mutex;
    std::mutex send_mutex;
    std::mutex tun_write_mutex;
    std::optional<std::size_t> pending_mtu;  // a TUN MTU for this queue's segmenter, set under the core lock
    std::vector<core::PacketBuf> answers;    // ICMP fragmentation needed, back into the TUN
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
          transport_(std::move(parts.transport)), device_(std::move(parts.device)), host_(std::move(parts.host)),
          monitor_links_(parts.monitor_links), extra_queues_(std::move(parts.queues)), extra_transports_(std::move(parts.transports)),
          timer_(io) {
        if (!host_) host_ = make_linux_host_network(config_, log_);
        const auto sharing = threaded_ ? core::BufferPool::Sharing::Threads : core::BufferPool::Sharing::OneThread;
        const std::string loops = "TUN queue -> encapsulate -> send; sockets -> decapsulate -> TUN queue";
        workers_.push_back(std::make_unique<DataWorker>(0, io, loops + "; IKE, Mobile IP, timers, link events, control", config.buffers,
                                                        config.buffer_size, sharing, config.batch));
        for (std::size_t k = 1; k < config.workers; ++k) {
            auto own_io = std::make_unique<asio::io_context>(1);
            auto& context = *own_io;
            workers_.push_back(std::make_unique<DataWorker>(k, context, loops, config.buffers, config.buffer_size, sharing, config.batch));
            workers_.back()->own_io = std::move(own_io);
        }
    }

    ~RunningNode() override { stop_workers(); }

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
        pipeline_ = std::make_unique<core::Pipeline>(std::move(stages), main().pool, log_);
        wipe_secrets(config_);  // the stages hold their own copies of the keys
        pipeline_->attach(this);
        // With one thread nothing would run beside the stages: the seal stays where it is.
        if (threaded_) pipeline_->attach(&aead_offload_);
        if (pipeline_->headroom() + Transport::rebuilt_header_len + config_.transport.link_mtu + pipeline_->tailroom() > main().pool.block_len())
            throw std::runtime_error("node " + config_.name + ": buffer_size " + std::to_string(config_.buffer_size) +
                                     " is too small for link MTU plus " + std::to_string(pipeline_->headroom() + pipeline_->tailroom()) +
                                     " bytes of stage overhead; raise pool.buffer_size");

        if (threaded_ && config_.inner_is_link)
            throw std::runtime_error("node " + config_.name + ": " + config_.pointer + "/pool/workers " + std::to_string(config_.workers) +
                                     " needs a TUN device; a served link (" + config_.tun.name + ") is read by one thread: set workers to 1");
        if (!transport_) {
            // With several workers every UDP socket shares its port (SO_REUSEPORT): each
            // further worker binds its own beside it.
            SocketTransport::Sharing sharing;
            sharing.reuse_port = threaded_;
            auto primary = std::make_unique<SocketTransport>(config_.transport, config_.batch, sharing, log_.child("transport"));
            for (std::size_t k = 1; k < workers_.size(); ++k)
                extra_transports_.push_back(std::make_unique<SocketTransport>(config_.transport, config_.batch, SocketTransport::secondary_of(*primary),
                                                                              log_.child("transport")));
            transport_ = std::move(primary);
        }

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
            auto device = tun::LinuxDevice::open(config_.tun.name, {.offload = config_.tun.offload, .mtu = mtu_, .queues = workers_.size()});
            if (!device) throw std::runtime_error("node " + config_.name + ": cannot open TUN device " + config_.tun.name + ": " + device.error().message());
            tun_device_ = device->get();
            device_ = std::move(*device);
            if (config_.tun.offload && tun_device_->offloads() == 0)
                log_.warn("the kernel granted no TUN offloads on ", config_.tun.name, ": one packet per read and write");
            if (tun_device_->tx_queue_len() < tun::LinuxDevice::default_tx_queue_len)
                log_.warn("TUN ", config_.tun.name, " queues ", tun_device_->tx_queue_len(), " packets, not ",
                          tun::LinuxDevice::default_tx_queue_len, " (no CAP_NET_ADMIN?): bursts routed into it may be dropped");
            host_->configure_tun(device_->ifindex(), mtu_);
            for (std::size_t k = 1; k < workers_.size(); ++k) {
                auto queue = tun_device_->open_queue();
                if (!queue)
                    throw std::runtime_error("node " + config_.name + ": cannot open queue " + std::to_string(k) + " of TUN device " + config_.tun.name +
                                             " for worker " + std::to_string(k) + ": " + queue.error().message());
                extra_queues_.push_back(std::move(*queue));
            }
        }
        if (extra_queues_.size() + 1 < workers_.size() || extra_transports_.size() + 1 < workers_.size())
            throw std::runtime_error("node " + config_.name + ": " + std::to_string(workers_.size()) + " workers need as many TUN queues and transports");
        main().device = device_.get();
        main().queue = tun_device_;
        main().transport = transport_.get();
        for (std::size_t k = 1; k < workers_.size(); ++k) {
            DataWorker& w = *workers_[k];
            w.own_device = std::move(extra_queues_[k - 1]);
            w.own_transport = std::move(extra_transports_[k - 1]);
            w.device = w.own_device.get();
            w.queue = tun_device_ != nullptr ? static_cast<tun::LinuxDevice*>(w.device) : nullptr;
            w.transport = w.own_transport.get();
        }

        if (!config_.inner_is_link) guard_.emplace(core::MtuGuard::Config{.outer_mtu = config_.transport.link_mtu});

        // What the node writes to its own TUN device is inner traffic; a raw socket must not
        // take it for outer packets. A served link (foreign agent) is where outer packets come from.
        for (auto& worker : workers_) {
            DataWorker& w = *worker;
            if (!config_.inner_is_link) w.transport->ignore_inbound_from(device_->ifindex());
            w.tun_fd = std::make_unique<asio::posix::stream_descriptor>(w.io, ::dup(w.device->fd()));
            for (const auto& sock : w.transport->sockets())
                w.socket_fds.push_back(std::make_unique<asio::posix::stream_descriptor>(w.io, ::dup(sock.fd)));
        }
        if (monitor_links_) open_link_monitor();

        started_ = std::chrono::steady_clock::now();
        for (auto& worker : workers_) {
            DataWorker& w = *worker;
            // A loop that ends with an exception on a worker's thread ends io_context::run() on
            // the main one, as there.
            auto surface = [this](std::exception_ptr e) {
                if (e) asio::post(io_, [e] { std::rethrow_exception(e); });
            };
            if (w.index == 0) asio::co_spawn(w.io, tun_loop(w), rethrow);
            else asio::co_spawn(w.io, tun_loop(w), surface);
            for (std::size_t i = 0; i < w.socket_fds.size(); ++i) {
                if (!w.transport->receives(i)) continue;
                if (w.index == 0) asio::co_spawn(w.io, socket_loop(i, w), rethrow);
                else asio::co_spawn(w.io, socket_loop(i, w), surface);
            }
        }
        if (monitor_fd_) asio::co_spawn(io_, link_loop(), rethrow);
        asio::co_spawn(io_, timer_loop(), rethrow);
        log_.info("up: tun ", config_.tun.name, " mtu ", mtu_, ", ", pipeline_->size(), " stages, headroom ", pipeline_->headroom(),
                  ", tailroom ", pipeline_->tailroom(), threaded_ ? ", " + std::to_string(workers_.size()) + " data-path workers" : "");
        announce_present_addresses();
        for (std::size_t k = 1; k < workers_.size(); ++k) {
            DataWorker& w = *workers_[k];
            w.thread = std::thread([&w] { w.io.run(); });
        }
    }

    void stop() override {
        // Goodbyes (IKE Delete payloads) leave while the sockets are still open.
        if (!stopping_) {
            auto core = lock_core();
            pipeline_->shutdown();
        }
        stopping_ = true;
        stop_workers();
        boost::system::error_code ignored;
        if (main().tun_fd) main().tun_fd->close(ignored);
        for (auto& sock : main().socket_fds) sock->close(ignored);
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
        // node's lock order (workers' batches, core, sends, TUN writes).
        std::vector<std::unique_lock<std::mutex>> held;
        std::unique_lock<core::CoreLock> core(core_mutex_, std::defer_lock);
        if (threaded_) {
            for (std::size_t k = 1; k < workers_.size(); ++k) held.emplace_back(workers_[k]->batch_mutex);
            core.lock();
            for (const auto& w : workers_) held.emplace_back(w->send_mutex);
            for (const auto& w : workers_) held.emplace_back(w->tun_write_mutex);
        }
        // Each worker's queue and transport count what they carried: the node's are the sums.
        tun::DeviceCounters dc{};
        tun::OffloadCounters oc{};
        for (const auto& w : workers_) {
            dc += w->device->counters();
            if (w->queue != nullptr) oc += w->queue->offload_counters();
        }
        nlohmann::json j;
        j["name"] = config_.name;
        j["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_).count();
        j["reloads_applied"] = reloads_applied_;
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
        if (tun_device_ && config_.tun.offload) j["tun"]["offload"] = offload_status(tun_device_->offloads(), oc);
        nlohmann::json socks = nlohmann::json::array();
        std::uint64_t unroutable = 0;
        for (const auto& s : combined_sockets(unroutable)) {
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
        j["transport"] = {{"local", config_.transport.local.to_string()}, {"sockets", socks}, {"unroutable", unroutable},
                          {"inbound_unclaimed", inbound_unclaimed_}, {"outbound_unclaimed", outbound_unclaimed_},
                          {"path_mtu", path_mtu_status(*transport_)}};
        std::uint64_t pauses = 0;
        for (const auto& w : workers_) pauses += w->backpressure_pauses;
        j["pool"] = {{"buffers", main().pool.block_count()}, {"available", main().pool.available()}, {"exhausted", main().pool.exhausted_count()},
                     {"backpressure_pauses", pauses}};
        nlohmann::json workers = nlohmann::json::array();
        for (const auto& worker : workers_) {
            const DataWorker* w = worker.get();
            workers.push_back({{"thread", w->index == 0 ? std::string("main") : "worker-" + std::to_string(w->index)}, {"runs", w->runs},
                               {"batches", w->batches}, {"packets", w->packets},
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
    std::unique_lock<std::mutex> lock_send(DataWorker& w) const { return threaded_ ? std::unique_lock(w.send_mutex) : std::unique_lock<std::mutex>(); }
    std::unique_lock<std::mutex> lock_tun_write(DataWorker& w) const {
        return threaded_ ? std::unique_lock(w.tun_write_mutex) : std::unique_lock<std::mutex>();
    }
    // Worker 0's batches run on the thread that reads status: no lock.
    std::unique_lock<std::mutex> lock_batch(DataWorker& w) const {
        return threaded_ && w.index != 0 ? std::unique_lock(w.batch_mutex) : std::unique_lock<std::mutex>();
    }

    DataWorker& main() const noexcept { return *workers_.front(); }
    // The worker holding the core lock for one of its batches, else worker 0: what the stages
    // send or deliver meanwhile leaves through that worker's transport and TUN queue, which its
    // thread owns; timers, link events and reloads run on worker 0's thread. Only read and
    // written with the core lock held.
    DataWorker& current() const noexcept { return core_holder_ != nullptr ? *core_holder_ : main(); }
    // The core lock for a batch of `w`'s: current() is `w` until it is released.
    struct CoreHold {
        CoreHold(std::unique_lock<core::CoreLock> held, DataWorker*& holder, DataWorker& w) : lock(std::move(held)), holder_(holder) { holder_ = &w; }
        ~CoreHold() { holder_ = nullptr; }  // before the lock (members go after the body)
        CoreHold(const CoreHold&) = delete;
        CoreHold& operator=(const CoreHold&) = delete;
        std::unique_lock<core::CoreLock> lock;

    private:
        DataWorker*& holder_;
    };
    CoreHold lock_core_for(DataWorker& w) { return CoreHold(lock_core(), core_holder_, w); }

    // Closes each further worker's descriptors on its own thread (Asio objects belong to one)
    // and waits for it; its loops end as their waits are cancelled.
    void stop_workers() {
        stopping_ = true;
        for (std::size_t k = 1; k < workers_.size(); ++k) {
            DataWorker& w = *workers_[k];
            if (!w.thread.joinable()) continue;
            asio::post(w.io, [&w] {
                boost::system::error_code ignored;
                if (w.tun_fd) w.tun_fd->close(ignored);
                for (auto& sock : w.socket_fds) sock->close(ignored);
            });
            w.thread.join();
        }
    }

    // The transport sockets as one list: each further worker's share of a port adds to the
    // primary's entry for it; a socket only secondaries have (their send-only raw one) is listed
    // once with the sum.
    std::vector<Transport::Socket> combined_sockets(std::uint64_t& unroutable) const {
        std::vector<Transport::Socket> all = transport_->sockets();
        unroutable = transport_->unroutable();
        for (std::size_t k = 1; k < workers_.size(); ++k) {
            unroutable += workers_[k]->transport->unroutable();
            for (const auto& sock : workers_[k]->transport->sockets()) {
                auto same = std::find_if(all.begin(), all.end(), [&](const Transport::Socket& a) {
                    return a.kind == sock.kind && (a.kind == Transport::Kind::Udp ? a.port == sock.port : a.protocol == sock.protocol);
                });
                if (same == all.end()) {
                    all.push_back(sock);
                    continue;
                }
                same->counters += sock.counters;
            }
        }
        return all;
    }

    // Each worker's TUN queue: read -> encapsulate (under the core lock) -> seal -> send.
    awaitable<void> tun_loop(DataWorker& w) {
        const bool on_main = w.index == 0;
        while (!stopping_) {
            auto [ec] = co_await w.tun_fd->async_wait(asio::posix::stream_descriptor::wait_read, asio::as_tuple(use_awaitable));
            if (ec || stopping_) co_return;
            for (;;) {
                auto batch = lock_batch(w);
                std::size_t room = refill(w, pipeline_->headroom());
                if (room == 0) {
                    if (batch.owns_lock()) batch.unlock();
                    co_await pause_for_buffers(w);
                    break;
                }
                std::size_t got = w.device->read(std::span(w.in).first(room));
                if (got == 0) break;
                {
                    auto core = lock_core_for(w);
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
                                w.answers.push_back(std::move(w.in[i]));
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
                    apply_device_mtu(w);
                }
                finish_seals(w);
                {
                    auto send = lock_send(w);
                    w.transport->send(w.out);
                }
                w.out.clear();  // returns the buffers to the pool
                if (!w.answers.empty()) {
                    write_inner(w, w.answers);
                    w.answers.clear();
                }
                {
                    auto core = lock_core_for(w);
                    rearm_timer(on_main);
                }
                if (batch.owns_lock()) batch.unlock();
                if (got < room) break;
                co_await yield_now(w);  // a busy TUN must not starve the sockets and the timer
            }
        }
    }

    // Each worker's sockets: receive -> open ESP -> decapsulate (under the core lock) -> TUN queue.
    awaitable<void> socket_loop(std::size_t index, DataWorker& w) {
        auto& fd = *w.socket_fds[index];
        const bool on_main = w.index == 0;
        const std::size_t headroom = 64;  // room to rebuild IP/UDP headers; stages only pull inbound
        while (!stopping_) {
            auto [ec] = co_await fd.async_wait(asio::posix::stream_descriptor::wait_read, asio::as_tuple(use_awaitable));
            if (ec || stopping_) co_return;
            for (;;) {
                auto batch = lock_batch(w);
                std::size_t room = refill(w, headroom);
                if (room == 0) {
                    if (batch.owns_lock()) batch.unlock();
                    co_await pause_for_buffers(w);
                    break;
                }
                std::size_t got = w.transport->receive(index, std::span(w.in).first(room));
                if (got == 0) break;
                if (threaded_) w.opens += ipsec::preopen_esp(std::span(w.in).first(got), aead_offload_, w.aead);
                {
                    auto core = lock_core_for(w);
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
                write_inner(w, w.out);
                w.out.clear();
                {
                    auto core = lock_core_for(w);
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
        DataWorker& w = current();
        auto send = lock_send(w);
        w.transport->send(std::span(&packet, 1));
    }
    void deliver_inner(core::PacketBuf&& packet) override { write_inner(current(), std::span(&packet, 1)); }

    // The device counts each packet it could not write, by reason (status shows them); the log
    // says so too, rate-limited (log_'s rate limit is only used here, under the TUN write lock).
    void write_inner(DataWorker& w, std::span<core::PacketBuf> packets) {
        auto tun_write = lock_tun_write(w);
        if (w.device->write(packets) < packets.size()) {
            const auto reason = w.device->last_write_error().message();
            if (tun_write.owns_lock()) tun_write.unlock();
            // log_'s rate limit is one for all workers.
            std::lock_guard logging(log_mutex_);
            log_.limited(core::LogLevel::Warn, core::Clock::now(), "cannot write to ", w.device->name(), ": ", reason,
                         " (packets dropped; see tx_failures in mipsec status)");
        }
    }

    // The TUN MTU a path MTU asked for, applied by the thread that reads the device (its
    // segmenter is the read side's); the caller holds the core lock.
    void apply_device_mtu(DataWorker& w) {
        if (!w.pending_mtu) return;
        if (w.queue != nullptr) w.queue->set_mtu(*w.pending_mtu);
        w.pending_mtu.reset();
    }

    // A send refused as too big taught the transport a path MTU; tell the stages, now that
    // none is mid-packet.
    void raise_path_mtu_changes() {
        std::vector<Transport::PathMtu> changes;
        for (auto& w : workers_) {
            auto send = lock_send(*w);
            auto learned = w->transport->take_path_mtu_changes();
            changes.insert(changes.end(), learned.begin(), learned.end());
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
        // Each queue's segmenter belongs to the thread that reads it: applied by its next batch.
        for (auto& w : workers_) {
            if (threaded_) w->pending_mtu = inner;
            else if (w->queue != nullptr) w->queue->set_mtu(inner);
        }
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
    const bool threaded_;  // several data-path workers ("pool": {"workers": N > 1})
    crypto::KeystreamRandom random_;  // before the pipeline: SAs keep a reference to it
    std::vector<std::unique_ptr<FileKeyLog>> key_logs_;  // likewise for stages that log keys
    mutable core::CoreLock core_mutex_;
    std::mutex log_mutex_;
    core::AeadOffload aead_offload_;     // before the pipeline: its stages publish keys in it
    crypto::AeadContexts control_aead_;  // send_outer()'s, under the core lock
    // Before the pipeline: a stage may hold their buffers (core.impair).
    std::vector<std::unique_ptr<DataWorker>> workers_;
    DataWorker* core_holder_ = nullptr;  // see current()
    std::unique_ptr<core::Pipeline> pipeline_;
    std::unique_ptr<Transport> transport_;
    std::unique_ptr<tun::Device> device_;
    tun::LinuxDevice* tun_device_ = nullptr;  // device_, when this node opened a TUN device itself
    std::unique_ptr<HostNetwork> host_;
    bool monitor_links_ = true;
    // Until start() hands them to workers 1..: their TUN queues and transports.
    std::vector<std::unique_ptr<tun::Device>> extra_queues_;
    std::vector<std::unique_ptr<Transport>> extra_transports_;
    std::unique_ptr<tun::NetlinkMonitor> monitor_;
    std::unique_ptr<asio::posix::stream_descriptor> monitor_fd_;
    asio::steady_timer timer_;
    core::TimePoint deadline_{};
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
