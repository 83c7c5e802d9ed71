// SPDX-License-Identifier: MIT
#include "apps/shell/host_network.hpp"

#include <cstdio>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <net/if.h>

#include "core/time.hpp"
#include "tun/arp.hpp"
#include "tun/netlink.hpp"

namespace mipsec::shell {

namespace {

bool write_sysctl(const std::string& path, const char* value) {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return false;
    const bool ok = std::fputs(value, f) >= 0;
    return std::fclose(f) == 0 && ok;
}

class LinuxHostNetwork final : public HostNetwork {
public:
    LinuxHostNetwork(const NodeConfig& config, core::Logger log) : config_(config), log_(std::move(log)) {}

    ~LinuxHostNetwork() override {
        // Routes die with the TUN device; a policy rule would outlive us and misroute the host,
        // unless it is to keep the kill switch's block in front of the host's own traffic.
        if (!rule_ || config_.tun.kill_switch) return;
        if (auto nl = tun::Netlink::open()) (void)nl->del_rule(*rule_);
    }

    void configure_tun(std::uint32_t ifindex, std::size_t mtu) override {
        device_ifindex_ = ifindex;
        auto opened = tun::Netlink::open();
        if (!opened) throw std::runtime_error("node " + config_.name + ": cannot open rtnetlink: " + opened.error().message());
        auto& nl = *opened;
        auto check = [&](core::Result<void> r, const std::string& what) {
            if (!r) {
                std::string detail = nl.last_error_detail().empty() ? "" : " (" + nl.last_error_detail() + ")";
                throw std::runtime_error("node " + config_.name + ": " + what + ": " + r.error().message() + detail);
            }
        };
        const auto& tun = config_.tun;
        check(nl.set_mtu(ifindex, static_cast<std::uint32_t>(mtu)), "cannot set MTU " + std::to_string(mtu) + " on " + tun.name);
        if (tun.address) check(nl.add_address(ifindex, *tun.address), "cannot add address " + tun.address->to_string());
        // Stages carry IPv4 only; without this the kernel would feed the TUN IPv6 router
        // solicitations that every stage has to drop and count.
        (void)write_sysctl("/proc/sys/net/ipv6/conf/" + tun.name + "/disable_ipv6", "1");
        check(nl.set_up(ifindex, true), "cannot bring " + tun.name + " up");
        // Routes through the TUN vanish with the device when it closes, so cleanup is implicit.
        for (const auto& r : tun.routes)
            check(nl.add_route(tun::Route{r, ifindex, {}, tun.route_table, {}}), "cannot add route " + r.to_string() + " via " + tun.name);
        for (const auto& r : tun.routes) {
            const tun::Route block{.destination = r, .table = tun.route_table, .type = tun::RouteType::Unreachable, .metric = kill_switch_metric};
            if (tun.kill_switch) {
                auto added = nl.add_route(block);
                if (!added && added.error() != std::errc::file_exists)
                    check(added, "cannot add the kill switch's route \"unreachable " + r.to_string() + " metric " + std::to_string(kill_switch_metric) + "\"");
            } else if (nl.del_route(block)) {
                log_.info("kill switch off: removed \"unreachable ", r.to_string(), " metric ", kill_switch_metric, "\" left by an earlier run");
            }
        }
        if (tun.route_table) {
            const tun::Rule rule{.table = *tun.route_table, .priority = 0, .fwmark = *config_.transport.fwmark, .invert = true};
            auto added = nl.add_rule(rule);
            if (!added && added.error() != std::errc::file_exists)
                check(added, "cannot add rule \"not fwmark " + std::to_string(rule.fwmark) + " lookup " + std::to_string(rule.table) + "\"");
            if (added) rule_ = rule;
        }
    }

    void attach_link(std::uint32_t ifindex) override { device_ifindex_ = ifindex; }

    bool set_tun_mtu(std::size_t mtu) override {
        auto nl = tun::Netlink::open();
        auto r = nl ? nl->set_mtu(device_ifindex_, static_cast<std::uint32_t>(mtu)) : core::Result<void>(nl.error());
        if (!r) log_.error("cannot set the MTU of ", config_.tun.name, " to ", mtu, ": ", r.error().message());
        return static_cast<bool>(r);
    }

    std::vector<core::AddressChanged> present_addresses() override {
        std::vector<core::AddressChanged> out;
        auto nl = tun::Netlink::open();
        if (!nl) return out;
        auto addresses = nl->addresses();
        if (!addresses) {
            log_.warn("cannot list interface addresses: ", addresses.error().message());
            return out;
        }
        for (const auto& a : *addresses) out.push_back(core::AddressChanged{a.ifindex, a.prefix, true});
        return out;
    }

    void on_event(const core::RaisedEvent& e) override {
        if (const auto* inner = std::get_if<core::InnerAddressAssigned>(&e.event)) assign_inner_address(*inner);
        if (const auto* reg = std::get_if<core::RegistrationChanged>(&e.event)) follow_registration(*reg);
    }

private:
    void follow_registration(const core::RegistrationChanged& change) {
        using Kind = core::RegistrationChanged::Kind;
        switch (change.kind) {
            case Kind::HomeBinding:
                // A home agent's bindings become host routes into the TUN, so the kernel hands it
                // the packets for every mobile node that is away (and forgets them when it is home).
                follow_binding(change);
                announce_on_home_link(change, true);
                break;
            case Kind::OwnRegistration:
                follow_foreign_agent(change);
                if (!change.registered) announce_on_home_link(change, false);
                break;
            case Kind::Visitor:
                // A foreign agent serving its visitor link through a TUN routes each visitor into
                // it; on a packet-socket link the visitors are on-link already.
                if (!config_.inner_is_link) follow_binding(change);
                break;
        }
    }

    // RFC 5944 §4.2.2: registered through a foreign agent, the mobile node uses it as its
    // default router, on a link where it may have no address of its own.
    void follow_foreign_agent(const core::RegistrationChanged& change) {
        // Stacked Mobile IP layers each report their own registration: in RFC 5265 mode f both
        // i-MIP and x-MIP (during detection) may register through the intranet agent, in mode
        // fvc x-MIP through the agent and i-MIP, inside the tunnel, with the VPN's inner
        // address. The route stays while any layer's registration through an agent holds it;
        // the newest such registration says which agent.
        std::erase_if(agent_holders_, [&](const auto& h) { return h.first == change.home_address; });
        if (change.registered && !change.foreign_agent.is_unspecified() && change.link_ifindex != 0)
            agent_holders_.emplace_back(change.home_address, tun::Route{.destination = {core::Ipv4Address{0}, 0},
                                                                         .ifindex = change.link_ifindex,
                                                                         .gateway = change.foreign_agent, .onlink = true});
        std::optional<tun::Route> wanted;
        if (!agent_holders_.empty()) wanted = agent_holders_.back().second;
        if (wanted == agent_route_) return;
        auto nl = tun::Netlink::open();
        if (!nl) {
            log_.error("cannot open rtnetlink for the foreign agent route: ", nl.error().message());
            return;
        }
        if (agent_route_) {
            (void)nl->del_route(*agent_route_);
            log_.info("default route via foreign agent ", agent_route_->gateway ? agent_route_->gateway->to_string() : std::string("?"), " removed");
        }
        agent_route_.reset();
        if (!wanted) return;
        auto r = nl->add_route(*wanted);
        if (!r && r.error() != std::errc::file_exists) {
            log_.error("cannot route via foreign agent ", wanted->gateway->to_string(), ": ", r.error().message(), " ",
                       nl->last_error_detail());
            return;
        }
        agent_route_ = wanted;
        log_.info("default route via foreign agent ", wanted->gateway->to_string());
    }

    // RFC 5944 §4.6: while a mobile node is away its HA answers ARP for the home address on
    // the home link (proxy ARP: the kernel does it for addresses routed elsewhere) and says so
    // at once with a gratuitous ARP; back home, the mobile node takes the address back.
    void announce_on_home_link(const core::RegistrationChanged& change, bool home_agent) {
        if (change.link_ifindex == 0) return;
        if (home_agent && change.registered && !proxy_arp_on_.contains(change.link_ifindex)) {
            char name[IF_NAMESIZE] = {};
            if (::if_indextoname(change.link_ifindex, name) != nullptr) {
                if (write_sysctl(std::string("/proc/sys/net/ipv4/conf/") + name + "/proxy_arp", "1"))
                    proxy_arp_on_.insert(change.link_ifindex);
                else
                    log_.warn("cannot enable proxy ARP on ", name, ": hosts on the home link will not reach away mobile nodes");
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
        const tun::Route route{{change.home_address, 32}, device_ifindex_, {}, config_.tun.route_table, {}};
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
            (void)nl->del_address(device_ifindex_, host);
            inner_address_.reset();
            log_.info("inner address ", host.to_string(), " removed from ", config_.tun.name);
            return;
        }
        if (inner_address_) (void)nl->del_address(device_ifindex_, *inner_address_);
        auto r = nl->add_address(device_ifindex_, host);
        if (!r && r.error() != std::errc::file_exists) {
            log_.error("cannot add inner address ", host.to_string(), " to ", config_.tun.name, ": ", r.error().message());
            return;
        }
        inner_address_ = host;
        // Routes through the TUN were added before the address existed; re-adding is harmless.
        for (const auto& route : config_.tun.routes)
            (void)nl->add_route(tun::Route{route, device_ifindex_, {}, config_.tun.route_table, host.address});
        log_.info("inner address ", host.to_string(), " on ", config_.tun.name);
    }

    const NodeConfig& config_;
    core::Logger log_;
    std::uint32_t device_ifindex_ = 0;
    std::optional<core::Ipv4Prefix> inner_address_;
    std::optional<tun::Rule> rule_;
    std::optional<tun::Route> agent_route_;
    // Each home address registered through an agent, oldest first, with the route it wants.
    std::vector<std::pair<core::Ipv4Address, tun::Route>> agent_holders_;
    std::set<std::uint32_t> proxy_arp_on_;
};

}  // namespace

std::unique_ptr<HostNetwork> make_linux_host_network(const NodeConfig& config, core::Logger log) {
    return std::make_unique<LinuxHostNetwork>(config, std::move(log));
}

}  // namespace mipsec::shell
