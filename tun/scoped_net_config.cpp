// SPDX-License-Identifier: MIT
#include "tun/scoped_net_config.hpp"

#include <utility>

namespace mipsec::tun {

ScopedNetConfig::ScopedNetConfig(ScopedNetConfig&& other) noexcept
    : netlink_(other.netlink_), entries_(std::exchange(other.entries_, {})) {}

ScopedNetConfig::~ScopedNetConfig() { (void)undo(); }

core::Result<void> ScopedNetConfig::add_address(std::uint32_t ifindex, core::Ipv4Prefix prefix) {
    auto r = netlink_->add_address(ifindex, prefix);
    if (r) entries_.emplace_back(Address{ifindex, prefix});
    return r;
}

core::Result<void> ScopedNetConfig::add_route(const Route& route) {
    auto r = netlink_->add_route(route);
    if (r) entries_.emplace_back(route);
    return r;
}

core::Result<void> ScopedNetConfig::undo() {
    core::Result<void> first;
    // Newest first: a route may depend on an address added before it (its preferred source
    // or the connected route to its gateway).
    while (!entries_.empty()) {
        auto entry = std::move(entries_.back());
        entries_.pop_back();
        core::Result<void> r;
        if (auto* a = std::get_if<Address>(&entry)) {
            r = netlink_->del_address(a->ifindex, a->prefix);
        } else {
            r = netlink_->del_route(std::get<Route>(entry));
        }
        if (!r && first) first = r;
    }
    return first;
}

}  // namespace mipsec::tun
