// SPDX-License-Identifier: MIT
#pragma once
// SessionConfig: the policy one IKEv1 peer applies to its sessions (either role). Shared
// read-only between a Responder and every Session it creates (std::shared_ptr<const>), so
// the PSKs exist once. Defaults are strongSwan's (swanctl.opt): retransmission 4 s x 1.8^n,
// 5 retransmits; IKE lifetime 15840 s, child lifetime 3960 s with rekey at 3600 s.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/address.hpp"
#include "core/time.hpp"
#include "crypto/diffie_hellman.hpp"
#include "crypto/secret_bytes.hpp"
#include "ipsec/ike/payloads.hpp"
#include "ipsec/ike/proposals.hpp"

namespace mipsec::ipsec::ike {

/// A pre-shared key for peers whose IKE address lies in `peer` (nullopt: any peer). Main Mode
/// with PSK must pick the key by address, before IDii is decrypted (RFC 2409 §5.4).
struct PskEntry {
    std::optional<core::Ipv4Prefix> peer;
    crypto::SecretBytes key;

    PskEntry(std::optional<core::Ipv4Prefix> p, crypto::SecretBytes k) : peer(p), key(std::move(k)) {}
    // Copyable on purpose (a re-authentication runs with a copy of the session settings);
    // each copy wipes its own key when it goes.
    PskEntry(const PskEntry& o) : peer(o.peer), key(o.key.clone()) {}
    PskEntry& operator=(const PskEntry& o) {
        if (this != &o) {
            peer = o.peer;
            key = o.key.clone();
        }
        return *this;
    }
    PskEntry(PskEntry&&) noexcept = default;
    PskEntry& operator=(PskEntry&&) noexcept = default;
};

struct RetransmitPolicy {
    core::Duration timeout = std::chrono::seconds(4);
    double base = 1.8;
    unsigned retransmits = 5;  // after the first send; then the exchange fails
    /// Upper bound on any one delay, zero for none (strongSwan's charon.retransmit_limit).
    core::Duration limit = core::Duration::zero();
    /// Delay before retransmission number n (0 = wait after the first send).
    core::Duration delay(unsigned n) const;
    /// Total time from the first send until give-up.
    core::Duration give_up_after() const;
    /// This schedule with no delay longer than `max_delay`, and as many more retransmissions
    /// as it takes to give up no sooner than it did: a message lost several times in a row is
    /// tried again within `max_delay`, a peer that is gone is still given as long.
    RetransmitPolicy limited_to(core::Duration max_delay) const;
};

struct SessionConfig {
    // ---- phase 1
    IdPayload local_id = IdPayload::fqdn("mipsec");  // ID_FQDN or ID_IPV4_ADDR, protocol/port 0
    std::optional<IdPayload> remote_id;              // nullopt: accept any authenticated peer ID
    std::vector<PskEntry> psks;
    std::vector<IkeProposal> ike_proposals{IkeProposal{}};
    bool nat_traversal = true;            // send the RFC 3947 VID and NAT-D payloads
    bool force_udp_encapsulation = false; // fake our NAT-D (strongSwan encap=yes)
    bool dpd = true;                      // send the RFC 3706 VID, answer R-U-THERE
    bool send_initial_contact = true;     // initiator: N(INITIAL-CONTACT) in MM5
    std::uint16_t ike_port = 500;
    std::uint16_t nat_t_port = 4500;

    // ---- phase 2
    std::vector<EspProposal> esp_proposals{EspProposal{}};
    std::optional<crypto::ModpGroup> pfs_group;  // KE in Quick Mode with this group
    /// Initiator: our side (IDci) when no virtual IP is requested (nullopt: our IKE address).
    /// Responder: the networks we protect; an IDcr must lie inside one of them.
    std::vector<core::Ipv4Prefix> local_ts;
    /// Initiator: the peer side (IDcr). Responder: unused (IDci is checked against the lease,
    /// or accepted as offered when there is no address pool).
    core::Ipv4Prefix remote_ts{core::Ipv4Address{0}, 0};
    core::Duration child_rekey_time = std::chrono::seconds(3600);  // zero: never rekey

    // ---- Mode Config (draft-dukes-ike-mode-cfg, pull)
    bool request_virtual_ip = false;  // initiator: CFG_REQUEST before Quick Mode
    bool request_dns = false;
    bool request_netmask = false;
    std::vector<core::Ipv4Address> dns_servers;   // responder: answered when requested
    std::optional<core::Ipv4Address> netmask;     // responder: answered when requested

    // ---- timers
    RetransmitPolicy retransmit;
    core::Duration dpd_delay = core::Duration::zero();  // zero: no R-U-THERE of our own
    // Unanswered R-U-THEREs for this long declare the peer dead, even if the retransmission
    // schedule would still go on (it runs ~165 s by default). strongSwan's IKEv1 default.
    core::Duration dpd_timeout = std::chrono::seconds(150);
    core::Duration half_open_timeout = std::chrono::seconds(30);

    /// The PSK for a peer address, or nullptr.
    const crypto::SecretBytes* psk_for(core::Ipv4Address peer) const noexcept;
};

}  // namespace mipsec::ipsec::ike
