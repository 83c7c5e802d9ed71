// SPDX-License-Identifier: MIT
#pragma once
// HostNetwork: everything a node changes on its host besides its own sockets and device — the
// TUN device's MTU, address, routes and policy rule; host routes that follow a home agent's
// bindings (and a TUN-served foreign agent's visitors); the default route via a foreign agent
// (RFC 5944 §4.2.2); proxy and gratuitous ARP on the home link (RFC 5944 §4.6); the VPN inner
// address. The node's I/O loop only hands it the pipeline's events, so the loop itself runs
// in a unit test over a recording fake, and the Linux side effects live in one place.
// Not thread-safe: the node's io_context thread.
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "apps/shell/node_config.hpp"
#include "core/events.hpp"
#include "core/logger.hpp"

namespace mipsec::shell {

class HostNetwork {
public:
    virtual ~HostNetwork() = default;
    /// Prepares the TUN device `ifindex` (MTU, address, up, routes, the fwmark policy rule).
    /// Throws std::runtime_error naming what failed and how to fix it.
    virtual void configure_tun(std::uint32_t ifindex, std::size_t mtu) = 0;
    /// The inner side is an existing link (a foreign agent's visitor link), left as it is.
    virtual void attach_link(std::uint32_t ifindex) = 0;
    /// Changes the TUN device's MTU (to fit a smaller path MTU); false if the host refused.
    virtual bool set_tun_mtu(std::size_t mtu) = 0;
    /// The addresses already on the host's interfaces, announced to the pipeline at start as if
    /// they had just appeared (stages that follow an interface learn their care-of address).
    virtual std::vector<core::AddressChanged> present_addresses() = 0;
    /// Follows an event the pipeline raised: bindings, registrations, inner addresses.
    virtual void on_event(const core::RaisedEvent& event) = 0;
};

/// The real host: rtnetlink, /proc/sys, a packet socket for ARP. Removes its policy rule when
/// destroyed (routes through the TUN die with the device).
std::unique_ptr<HostNetwork> make_linux_host_network(const NodeConfig& config, core::Logger log);

}  // namespace mipsec::shell
