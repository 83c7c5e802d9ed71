// SPDX-License-Identifier: MIT
#pragma once
// AddressPool: virtual IPv4 addresses a gateway hands out through Mode Config, one lease per
// owner (a Session), released when the owner's IKE SA ends. Addresses come from `range`
// (network and broadcast addresses excluded for prefixes shorter than /31), lowest free
// first, like strongSwan's mem_pool (10.99.100.0/24 -> .1 first). A client asking for its
// previous address gets it back if it is free — or if it is held by the same peer identity:
// a client re-authenticating (a new IKE SA before the old one is deleted) keeps its address,
// shared by both sessions until the older one ends. Not thread-safe.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/address.hpp"

namespace mipsec::ipsec::ike {

class AddressPool {
public:
    explicit AddressPool(core::Ipv4Prefix range);

    /// The owner's address (the existing lease, `wanted` if free and in range, else the lowest
    /// free one); nullopt when the pool is exhausted.
    /// `identity` (the peer's authenticated ID, any bytes; empty: none) lets an owner share the
    /// wanted address with another owner of the same identity.
    std::optional<core::Ipv4Address> acquire(std::uint64_t owner, std::optional<core::Ipv4Address> wanted = std::nullopt,
                                             std::string_view identity = {});
    void release(std::uint64_t owner);
    std::optional<core::Ipv4Address> lease_of(std::uint64_t owner) const;
    std::size_t leased() const noexcept { return by_address_.size(); }
    std::size_t capacity() const noexcept { return last_ >= first_ ? last_ - first_ + 1 : 0; }
    core::Ipv4Prefix range() const noexcept { return range_; }
    /// Hands out addresses from `range` from now on (a reload). Existing leases stay with
    /// their owners wherever they lie, so no client loses its address under a live SA; one
    /// outside the new range is never handed out again once released, and an owner asking for
    /// it back (a re-authentication) gets an address of the new range. Returns how many
    /// leased addresses lie outside the new range.
    std::size_t set_range(core::Ipv4Prefix range);
    /// Leased addresses outside range() (left from before a set_range()).
    std::size_t leased_outside_range() const noexcept;

private:
    bool free(std::uint32_t a) const { return !by_address_.contains(a); }
    core::Ipv4Prefix range_;
    std::uint32_t first_;
    std::uint32_t last_;
    struct Lease {
        std::string identity;
        std::size_t holders = 0;
    };
    std::map<std::uint64_t, std::uint32_t> by_owner_;
    std::map<std::uint32_t, Lease> by_address_;
};

}  // namespace mipsec::ipsec::ike
