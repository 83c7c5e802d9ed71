// SPDX-License-Identifier: MIT
#pragma once
// HomeAgent: the sans-I/O home agent registration core (RFC 5944 §3.8, RFC 3024 §4.3,
// RFC 3519 §4.1-4.4, RFC 2794). Takes a received Registration Request (UDP payload plus the
// IP and UDP addressing it arrived with) and the time, returns the reply to send (if any) and
// the binding change; poll(now) expires bindings and reports the next deadline. It never
// sends anything unprompted (RFC 5944 §3.8.3: no reply on expiry).
//
// With trusted networks configured (RFC 5265 §5, internal home agent), a request from any
// other IP source is dropped before anything else is looked at, and replies carry TNC.
// Validity checks run in the order of RFC 5944 §3.8.2.1 and §3.5: SA and MHAE present
// (else silent discard) -> MHAE authenticator (131) -> Identification (133, with resync value)
// -> FHAE (no HA-FA SAs: a request carrying one is discarded) -> broadcast destination or
// foreign Home Agent field (136) -> reserved bits / UDP tunnel request form (134) -> reverse
// tunnelling (137/138) and encapsulation (139) -> UDP tunnelling (129/142) -> resources (130).
// Only authenticated requests change state: a request for another node's home address or a
// tampered one never touches existing bindings or replay state. Every check before the MHAE
// is a length, a lookup or a comparison, so a flood costs at most one HMAC per packet; 131 and
// 133 replies are limited to one each per mobile node per `denial_reply_interval`, and once a
// 133 was sent, a request that could only earn another is discarded before its HMAC.
//
// One binding per home address; simultaneous bindings are not supported (S set => code 1,
// RFC 5944 §3.8.3). The caller verifies a non-zero UDP checksum (check 1) before process().
// Not thread-safe; one instance per home agent address. No global state.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/address.hpp"
#include "core/time.hpp"
#include "crypto/mac.hpp"
#include "crypto/random.hpp"
#include "mip/binding_store.hpp"
#include "mip/binding_table.hpp"
#include "mip/registration_wire.hpp"
#include "mip/security_association.hpp"

namespace mipsec::mip {

class HomeAgent {
public:
    /// A mobile node this home agent serves.
    struct MobileNodeConfig {
        core::Ipv4Address home_address;
        SecurityAssociation sa;
        std::string nai;  // optional: lets the MN register with home address 0.0.0.0 (RFC 2794)
    };

    struct Config {
        core::Ipv4Address address;        // the HA's unicast address (Home Agent field, outer source)
        core::Ipv4Prefix home_network;    // for recognising the subnet-directed broadcast (136)
        std::uint16_t max_lifetime = 1800;  // seconds; 0xFFFF allows infinite bindings
        bool reverse_tunnel_supported = true;
        bool reverse_tunnel_required = false;
        bool udp_tunnelling = true;         // RFC 3519 NAT traversal allowed
        bool udp_forcing_allowed = true;    // honour the F flag without NAT
        std::uint16_t keepalive_interval = 110;  // sent in the UDP Tunnel Reply; 0 = MN default
        std::uint16_t udp_max_lifetime = 0;      // extra cap for UDP bindings (RFC 3519 suggests 60); 0 = none
        std::chrono::seconds timestamp_tolerance{7};
        core::Duration ntp_offset{};        // see ntp_offset() in security_association.hpp
        std::size_t max_bindings = 1 << 20;
        // A flood of forged or replayed requests for a configured node: answering each (131,
        // 133) costs an HMAC and sends a reply to a source that may be spoofed. At most one 131
        // and one 133 per mobile node per interval; the rest are discarded without a reply
        // (AuthFailureUnanswered, IdentificationUnanswered), and a request whose
        // Identification cannot be accepted is then discarded before its HMAC is computed.
        // Zero: answer every one.
        core::Duration denial_reply_interval = std::chrono::seconds(1);
        // RFC 5265 §5 internal home agent: when non-empty, requests whose IP source lies
        // outside every prefix are silently discarded (UntrustedSource), and every reply to a
        // trusted source carries the TNC extension (149) before the MHAE. Empty (the default):
        // an ordinary home agent, no source filter, no TNC.
        std::vector<core::Ipv4Prefix> trusted_networks;
        std::vector<MobileNodeConfig> mobile_nodes;
    };

    /// How the request reached us (the UDP payload comes separately).
    struct Received {
        core::Ipv4Address ip_source;
        core::Ipv4Address ip_destination;
        std::uint16_t udp_source_port = 0;
        std::uint16_t udp_destination_port = registration_port;
    };

    /// Why a request was dropped without a reply (for counters and tests).
    enum class Discard : std::uint8_t {
        None,
        Malformed,          // not a request, truncated header or extension list
        UnknownExtension,   // unrecognised type 0-127 (RFC 5944 §3.8.3.1)
        UnknownMobileNode,  // no SA for this home address / NAI
        NoAuthExtension,    // no MHAE
        UnknownSpi,         // an MHAE whose SPI is not the mobile node's SA
        UnexpectedFhae,     // Foreign-Home auth present but no HA-FA SA
        CryptoFailure,      // HMAC unavailable
        UntrustedSource,    // IP source outside the configured trusted networks (RFC 5265 §5)
        AuthFailureUnanswered,     // bad MHAE within denial_reply_interval of the last 131
        IdentificationUnanswered,  // unacceptable Identification within denial_reply_interval of the last 133
    };

    enum class ChangeKind : std::uint8_t { None, Added, Updated, Removed };
    struct BindingChange {
        ChangeKind kind = ChangeKind::None;
        Binding binding;  // the new binding (Added/Updated) or the one removed
    };

    struct Outcome {
        Discard discard = Discard::None;
        std::optional<Message> reply;       // UDP payload to send back
        std::uint8_t code = 0;              // reply code when reply is set
        core::Endpoint reply_from;          // HA unicast address : request's destination port
        core::Endpoint reply_to;            // request's IP source : UDP source port
        BindingChange change;
        // Who asked, for logs: the home address (resolved from the NAI when it was 0.0.0.0),
        // the NAI bytes (a view into the request; empty if none) and the MHAE's SPI (0 if none).
        core::Ipv4Address home_address;
        std::span<const std::uint8_t> nai;
        std::uint32_t spi = 0;
    };

    /// What the data path needs for one home address.
    struct BindingInfo {
        core::Ipv4Address care_of_address;
        TunnelMode mode = TunnelMode::IpInIp;
        core::Endpoint udp_endpoint;  // where to send IP-in-UDP (NAT-observed); port 0 while half-bound
        bool reverse_tunnel = false;
        bool half_bound = false;
        core::TimePoint expires;
    };

    /// What reconfigure() changed, by home address (the NAI's key for an NAI-only node).
    struct Reconfigured {
        std::vector<core::Ipv4Address> added;
        std::vector<core::Ipv4Address> removed;
        std::vector<core::Ipv4Address> rekeyed;   // SPI, key or replay protection changed
        std::vector<Binding> bindings_removed;    // the removed mobile nodes' bindings
    };

    /// `random` supplies nonces; it must outlive the HomeAgent.
    HomeAgent(Config config, crypto::Random& random);

    /// Takes a new configuration while running (a reload). A mobile node no longer listed
    /// loses its SA and its binding (returned, for the caller to announce); a new one is
    /// served from its first request; a re-keyed one keeps its binding and replay state, and
    /// its next request must carry the new SPI and key. The other settings apply to the
    /// requests that follow. address, home_network and udp_tunnelling cannot change under
    /// existing bindings and the stage's headroom: the running ones are kept.
    Reconfigured reconfigure(Config config);
    std::size_t mobile_node_count() const noexcept { return mobile_nodes_.size(); }

    Outcome process(std::span<const std::uint8_t> request, const Received& from, core::TimePoint now);
    /// Expires bindings whose lifetime ended; removed bindings go to `expired` if given.
    /// Returns the next expiry.
    std::optional<core::TimePoint> poll(core::TimePoint now, std::vector<Binding>* expired = nullptr);
    std::optional<core::TimePoint> next_deadline() const noexcept { return bindings_.next_expiry(); }

    std::optional<BindingInfo> binding(core::Ipv4Address home_address) const noexcept;
    /// RFC 3519 §4.4, §4.11: a half-bound binding learns its tunnel endpoint from the
    /// first keepalive whose outer source address equals the registration's source address.
    bool complete_half_bound(core::Ipv4Address home_address, core::Endpoint keepalive_source) noexcept;
    const BindingTable& bindings() const noexcept { return bindings_; }
    BindingTable& bindings() noexcept { return bindings_; }
    const Config& config() const noexcept { return config_; }

    /// Restart support (binding_store.hpp): a mobile node's replay state, to store when it
    /// changed, and to put back before any request is processed. nullopt / false for a home
    /// address no mobile node is configured with.
    std::optional<ReplayState> replay_state(core::Ipv4Address home_address) const noexcept;
    bool restore_replay_state(core::Ipv4Address home_address, const ReplayState& state) noexcept;
    /// Puts back a stored binding (its `expires` already on this run's clock). Refused (false)
    /// when no such mobile node is configured any more, its lifetime ended by `now`, or the
    /// table is full; what is left is capped at today's max_lifetime.
    bool restore_binding(const Binding& binding, core::TimePoint now);

private:
    struct MobileNodeState {
        SecurityAssociation sa;
        std::uint64_t last_accepted_id = 0;  // timestamps: strictly increasing
        std::uint32_t nonce = 0;             // nonces: the HA nonce the next request must carry
        bool nonce_valid = false;
        bool ever_accepted = false;
        std::optional<core::TimePoint> last_auth_failure_reply;  // when a 131 was last sent
        std::optional<core::TimePoint> last_mismatch_reply;      // when a 133 was last sent
    };

    Outcome reply(Outcome out, MobileNodeState& mn, core::Ipv4Address home, std::uint8_t code,
                  std::uint16_t lifetime, std::uint64_t identification, const ScannedExtensions& ext,
                  const std::optional<UdpTunnelReply>& tunnel_reply);
    bool source_trusted(core::Ipv4Address source) const noexcept;
    bool identification_valid(const MobileNodeState& mn, std::uint64_t id, core::TimePoint now) const noexcept;

    Config config_;
    crypto::Random& random_;
    // One HMAC-MD5 context re-keyed per message (RFC 5944 §5.1 MHAE) rather than one built per
    // message; null if OpenSSL could not make one (then each message builds its own).
    std::unique_ptr<crypto::Mac> hmac_;
    std::unordered_map<std::uint32_t, MobileNodeState> mobile_nodes_;  // by home address
    std::unordered_map<std::string, std::uint32_t> nai_to_home_;
    BindingTable bindings_;
};

}  // namespace mipsec::mip
