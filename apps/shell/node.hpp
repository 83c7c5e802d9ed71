// SPDX-License-Identifier: MIT
#pragma once
// Node: one running stack — a TUN device, a pipeline of stages, the transport sockets and
// one timer — driven by Asio coroutines on the caller's io_context:
//   tun_loop:    TUN readable -> read a batch at the pipeline headroom -> encapsulate -> send
//   socket_loop: socket readable -> receive a batch -> decapsulate -> write to the TUN
//   timer_loop:  earliest stage deadline -> poll
//   link_loop:   rtnetlink notifications -> pipeline events (movement detection)
// When the pool runs dry the readers pause (back-pressure) instead of allocating.
// start() acquires everything or throws having released everything: no half-configured
// node is left behind.
//
// Threads ("pool": {"workers": N}). With 1 (the default) every loop above runs on the caller's
// io_context thread, as described. With N > 1 there are N data-path workers: worker 0 on the
// caller's thread, the others each on a thread with its own io_context. Each worker has its own
// queue of the TUN device (IFF_MULTI_QUEUE), its own transport (the UDP ports shared by
// SO_REUSEPORT; raw sockets, which every socket of a protocol would copy, only in worker 0's),
// its own buffer pool and AEAD contexts, and runs both loops on them: the kernel steers each
// flow to one queue and each peer's datagrams to one socket, so a flow stays on one worker, in
// order. The timer, link events, reloads and status stay on the caller's thread. The stages and
// control planes (IKE, Mobile IP, every SA's sequence counter and replay window) stay
// single-threaded in effect: one lock (core::CoreLock) is held for each batch's pass through
// the pipeline and each poll or event. What runs in parallel is everything else: the system
// calls, TUN segmentation and coalescing, GRO splitting and GSO grouping, and the AEAD work of
// ESP (core/aead_offload.hpp): a worker seals after the pass and opens before it. What a stage
// sends or delivers while a worker holds the lock leaves through that worker's transport and
// queue. Lock order: a worker's batch, the core, then a worker's send or TUN write.
// The Node interface itself is for the caller's thread only.

#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "apps/shell/host_network.hpp"
#include "apps/shell/node_config.hpp"
#include "apps/shell/stage_factory.hpp"
#include "apps/shell/transport.hpp"
#include "tun/device.hpp"
#include "core/logger.hpp"

namespace mipsec::shell {

/// What a node runs over. Left empty, start() opens the real ones: the configured TUN device
/// (or link), the sockets, the Linux host, an rtnetlink monitor. Tests hand in
/// tun::MemoryDevice, MemoryTransport and a recording HostNetwork to run a whole node in
/// process.
struct NodeParts {
    std::unique_ptr<tun::Device> device;
    std::unique_ptr<Transport> transport;
    std::unique_ptr<HostNetwork> host;
    bool monitor_links = true;
    /// With "workers": N > 1 and a device or transport handed in: the TUN queue and the
    /// transport of each further worker (N - 1 of each).
    std::vector<std::unique_ptr<tun::Device>> queues = {};
    std::vector<std::unique_ptr<Transport>> transports = {};
};

class Node {
public:
    /// Builds stages, opens the TUN device, configures it, opens sockets and starts the
    /// coroutines. Throws std::runtime_error (or ConfigError) with a message for the user.
    static std::unique_ptr<Node> start(boost::asio::io_context& io, const NodeConfig& config, const core::Logger& log);
    static std::unique_ptr<Node> start(boost::asio::io_context& io, const NodeConfig& config, const core::Logger& log, NodeParts parts);
    virtual ~Node() = default;
    virtual void stop() = 0;
    virtual const std::string& name() const = 0;
    virtual nlohmann::json status() const = 0;

    /// A reload checked against this node, each stage's change parsed and ready to apply.
    struct PreparedReload {
        NodeConfig next;
        struct Step {
            std::string stage;  // "/pipeline/0 mip.home_agent (mobile_nodes)", for the log
            StageReconfiguration apply;
        };
        std::vector<Step> steps;
    };
    /// The configuration the node runs (the last one reloaded).
    virtual const NodeConfig& config() const = 0;
    /// Compares `next` with the running configuration and parses each live change, changing
    /// nothing. Throws ReloadRefused naming the JSON pointer of each difference that needs a
    /// restart, or ConfigError.
    virtual PreparedReload prepare_reload(const NodeConfig& next) = 0;
    /// Applies a prepared reload; cannot fail. Bindings and SAs the change does not concern
    /// are untouched. Returns what changed, one line each, also logged.
    virtual std::vector<std::string> apply_reload(PreparedReload plan) = 0;
    /// prepare_reload() then apply_reload().
    std::vector<std::string> reload(const NodeConfig& next) { return apply_reload(prepare_reload(next)); }
};

}  // namespace mipsec::shell
