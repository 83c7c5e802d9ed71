// SPDX-License-Identifier: MIT
#include "apps/shell/node.hpp"

#include <chrono>
#include <cstdio>
#include <set>
#include <vector>

#include <net/if.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "apps/shell/key_log.hpp"
#include "apps/shell/stage_factory.hpp"
#include "apps/shell/status_json.hpp"
#include "apps/shell/transport.hpp"
#include "core/buffer_pool.hpp"
#include "core/pipeline.hpp"
#include "crypto/random.hpp"
#include "tun/arp.hpp"
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

class RunningNode final : public Node, private core::PipelineIo {
public:
    RunningNode(asio::io_context& io, const NodeConfig& config, const core::Logger& log)
        : io_(io), config_(config), log_(log.child(config.name)), pool_(config.buffers, config.buffer_size), timer_(io) {}

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
        pipeline_ = std::make_unique<core::Pipeline>(std::move(stages), pool_, log_);
        pipeline_->attach(this);
        if (pipeline_->headroom() + Transport::rebuilt_header_len + config_.transport.link_mtu + pipeline_->tailroom() > pool_.block_len())
            throw std::runtime_error("node " + config_.name + ": buffer_size " + std::to_string(config_.buffer_size) +
                                     " is too small for link MTU plus " + std::to_string(pipeline_->headroom() + pipeline_->tailroom()) +
                                     " bytes of stage overhead; raise pool.buffer_size");

        transport_ = std::make_unique<Transport>(config_.transport, config_.batch);

        if (config_.inner_is_link) {
            auto link = tun::LinkDevice::open(config_.tun.name);
            if (!link)
                throw std::runtime_error("node " + config_.name + ": cannot serve link " + config_.tun.name + ": " + link.error().message() +
                                         " (needs an existing interface and root or CAP_NET_RAW)");
            device_ = std::move(*link);
            mtu_ = config_.transport.link_mtu;
        } else {
            auto device = tun::LinuxDevice::open(config_.tun.name);
            if (!device) throw std::runtime_error("node " + config_.name + ": cannot open TUN device " + config_.tun.name + ": " + device.error().message());
            device_ = std::move(*device);
            mtu_ = config_.tun.mtu.value_or(config_.transport.link_mtu - pipeline_->headroom() - pipeline_->tailroom());
            configure_link();
        }

        tun_fd_ = std::make_unique<asio::posix::stream_descriptor>(io_, ::dup(device_->fd()));
        for (const auto& s : transport_->sockets()) socket_fds_.push_back(std::make_unique<asio::posix::stream_descriptor>(io_, ::dup(s.fd)));
        auto monitor = tun::NetlinkMonitor::open();
        if (monitor) {
            monitor_ = std::make_unique<tun::NetlinkMonitor>(std::move(*monitor));
            monitor_fd_ = std::make_unique<asio::posix::stream_descriptor>(io_, ::dup(monitor_->fd()));
        } else {
            log_.warn("rtnetlink monitor unavailable (", monitor.error().message(), "): link changes will not be seen");
        }

        in_batch_.resize(config_.batch);
        out_batch_.reserve(config_.batch);
        started_ = std::chrono::steady_clock::now();
        asio::co_spawn(io_, tun_loop(), rethrow);
        for (std::size_t i = 0; i < socket_fds_.size(); ++i)
            if (transport_->receives(i)) asio::co_spawn(io_, socket_loop(i), rethrow);
        if (monitor_fd_) asio::co_spawn(io_, link_loop(), rethrow);
        asio::co_spawn(io_, timer_loop(), rethrow);
        log_.info("up: tun ", config_.tun.name, " mtu ", mtu_, ", ", pipeline_->size(), " stages, headroom ",
                  pipeline_->headroom(), ", tailroom ", pipeline_->tailroom());
        announce_present_addresses();
    }

    ~RunningNode() override {
        // Routes die with the TUN device; a policy rule would outlive us and misroute the host.
        if (!rule_) return;
        if (auto nl = tun::Netlink::open()) (void)nl->del_rule(*rule_);
    }

    void stop() override {
        // Goodbyes (IKE Delete payloads) leave while the sockets are still open.
        if (!stopping_) pipeline_->shutdown();
        stopping_ = true;
        boost::system::error_code ignored;
        if (tun_fd_) tun_fd_->close(ignored);
        for (auto& s : socket_fds_) s->close(ignored);
        if (monitor_fd_) monitor_fd_->close(ignored);
        timer_.cancel();
    }

    const std::string& name() const override { return config_.name; }

    nlohmann::json status() const override {
        nlohmann::json j;
        j["name"] = config_.name;
        j["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_).count();
        const auto& dc = device_->counters();
        j[config_.inner_is_link ? "link" : "tun"] = {{"name", config_.tun.name}, {"mtu", mtu_}, {"rx_packets", dc.rx_packets}, {"tx_packets", dc.tx_packets},
                    {"rx_errors", dc.rx_errors}, {"tx_errors", dc.tx_errors}};
        if (config_.inner_is_link) j["link"]["left_to_kernel"] = inner_unchanged_;
        nlohmann::json socks = nlohmann::json::array();
        for (const auto& s : transport_->sockets()) {
            nlohmann::json o;
            if (s.kind == Transport::Kind::Udp) o["udp_port"] = s.port;
            else o["raw_protocol"] = s.protocol;
            o["rx_packets"] = s.counters.rx_packets;
            o["tx_packets"] = s.counters.tx_packets;
            o["rx_errors"] = s.counters.rx_errors;
            o["tx_errors"] = s.counters.tx_errors;
            socks.push_back(o);
        }
        j["transport"] = {{"local", config_.transport.local.to_string()}, {"sockets", socks}, {"unroutable", transport_->unroutable()},
                          {"inbound_unchanged", inbound_unchanged_}};
        j["pool"] = {{"buffers", pool_.block_count()}, {"available", pool_.available()}, {"exhausted", pool_.exhausted_count()},
                     {"backpressure_pauses", backpressure_pauses_}};
        j["pipeline"] = pipeline_status(*pipeline_);
        return j;
    }

private:
    void configure_link() {
        auto opened = tun::Netlink::open();
        if (!opened) throw std::runtime_error("node " + config_.name + ": cannot open rtnetlink: " + opened.error().message());
        auto& nl = *opened;
        auto check = [&](core::Result<void> r, const std::string& what) {
            if (!r) {
                std::string detail = nl.last_error_detail().empty() ? "" : " (" + nl.last_error_detail() + ")";
                throw std::runtime_error("node " + config_.name + ": " + what + ": " + r.error().message() + detail);
            }
        };
        const auto ifindex = device_->ifindex();
        check(nl.set_mtu(ifindex, static_cast<std::uint32_t>(mtu_)), "cannot set MTU " + std::to_string(mtu_) + " on " + config_.tun.name);
        if (config_.tun.address) check(nl.add_address(ifindex, *config_.tun.address), "cannot add address " + config_.tun.address->to_string());
        // Stages carry IPv4 only; without this the kernel would feed the TUN IPv6 router
        // solicitations that every stage has to drop and count.
        if (std::FILE* f = std::fopen(("/proc/sys/net/ipv6/conf/" + config_.tun.name + "/disable_ipv6").c_str(), "w")) {
            std::fputs("1", f);
            std::fclose(f);
        }
        check(nl.set_up(ifindex, true), "cannot bring " + config_.tun.name + " up");
        // Routes through the TUN vanish with the device when it closes, so cleanup is implicit.
        for (const auto& r : config_.tun.routes)
            check(nl.add_route(tun::Route{r, ifindex, {}, config_.tun.route_table, {}}), "cannot add route " + r.to_string() + " via " + config_.tun.name);
        if (config_.tun.route_table) {
            const tun::Rule rule{.table = *config_.tun.route_table, .priority = 0, .fwmark = *config_.transport.fwmark, .invert = true};
            auto added = nl.add_rule(rule);
            if (!added && added.error() != std::errc::file_exists)
                check(added, "cannot add rule \"not fwmark " + std::to_string(rule.fwmark) + " lookup " + std::to_string(rule.table) + "\"");
            if (added) rule_ = rule;
        }
    }

    // Stages that follow an interface's address (a mobile node's care-of address) learn the
    // addresses that were already there before we started, as if they had just appeared.
    void announce_present_addresses() {
        auto nl = tun::Netlink::open();
        if (!nl) return;
        auto addresses = nl->addresses();
        if (!addresses) {
            log_.warn("cannot list interface addresses: ", addresses.error().message());
            return;
        }
        pipeline_->set_now(core::Clock::now());
        for (const auto& a : *addresses) pipeline_->dispatch(core::AddressChanged{a.ifindex, a.prefix, true});
    }

    // A home agent's bindings become host routes into the TUN, so the kernel hands it the
    // packets for every mobile node that is away (and forgets them when it comes home).
    void follow_registration(const core::RaisedEvent& e, const core::RegistrationChanged& change) {
        if (e.origin >= pipeline_->size()) return;
        const auto stage = pipeline_->stage(e.origin).name();
        if (stage == "mip.home_agent") {
            follow_binding(change);
            announce_on_home_link(change, true);
        }
        if (stage == "mip.mobile_node") {
            follow_foreign_agent(change);
            if (!change.registered) announce_on_home_link(change, false);
        }
    }

    // RFC 5944 §4.2.2: registered through a foreign agent, the mobile node uses it as its
    // default router, on a link where it may have no address of its own.
    void follow_foreign_agent(const core::RegistrationChanged& change) {
        std::optional<tun::Route> wanted;
        if (change.registered && !change.foreign_agent.is_unspecified() && change.link_ifindex != 0)
            wanted = tun::Route{.destination = {core::Ipv4Address{0}, 0}, .ifindex = change.link_ifindex,
                                .gateway = change.foreign_agent, .onlink = true};
        if (wanted == agent_route_) return;
        auto nl = tun::Netlink::open();
        if (!nl) {
            log_.error("cannot open rtnetlink for the foreign agent route: ", nl.error().message());
            return;
        }
        if (agent_route_) (void)nl->del_route(*agent_route_);
        agent_route_.reset();
        if (!wanted) return;
        auto r = nl->add_route(*wanted);
        if (!r && r.error() != std::errc::file_exists) {
            log_.error("cannot route via foreign agent ", change.foreign_agent.to_string(), ": ", r.error().message(), " ",
                       nl->last_error_detail());
            return;
        }
        agent_route_ = wanted;
        log_.info("default route via foreign agent ", change.foreign_agent.to_string());
    }

    // RFC 5944 §4.6: while a mobile node is away its HA answers ARP for the home address on
    // the home link (proxy ARP: the kernel does it for addresses routed elsewhere) and says so
    // at once with a gratuitous ARP; back home, the mobile node takes the address back.
    void announce_on_home_link(const core::RegistrationChanged& change, bool home_agent) {
        if (change.link_ifindex == 0) return;
        if (home_agent && change.registered && !proxy_arp_on_.contains(change.link_ifindex)) {
            char name[IF_NAMESIZE] = {};
            if (::if_indextoname(change.link_ifindex, name) != nullptr) {
                if (std::FILE* f = std::fopen((std::string("/proc/sys/net/ipv4/conf/") + name + "/proxy_arp").c_str(), "w")) {
                    std::fputs("1", f);
                    std::fclose(f);
                    proxy_arp_on_.insert(change.link_ifindex);
                } else {
                    log_.warn("cannot enable proxy ARP on ", name, ": hosts on the home link will not reach away mobile nodes");
                }
            }
        }
        if (home_agent != change.registered) return;  // HA: on binding; MN: on coming home
        if (auto r = tun::send_gratuitous_arp(change.link_ifindex, change.home_address); !r)
            log_.limited(core::LogLevel::Warn, core::Clock::now(), "cannot send a gratuitous ARP for ", change.home_address.to_string(), ": ",
                         r.error().message());
    }

    void follow_binding(const core::RegistrationChanged& change) {
        auto nl = tun::Netlink::open();
        if (!nl) {
            log_.error("cannot open rtnetlink for the route to ", change.home_address.to_string(), ": ", nl.error().message());
            return;
        }
        const tun::Route route{{change.home_address, 32}, device_->ifindex(), {}, config_.tun.route_table, {}};
        if (change.registered) {
            auto r = nl->add_route(route);
            if (!r && r.error() != std::errc::file_exists)
                log_.error("cannot route ", change.home_address.to_string(), " into ", config_.tun.name, ": ", r.error().message());
        } else {
            auto r = nl->del_route(route);
            if (!r && r.error() != std::errc::no_such_process)
                log_.error("cannot remove the route to ", change.home_address.to_string(), ": ", r.error().message());
        }
    }

    // Fills in_batch_ with fresh buffers at `headroom`; returns how many it could get.
    std::size_t refill(std::size_t headroom) {
        std::size_t n = 0;
        for (; n < in_batch_.size(); ++n) {
            if (!in_batch_[n].valid()) in_batch_[n] = pool_.acquire(headroom);
            else in_batch_[n].reset(headroom);
            if (!in_batch_[n].valid()) break;
        }
        return n;
    }

    // Lets the other readers and the timer run between two full batches.
    awaitable<void> yield_now() { co_await asio::post(io_, use_awaitable); }

    awaitable<void> pause_for_buffers() {
        ++backpressure_pauses_;
        asio::steady_timer t(io_, backpressure_pause);
        co_await t.async_wait(asio::as_tuple(use_awaitable));
    }

    awaitable<void> tun_loop() {
        while (!stopping_) {
            auto [ec] = co_await tun_fd_->async_wait(asio::posix::stream_descriptor::wait_read, asio::as_tuple(use_awaitable));
            if (ec || stopping_) co_return;
            for (;;) {
                std::size_t room = refill(pipeline_->headroom());
                if (room == 0) {
                    co_await pause_for_buffers();
                    break;
                }
                std::size_t got = device_->read(std::span(in_batch_).first(room));
                if (got == 0) break;
                pipeline_->set_now(core::Clock::now());
                out_batch_.clear();
                for (std::size_t i = 0; i < got; ++i) {
                    const auto* before = in_batch_[i].data();
                    const auto size_before = in_batch_[i].size();
                    if (!pipeline_->encapsulate(in_batch_[i]).passed()) continue;
                    // A link's traffic is the kernel's too: only what a stage wrapped is ours to send.
                    if (config_.inner_is_link && in_batch_[i].data() == before && in_batch_[i].size() == size_before) {
                        ++inner_unchanged_;
                        continue;
                    }
                    out_batch_.push_back(std::move(in_batch_[i]));
                }
                transport_->send(out_batch_);
                out_batch_.clear();  // returns the buffers to the pool
                rearm_timer();
                if (got < room) break;
                co_await yield_now();  // a busy TUN must not starve the sockets and the timer
            }
        }
    }

    awaitable<void> socket_loop(std::size_t index) {
        auto& fd = *socket_fds_[index];
        const std::size_t headroom = 64;  // room to rebuild IP/UDP headers; stages only pull inbound
        while (!stopping_) {
            auto [ec] = co_await fd.async_wait(asio::posix::stream_descriptor::wait_read, asio::as_tuple(use_awaitable));
            if (ec || stopping_) co_return;
            for (;;) {
                std::size_t room = refill(headroom);
                if (room == 0) {
                    co_await pause_for_buffers();
                    break;
                }
                std::size_t got = transport_->receive(index, std::span(in_batch_).first(room));
                if (got == 0) break;
                pipeline_->set_now(core::Clock::now());
                out_batch_.clear();
                for (std::size_t i = 0; i < got; ++i) {
                    const auto* before = in_batch_[i].data();
                    const auto size_before = in_batch_[i].size();
                    if (!pipeline_->decapsulate(in_batch_[i]).passed()) continue;
                    // No stage took anything off: the packet was never ours to hand inward (an
                    // ICMP message a raw socket copied, say) and the kernel has its own copy.
                    if (in_batch_[i].data() == before && in_batch_[i].size() == size_before) {
                        ++inbound_unchanged_;
                        continue;
                    }
                    out_batch_.push_back(std::move(in_batch_[i]));
                }
                device_->write(out_batch_);
                out_batch_.clear();
                rearm_timer();
                if (got < room) break;
                co_await yield_now();
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
            pipeline_->set_now(core::Clock::now());
            for (auto& e : events) pipeline_->dispatch(std::move(e));
            rearm_timer();
        }
    }

    awaitable<void> timer_loop() {
        while (!stopping_) {
            pipeline_->set_now(core::Clock::now());
            auto next = pipeline_->poll();
            deadline_ = next.value_or(core::Clock::now() + std::chrono::seconds(1));
            timer_.expires_at(deadline_);
            co_await timer_.async_wait(asio::as_tuple(use_awaitable));
        }
    }

    // Packets can move a stage's deadline earlier (a retransmission, a keepalive reset);
    // poll once and pull the timer in if needed.
    void rearm_timer() {
        auto next = pipeline_->poll();
        if (next && *next < deadline_) {
            deadline_ = *next;
            timer_.expires_at(deadline_);  // cancels the pending wait; timer_loop re-polls
        }
    }

    // PipelineIo: spontaneous output (control packets, keepalives, packets delivered inward).
    void send_outer(core::PacketBuf&& packet) override { transport_->send(std::span(&packet, 1)); }
    void deliver_inner(core::PacketBuf&& packet) override { device_->write(std::span(&packet, 1)); }
    void on_event(const core::RaisedEvent& e) override {
        if (const auto* mtu = std::get_if<core::PathMtuChanged>(&e.event)) log_.info("path MTU now ", mtu->mtu);
        if (const auto* inner = std::get_if<core::InnerAddressAssigned>(&e.event)) assign_inner_address(*inner);
        if (const auto* reg = std::get_if<core::RegistrationChanged>(&e.event)) follow_registration(e, *reg);
    }

    // The VPN layer's Mode Config address becomes the TUN device's address, so traffic routed
    // into the TUN leaves with the source the gateway's policy allows (only the topmost
    // layer's address belongs on the TUN; a Mobile IP layer above uses it as care-of address).
    void assign_inner_address(const core::InnerAddressAssigned& inner) {
        core::Ipv4Prefix host{inner.prefix.address, 32};
        if ((inner_address_ == host) == inner.assigned) return;
        auto nl = tun::Netlink::open();
        if (!nl) {
            log_.error("cannot open rtnetlink to change ", host.to_string(), ": ", nl.error().message());
            return;
        }
        if (!inner.assigned) {  // the VPN layer lost it: no source address without a tunnel
            (void)nl->del_address(device_->ifindex(), host);
            inner_address_.reset();
            log_.info("inner address ", host.to_string(), " removed from ", config_.tun.name);
            return;
        }
        if (inner_address_) (void)nl->del_address(device_->ifindex(), *inner_address_);
        auto r = nl->add_address(device_->ifindex(), host);
        if (!r && r.error() != std::errc::file_exists) {
            log_.error("cannot add inner address ", host.to_string(), " to ", config_.tun.name, ": ", r.error().message());
            return;
        }
        inner_address_ = host;
        // Routes through the TUN were added before the address existed; re-adding is harmless.
        for (const auto& route : config_.tun.routes) (void)nl->add_route(tun::Route{route, device_->ifindex(), {}, config_.tun.route_table, host.address});
        log_.info("inner address ", host.to_string(), " on ", config_.tun.name);
    }

    asio::io_context& io_;
    NodeConfig config_;
    core::Logger log_;
    crypto::KeystreamRandom random_;  // before the pipeline: SAs keep a reference to it
    std::vector<std::unique_ptr<FileKeyLog>> key_logs_;  // likewise for stages that log keys
    core::BufferPool pool_;
    std::unique_ptr<core::Pipeline> pipeline_;
    std::unique_ptr<Transport> transport_;
    std::unique_ptr<tun::Device> device_;
    std::unique_ptr<tun::NetlinkMonitor> monitor_;
    std::unique_ptr<asio::posix::stream_descriptor> tun_fd_;
    std::vector<std::unique_ptr<asio::posix::stream_descriptor>> socket_fds_;
    std::unique_ptr<asio::posix::stream_descriptor> monitor_fd_;
    asio::steady_timer timer_;
    core::TimePoint deadline_{};
    std::vector<core::PacketBuf> in_batch_;
    std::vector<core::PacketBuf> out_batch_;
    std::size_t mtu_ = 0;
    std::optional<core::Ipv4Prefix> inner_address_;
    std::optional<tun::Rule> rule_;
    std::optional<tun::Route> agent_route_;
    std::set<std::uint32_t> proxy_arp_on_;
    std::uint64_t backpressure_pauses_ = 0;
    std::uint64_t inbound_unchanged_ = 0;
    std::uint64_t inner_unchanged_ = 0;
    std::chrono::steady_clock::time_point started_{};
    bool stopping_ = false;
};

}  // namespace

std::unique_ptr<Node> Node::start(asio::io_context& io, const NodeConfig& config, const core::Logger& log) {
    auto node = std::make_unique<RunningNode>(io, config, log);
    node->start();  // on throw, the destructor closes the TUN device (and with it its routes) and sockets
    return node;
}

}  // namespace mipsec::shell
