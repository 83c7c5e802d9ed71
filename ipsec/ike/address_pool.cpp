// SPDX-License-Identifier: MIT
#include "ipsec/ike/address_pool.hpp"

namespace mipsec::ipsec::ike {

AddressPool::AddressPool(core::Ipv4Prefix range) { set_range(range); }

std::size_t AddressPool::set_range(core::Ipv4Prefix range) {
    range_ = range;
    std::uint32_t net = range.network().value;
    std::uint32_t last = net | ~range.mask();
    if (range.length < 31) {
        first_ = net + 1;
        last_ = last - 1;
    } else {
        first_ = net;
        last_ = last;
    }
    return leased_outside_range();
}

std::size_t AddressPool::leased_outside_range() const noexcept {
    std::size_t outside = 0;
    for (const auto& [address, lease] : by_address_)
        if (address < first_ || address > last_) ++outside;
    return outside;
}

std::optional<core::Ipv4Address> AddressPool::acquire(std::uint64_t owner, std::optional<core::Ipv4Address> wanted,
                                                      std::string_view identity) {
    if (auto it = by_owner_.find(owner); it != by_owner_.end()) return core::Ipv4Address{it->second};
    std::optional<std::uint32_t> pick;
    if (wanted && wanted->value >= first_ && wanted->value <= last_) {
        auto held = by_address_.find(wanted->value);
        if (held == by_address_.end() || (!identity.empty() && held->second.identity == identity)) pick = wanted->value;
    }
    for (std::uint64_t a = first_; !pick && a <= last_; ++a)
        if (free(static_cast<std::uint32_t>(a))) pick = static_cast<std::uint32_t>(a);
    if (!pick) return std::nullopt;
    by_owner_[owner] = *pick;
    auto& lease = by_address_[*pick];
    if (lease.holders == 0) lease.identity = std::string(identity);
    ++lease.holders;
    return core::Ipv4Address{*pick};
}

void AddressPool::release(std::uint64_t owner) {
    auto it = by_owner_.find(owner);
    if (it == by_owner_.end()) return;
    auto lease = by_address_.find(it->second);
    if (lease != by_address_.end() && --lease->second.holders == 0) by_address_.erase(lease);
    by_owner_.erase(it);
}

std::optional<core::Ipv4Address> AddressPool::lease_of(std::uint64_t owner) const {
    auto it = by_owner_.find(owner);
    if (it == by_owner_.end()) return std::nullopt;
    return core::Ipv4Address{it->second};
}

}  // namespace mipsec::ipsec::ike
