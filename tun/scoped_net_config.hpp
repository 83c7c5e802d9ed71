// SPDX-License-Identifier: MIT
#pragma once
// ScopedNetConfig: addresses and routes added through it are removed again, newest first,
// when it is destroyed, so a start-up that fails half-way leaves nothing half-configured and
// a clean shutdown takes its configuration with it. What already existed (the add failed
// with EEXIST) is not recorded: it is not ours to remove. dismiss() keeps everything.
// Removal errors in the destructor are ignored (an interface that vanished took its addresses
// and routes with it); call undo() to see them.
// Holds a reference to a Netlink that must outlive it. Not thread-safe.
#include <cstdint>
#include <variant>
#include <vector>

#include "core/address.hpp"
#include "core/result.hpp"
#include "tun/netlink.hpp"

namespace mipsec::tun {

class ScopedNetConfig {
public:
    explicit ScopedNetConfig(Netlink& netlink) noexcept : netlink_(&netlink) {}
    ScopedNetConfig(ScopedNetConfig&& other) noexcept;
    ScopedNetConfig& operator=(ScopedNetConfig&&) = delete;
    ScopedNetConfig(const ScopedNetConfig&) = delete;
    ScopedNetConfig& operator=(const ScopedNetConfig&) = delete;
    ~ScopedNetConfig();

    core::Result<void> add_address(std::uint32_t ifindex, core::Ipv4Prefix prefix);
    core::Result<void> add_route(const Route& route);
    /// Removes everything recorded, newest first; tries all and returns the first error.
    core::Result<void> undo();
    /// Forgets everything recorded: it stays configured.
    void dismiss() noexcept { entries_.clear(); }
    std::size_t size() const noexcept { return entries_.size(); }

private:
    struct Address {
        std::uint32_t ifindex;
        core::Ipv4Prefix prefix;
    };
    Netlink* netlink_;
    std::vector<std::variant<Address, Route>> entries_;
};

}  // namespace mipsec::tun
