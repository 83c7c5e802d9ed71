// SPDX-License-Identifier: MIT
#pragma once
// BindingTable: the home agent's mobility bindings (RFC 5944 §3.8.2), one per home address.
//
// Layout, chosen for a million bindings at well under 200 bytes each:
//  * records sit densely in one vector (swap-remove keeps it dense);
//  * an open-addressing index (linear probing, backward-shift deletion, load <= 1/2) maps a
//    home address to its record in O(1): 8 bytes per slot;
//  * a binary min-heap of record indices ordered by expiry drives timers; each record knows
//    its heap position, so renewal and removal are O(log n) with no stale entries.
// Nothing is allocated per binding beyond amortised vector growth. Not thread-safe.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/address.hpp"
#include "core/time.hpp"

namespace mipsec::mip {

enum class TunnelMode : std::uint8_t { IpInIp, Udp };

/// One binding. `udp_endpoint` is the NAT-observed source of the registration (RFC 3519 §5.1)
/// and is meaningful only in UDP mode; a half-bound binding (R flag, RFC 3519 §3.1.2, §4.11) still
/// waits for the first keepalive to learn its port.
struct Binding {
    core::Ipv4Address home_address;
    core::Ipv4Address care_of_address;
    core::Endpoint udp_endpoint;
    core::TimePoint expires = core::TimePoint::max();
    std::uint64_t identification = 0;
    std::uint16_t lifetime = 0;            // granted, seconds
    std::uint16_t keepalive_interval = 0;  // UDP mode, as sent in the Tunnel Reply
    TunnelMode mode = TunnelMode::IpInIp;
    bool reverse_tunnel = false;
    bool broadcast = false;
    bool half_bound = false;
};

class BindingTable {
public:
    BindingTable() = default;

    std::size_t size() const noexcept { return records_.size(); }
    bool empty() const noexcept { return records_.empty(); }
    void reserve(std::size_t n);

    const Binding* find(core::Ipv4Address home) const noexcept;
    Binding* find(core::Ipv4Address home) noexcept;
    /// Inserts or replaces the binding for b.home_address and (re)schedules its expiry.
    Binding& upsert(const Binding& b);
    /// Changes only the expiry of an existing binding; false if there is none.
    bool reschedule(core::Ipv4Address home, core::TimePoint expires) noexcept;
    bool erase(core::Ipv4Address home) noexcept;

    /// Earliest expiry, or nullopt when empty (or all infinite).
    std::optional<core::TimePoint> next_expiry() const noexcept;
    /// Removes every binding with expires <= now, calling on_expired(const Binding&) for each
    /// before it goes; returns how many were removed.
    template <class F>
    std::size_t expire(core::TimePoint now, F&& on_expired) {
        std::size_t n = 0;
        while (!heap_.empty() && records_[heap_[0]].binding.expires <= now) {
            const Binding gone = records_[heap_[0]].binding;
            remove_at(heap_[0]);
            on_expired(gone);
            ++n;
        }
        return n;
    }
    /// Calls f(const Binding&) for every binding, in no particular order.
    template <class F>
    void for_each(F&& f) const {
        for (const auto& r : records_) f(r.binding);
    }

    /// Bytes held by the table's containers (capacity, not size): for the memory budget.
    std::size_t memory_bytes() const noexcept;

private:
    static constexpr std::uint32_t empty_slot = 0xFFFFFFFFu;
    struct Slot {
        std::uint32_t key = 0;  // home address
        std::uint32_t index = empty_slot;
    };
    struct Record {
        Binding binding;
        std::uint32_t heap_pos = 0;
    };

    std::size_t ideal(std::uint32_t key) const noexcept;
    std::size_t find_slot(std::uint32_t key) const noexcept;  // slot holding key, or slots_.size()
    void grow();
    void remove_at(std::uint32_t index) noexcept;
    void erase_slot(std::size_t slot) noexcept;
    bool before(std::uint32_t a, std::uint32_t b) const noexcept {
        return records_[a].binding.expires < records_[b].binding.expires;
    }
    void heap_set(std::size_t pos, std::uint32_t index) noexcept {
        heap_[pos] = index;
        records_[index].heap_pos = static_cast<std::uint32_t>(pos);
    }
    void sift_up(std::size_t pos) noexcept;
    void sift_down(std::size_t pos) noexcept;
    void fix(std::size_t pos) noexcept;

    std::vector<Record> records_;
    std::vector<Slot> slots_;
    std::vector<std::uint32_t> heap_;
    std::size_t mask_ = 0;
    unsigned shift_ = 32;
};

}  // namespace mipsec::mip
