// SPDX-License-Identifier: MIT
#pragma once
// GatewayClientTable: the VPN gateway's clients, one per IKE session owner (Responder's
// TaggedEvent::session), each with its own ESP tunnel (and RFC 3948 UDP encapsulation when
// its IKE negotiation asked for it), found three ways:
//   * by owner id (IKE events);
//   * by inner address (packets from the protected network, RFC 4301 §5.1 outbound lookup);
//   * by our inbound SPI (ESP from the client, RFC 4303 §2.1).
// Invariants (check() verifies them; tests rely on it):
//   * every indexed SPI belongs to exactly the client that lists it in `spis`, and back;
//   * an inner address routes to a client holding that address and at least one SA; when a
//     re-authenticating client's new session installs an SA, the route moves to it and the old
//     entry (still listing the address) no longer routes; when the routing entry loses its
//     last SA or goes, the route moves to another entry with that address and SAs, if any;
//   * each client's ESP deadline (SA lifetimes) is in the timer queue under its owner, and an
//     erased or handed-over client leaves no index entry or timer behind.
// Not thread-safe.
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/address.hpp"
#include "core/deadline_queue.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "nat/udp_encap_stage.hpp"

namespace mipsec::ipsec {

struct GatewayClient {
    std::uint64_t owner = 0;
    std::unique_ptr<EspTunnelStage> esp;
    std::unique_ptr<nat::UdpEncapStage> udp;  // set when its CHILD_SA uses UDP encapsulation
    std::optional<core::Ipv4Address> inner;   // its Mode Config lease
    core::Endpoint remote;                    // where its ESP comes from (NAT endpoint with NAT-T)
    std::vector<std::uint32_t> spis;          // our inbound SPIs of its SAs
    std::uint64_t installs = 0;
    bool orphaned = false;  // its IKE SA ended; its ESP SAs wait for the client's next one
};

class GatewayClientTable {
public:
    enum class HandOver : std::uint8_t {
        None,   // `from` has no entry
        Moved,  // `to` took over from's ESP tunnel, SPIs, route and timer; `from` is empty
        Kept,   // `to` has an ESP tunnel of its own: `from` keeps its SAs, marked orphaned
    };

    std::size_t size() const noexcept { return clients_.size(); }
    GatewayClient* find(std::uint64_t owner) noexcept;
    const GatewayClient* find(std::uint64_t owner) const noexcept;
    /// The entry for `owner`, created empty if there is none.
    GatewayClient& entry(std::uint64_t owner);
    /// The client an inner destination routes to, or nullptr.
    GatewayClient* by_inner(core::Ipv4Address inner) noexcept;
    /// The client holding our inbound SPI, or nullptr.
    GatewayClient* by_spi(std::uint32_t spi) noexcept;

    /// Records an inbound SA the owner's ESP tunnel now holds; the owner's inner address (if
    /// known) routes to it from now on.
    void add_spi(std::uint64_t owner, std::uint32_t spi);
    /// Forgets an inbound SPI; the owner that held it, or nullopt if none did. A client left
    /// without SAs no longer routes its inner address.
    std::optional<std::uint64_t> remove_spi(std::uint32_t spi);
    /// Removes the client, its SPIs, its route (if it still has it) and its timer.
    void erase(std::uint64_t owner);
    /// The client re-authenticated: its old session `from`'s ESP state passes to `to`.
    HandOver hand_over(std::uint64_t from, std::uint64_t to);

    /// Files the owner's next ESP deadline (nullopt: none).
    void schedule(std::uint64_t owner, std::optional<core::TimePoint> at) { timers_.schedule(owner, at); }
    /// One owner whose deadline is <= now (removed from the queue; schedule it again after its poll).
    std::optional<std::uint64_t> pop_due(core::TimePoint now) { return timers_.pop_due(now); }
    std::optional<core::TimePoint> next_deadline() const noexcept { return timers_.next(); }
    std::size_t timer_count() const noexcept { return timers_.size(); }

    /// Calls f(const GatewayClient&) for each client, in no particular order.
    template <class F>
    void for_each(F&& f) const {
        for (const auto& [owner, c] : clients_) f(c);
    }
    /// True when every invariant in the file comment holds (O(n); for tests).
    bool check() const;

private:
    void drop_route(core::Ipv4Address inner, std::uint64_t owner);

    std::unordered_map<std::uint64_t, GatewayClient> clients_;       // by IKE session owner id
    std::unordered_map<core::Ipv4Address, std::uint64_t> by_inner_;  // inner address -> owner
    std::unordered_map<std::uint32_t, std::uint64_t> by_spi_;        // our inbound SPI -> owner
    core::DeadlineQueue<std::uint64_t> timers_;                      // owner -> next ESP deadline
};

}  // namespace mipsec::ipsec
