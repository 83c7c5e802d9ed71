// SPDX-License-Identifier: MIT
#include "ipsec/ike/address_pool.hpp"

namespace mipsec::ipsec::ike {

AddressPool::AddressPool(core::Ipv4Prefix range) : range_(range) {
    std::uint32_t net = range.network().value;
    std::uint32_t last = net | ~range.mask();
    if (range.length < 31) {
        first_ = net + 1;
        last_ = last - 1;
    } else {
        first_ = net;
        last_ = last;
    }
}

std::optional<core::Ipv4Address> AddressPool::acquire(std::uint64_t owner, std::optional<core::Ipv4Address> wanted) {
    if (auto it = by_owner_.find(owner); it != by_owner_.end()) return core::Ipv4Address{it->second};
    std::optional<std::uint32_t> pick;
    if (wanted && wanted->value >= first_ && wanted->value <= last_ && free(wanted->value)) pick = wanted->value;
    for (std::uint64_t a = first_; !pick && a <= last_; ++a)
        if (free(static_cast<std::uint32_t>(a))) pick = static_cast<std::uint32_t>(a);
    if (!pick) return std::nullopt;
    by_owner_[owner] = *pick;
    by_address_[*pick] = owner;
    return core::Ipv4Address{*pick};
}

void AddressPool::release(std::uint64_t owner) {
    auto it = by_owner_.find(owner);
    if (it == by_owner_.end()) return;
    by_address_.erase(it->second);
    by_owner_.erase(it);
}

std::optional<core::Ipv4Address> AddressPool::lease_of(std::uint64_t owner) const {
    auto it = by_owner_.find(owner);
    if (it == by_owner_.end()) return std::nullopt;
    return core::Ipv4Address{it->second};
}

}  // namespace mipsec::ipsec::ike
