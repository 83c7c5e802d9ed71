// SPDX-License-Identifier: MIT
#include "ipsec/gateway_client_table.hpp"

#include <algorithm>

namespace mipsec::ipsec {

GatewayClient* GatewayClientTable::find(std::uint64_t owner) noexcept {
    auto it = clients_.find(owner);
    return it == clients_.end() ? nullptr : &it->second;
}

const GatewayClient* GatewayClientTable::find(std::uint64_t owner) const noexcept {
    auto it = clients_.find(owner);
    return it == clients_.end() ? nullptr : &it->second;
}

GatewayClient& GatewayClientTable::entry(std::uint64_t owner) {
    auto& c = clients_[owner];
    c.owner = owner;
    return c;
}

GatewayClient* GatewayClientTable::by_inner(core::Ipv4Address inner) noexcept {
    auto it = by_inner_.find(inner);
    return it == by_inner_.end() ? nullptr : find(it->second);
}

GatewayClient* GatewayClientTable::by_spi(std::uint32_t spi) noexcept {
    auto it = by_spi_.find(spi);
    return it == by_spi_.end() ? nullptr : find(it->second);
}

void GatewayClientTable::add_spi(std::uint64_t owner, std::uint32_t spi) {
    auto& c = entry(owner);
    if (auto old = by_spi_.find(spi); old != by_spi_.end() && old->second != owner) {
        // SPIs are ours and unique while in use; a reused one leaves its previous holder.
        if (auto* prev = find(old->second)) std::erase(prev->spis, spi);
    }
    by_spi_[spi] = owner;
    if (std::find(c.spis.begin(), c.spis.end(), spi) == c.spis.end()) c.spis.push_back(spi);
    if (c.inner) by_inner_[*c.inner] = owner;
}

std::optional<std::uint64_t> GatewayClientTable::remove_spi(std::uint32_t spi) {
    auto it = by_spi_.find(spi);
    if (it == by_spi_.end()) return std::nullopt;
    const auto holder = it->second;
    by_spi_.erase(it);
    if (auto* c = find(holder)) {
        std::erase(c->spis, spi);
        // No SA left to protect traffic for its address: packets for it have no SA.
        if (c->spis.empty() && c->inner) drop_route(*c->inner, holder);
    }
    return holder;
}

void GatewayClientTable::erase(std::uint64_t owner) {
    auto it = clients_.find(owner);
    if (it == clients_.end()) return;
    // A re-authenticating client's new session may already own the inner address's route.
    const auto inner = it->second.inner;
    for (auto spi : it->second.spis) {
        auto s = by_spi_.find(spi);
        if (s != by_spi_.end() && s->second == owner) by_spi_.erase(s);
    }
    timers_.cancel(owner);
    clients_.erase(it);
    if (inner) drop_route(*inner, owner);
}

// The route leaves `owner` only. Another entry of the same client (its other IKE session
// during a re-authentication) may hold the address with SAs of its own: the route goes there,
// not nowhere. Without this, a Quick Mode the old IKE SA finished after the re-authentication
// took the route to the old entry, and deleting that entry left the address unrouted while
// the new session's SAs were alive. A linear scan: it runs only when an entry loses its last SA.
void GatewayClientTable::drop_route(core::Ipv4Address inner, std::uint64_t owner) {
    auto route = by_inner_.find(inner);
    if (route == by_inner_.end() || route->second != owner) return;
    by_inner_.erase(route);
    for (const auto& [other, c] : clients_)
        if (other != owner && c.inner == inner && !c.spis.empty()) {
            by_inner_[inner] = other;
            return;
        }
}

GatewayClientTable::HandOver GatewayClientTable::hand_over(std::uint64_t from, std::uint64_t to) {
    auto old = clients_.find(from);
    if (old == clients_.end()) return HandOver::None;
    GatewayClient& heir = entry(to);
    if (heir.esp) {
        old->second.orphaned = true;
        return HandOver::Kept;
    }
    GatewayClient& gone = old->second;
    heir.esp = std::move(gone.esp);
    heir.udp = std::move(gone.udp);
    heir.remote = gone.remote;
    if (!heir.inner) heir.inner = gone.inner;
    for (auto spi : gone.spis) {
        heir.spis.push_back(spi);
        by_spi_[spi] = to;
    }
    gone.spis.clear();
    heir.installs += gone.installs;
    if (heir.inner && !heir.spis.empty()) by_inner_[*heir.inner] = to;
    timers_.schedule(to, timers_.deadline_of(from));
    timers_.cancel(from);
    gone.orphaned = false;
    return HandOver::Moved;
}

bool GatewayClientTable::check() const {
    for (const auto& [spi, owner] : by_spi_) {
        const auto* c = find(owner);
        if (c == nullptr || std::count(c->spis.begin(), c->spis.end(), spi) != 1) return false;
    }
    std::size_t listed = 0;
    for (const auto& [owner, c] : clients_) {
        if (c.owner != owner) return false;
        for (auto spi : c.spis) {
            auto it = by_spi_.find(spi);
            if (it == by_spi_.end() || it->second != owner) return false;
        }
        listed += c.spis.size();
    }
    if (listed != by_spi_.size()) return false;
    // An address some entry holds with SAs is routed (to it or to another such entry).
    for (const auto& [owner, c] : clients_)
        if (c.inner && !c.spis.empty() && !by_inner_.contains(*c.inner)) return false;
    for (const auto& [inner, owner] : by_inner_) {
        const auto* c = find(owner);
        if (c == nullptr || c->inner != inner || c->spis.empty()) return false;
    }
    std::size_t timed = 0;
    for (const auto& [owner, c] : clients_) timed += timers_.contains(owner);
    return timed == timers_.size();
}

}  // namespace mipsec::ipsec
