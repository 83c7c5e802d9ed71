// SPDX-License-Identifier: MIT
#pragma once
// ChildSaSet: the CHILD_SAs of one IKE SA and the rules IKEv1 leaves to the peers, since
// Quick Mode has no rekey or collision handling of its own (RFC 2409 §5.5):
//   * our rekey finished: the new SA is ready to carry our traffic, the old one stays for
//     `rekeyed_grace` (both ways: the peer may not have our QM3 yet), then goes
//     (make-before-break);
//   * a Quick Mode we answer with a live SA's selectors is the peer rekeying that SA (as
//     strongSwan judges it): the old SA stops being rekeyed and goes after `peer_rekeyed_grace`;
//   * both peers rekeyed one SA at once (or the peer's rekey arrives within `fresh_window` of
//     ours finishing): of the two new SAs both peers keep the one whose Quick Mode had the
//     higher lowest nonce (RFC 7296 §2.8.1's rule); the other stays inbound-only until the grace
//     ends;
//   * due(): which SAs are past their lifetime or grace, which are due for our rekey.
// Values in, decisions out: no crypto, no I/O, no clock. The Session sends the Deletes and Quick
// Modes and raises the events. Not thread-safe.
#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/time.hpp"
#include "ipsec/ike/child_sa.hpp"

namespace mipsec::ipsec::ike {

class ChildSaSet {
public:
    /// How long the losing SA of a rekey collision keeps accepting packets the peer sent
    /// before it switched: a few round trips.
    static constexpr core::Duration superseded_grace = std::chrono::seconds(5);
    /// How long an SA our own rekey replaced stays. The peer installs the new pair only when
    /// our QM3 reaches it (RFC 2409 §5.5), and a lost QM3 goes again only when the peer
    /// repeats QM2: 4 s, then 7.2 s later on the usual schedule (ours and strongSwan's). Until
    /// the peer shows it holds the new pair the old one is the only pair both ends hold, so it
    /// outlives both repetitions (EspTunnelStage::outbound_confirmation_wait is shorter).
    static constexpr core::Duration rekeyed_grace = std::chrono::seconds(15);
    /// An SA the peer rekeyed waits longer, so that a peer deleting after rekeyed_grace (as
    /// we do) sends its Delete first and both do not delete the same SA.
    static constexpr core::Duration peer_rekeyed_grace = 2 * rekeyed_grace;

    struct Installed {
        std::optional<std::uint32_t> replaces;  // spi_in of the SA the new one rekeys
        bool inbound_only = false;              // it lost a rekey collision: do not send on it
        bool collision = false;                 // both peers rekeyed one SA at once
    };
    /// Adds a negotiated SA installed at `now`. `replaces`: the spi_in our own rekey targeted
    /// (nullopt for a fresh SA or one the peer started). A peer's Quick Mode arriving within
    /// `fresh_window` of our own rekey finishing is treated as a collision with it.
    Installed install(ChildSa child, std::optional<std::uint32_t> replaces, core::TimePoint now,
                      core::Duration fresh_window);
    /// Takes over SAs of an ended IKE SA; one whose selectors a live SA covers goes after the grace.
    void adopt(std::vector<ChildSa> children, core::TimePoint now);

    void rekey_started(std::uint32_t spi_in);
    bool rekeying(std::uint32_t spi_in) const noexcept;
    /// Our rekey of `spi_in` failed. If the peer rekeyed it meanwhile, that SA replaces it.
    void rekey_abandoned(std::uint32_t spi_in, core::TimePoint now);

    struct Due {
        std::vector<std::uint32_t> expired;   // spi_in: past the lifetime or the grace, delete now
        std::vector<std::uint32_t> to_rekey;  // spi_in: past the soft lifetime, start our rekey
        std::optional<core::TimePoint> next;  // the next deadline of what is not due yet
    };
    Due due(core::TimePoint now) const;

    const ChildSa* find(std::uint32_t spi_in) const noexcept;
    ChildSa* find(std::uint32_t spi_in) noexcept;
    /// The SA a peer's Delete names: the sender names its inbound SPI (our spi_out, as
    /// strongSwan's quick_delete.c sends it), though some peers name ours.
    const ChildSa* find_named_by_peer(std::uint32_t spi) const noexcept;
    /// Removes it (and any rekey of it under way).
    std::optional<ChildSa> remove(std::uint32_t spi_in);
    /// Removes every SA (the IKE SA ended).
    std::vector<ChildSa> take_all();

    /// An SA that is not superseded exists: traffic has an SA to use.
    bool has_live() const noexcept;
    bool empty() const noexcept { return children_.empty(); }
    const std::vector<ChildSa>& all() const noexcept { return children_; }

private:
    std::vector<ChildSa> children_;
    std::vector<std::uint32_t> rekeying_;  // spi_in of children with our rekey under way
};

}  // namespace mipsec::ipsec::ike
