// SPDX-License-Identifier: MIT
#pragma once
// ForeignAgent: the sans-I/O foreign agent core (RFC 5944 §2.3, §3.7; RFC 3024 §4.1). It
// advertises itself, answers solicitations, relays Registration Requests from visiting mobile
// nodes to their home agents and the replies back, and keeps the visitor list the data path
// (ForeignAgentStage) consults. Inputs are UDP payloads / ICMP facts with their addressing and
// the time; outputs are datagrams to send (toward the visitor link or toward a home agent),
// advertisements, and visitor-list changes. One thing per call; next_deadline() says when to
// poll() again.
//
// Request checks, in order (codes from RFC 5944 §3.4 and RFC 3024 §3.4):
//   header/extension list unreadable, no Mobile-Home auth extension, reserved flag bits -> 70;
//   T set and IP TTL != 255 -> 76 (at most one per second, RFC 3024 §3.3; else discarded);
//   T set but reverse tunnelling not offered -> 74; T clear but required -> 75;
//   Encapsulating Delivery Style extension -> 79 (only Direct Delivery is implemented);
//   M or G -> 72 (IP-in-IP only); D clear and a CoA that is not ours -> 77;
//   lifetime above the advertised maximum -> 69 (carrying the maximum);
//   Home Agent 0.0.0.0 -> 98, broadcast/multicast -> 194; visitor list or pending list full -> 66.
// Extensions up to and including the MHAE are relayed unchanged (RFC 5944 §3.7.2.2: the FA
// MUST NOT modify them); FA-only extensions after it are stripped. An unknown non-skippable
// extension after the MHAE discards the request. The relayed request leaves from the care-of
// address (the first advertised one for a co-located CoA registered through us), port
// `relay_port`. Replies are matched on (home address, low 32 bits of Identification) and must
// come from the request's home agent; what follows their MHAE (e.g. Foreign-Home auth) is
// stripped. Denials we generate carry no authenticator: there is no MN-FA SA.
//
// RFC 3519 with the home agent (`home_agent_udp_tunnelling`, for an FA behind a NAT): the
// relayed request of a visitor with the FA's care-of address (D clear, lifetime > 0) gets a UDP
// Tunnel Request extension appended after the MHAE (RFC 3519 §3.1: the FA's place; F set when
// Forced). Only an accepting reply with an assenting UDP Tunnel Reply (wherever the HA put it,
// RFC 3519 §3.2) makes the visitor's tunnel IP-in-UDP; no Tunnel Reply, or a declining one,
// leaves it IP-in-IP. In UDP mode a keepalive (ICMP echo request home address -> HA inside the
// tunnel, RFC 3519 §3.6) is due whenever nothing went to the HA for the visitor for K seconds
// (the reply's Keepalive Interval, else `keepalive_default`; never below 10 s), the first one no
// earlier than K after the relayed request: the FA is the NAT-inside end, so it keeps the
// mapping alive. Unanswered ones are counted per visitor; only the MN's next registration
// (which the FA relays from the same port) can repair a lost mapping.
//
// Advertisements: ICMP 9 with a Mobility Agent Advertisement Extension (F, and T/U/R/B/H as
// configured), TTL 1, to 224.0.0.1 every `advertisement_interval` (at most Lifetime/3,
// randomised by ±`advertisement_jitter`), and to a soliciting node on request, at most one per
// `solicited_min_interval`: solicitations inside it are held back (RateLimited) and answered
// together by one advertisement to 224.0.0.1 when it ends, so a flood is never amplified and a
// visitor soliciting during one still hears an agent within the interval. Sequence
// numbers start at 0 and wrap from 0xFFFF to 256 (RFC 5944 §2.3.1).
// Not thread-safe; no global state.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/address.hpp"
#include "core/time.hpp"
#include "crypto/random.hpp"
#include "mip/agent_advertisement_wire.hpp"
#include "mip/binding_table.hpp"
#include "mip/registration_wire.hpp"

namespace mipsec::mip {

inline constexpr core::Ipv4Address all_systems_multicast = core::Ipv4Address::from_octets(224, 0, 0, 1);

namespace fa_reply_code {
inline constexpr std::uint8_t insufficient_resources = 66;
inline constexpr std::uint8_t lifetime_too_long = 69;
inline constexpr std::uint8_t poorly_formed_request = 70;
inline constexpr std::uint8_t encapsulation_unavailable = 72;
inline constexpr std::uint8_t reverse_tunnel_unavailable = 74;
inline constexpr std::uint8_t reverse_tunnel_mandatory = 75;
inline constexpr std::uint8_t mobile_node_too_distant = 76;
inline constexpr std::uint8_t invalid_care_of_address = 77;
inline constexpr std::uint8_t registration_timeout = 78;
inline constexpr std::uint8_t delivery_style_unsupported = 79;
inline constexpr std::uint8_t missing_home_agent = 98;
inline constexpr std::uint8_t invalid_home_agent = 194;
}  // namespace fa_reply_code

class ForeignAgent {
public:
    /// RFC 3519 toward home agents, as the mobile node's `udp_tunnelling`: Off sends no Tunnel
    /// Request; Wanted sends one and the HA assents only when it sees a NAT (the request's
    /// source differs from the care-of address); Forced also sets F.
    enum class UdpTunnelling : std::uint8_t { Off, Wanted, Forced };

    struct Config {
        core::Ipv4Address link_address;                    // ours on the visitor link: advert and reply source
        std::vector<core::Ipv4Address> care_of_addresses;  // advertised (<= 8 listed); empty: link_address
        std::uint16_t advertisement_lifetime = 30;         // ICMP Lifetime, seconds
        core::Duration advertisement_interval = std::chrono::seconds(10);  // clamped to Lifetime/3
        double advertisement_jitter = 0.1;
        core::Duration solicited_min_interval = std::chrono::milliseconds(100);
        std::uint16_t registration_lifetime = 1800;        // most we accept (MAAE), 0xFFFF = infinite
        bool reverse_tunnel = true;           // T: RFC 3024, Direct Delivery style
        bool reverse_tunnel_required = false;
        bool udp_tunnelling = false;          // U: relay RFC 3519 'R' registrations of co-located MNs
        bool registration_required = false;   // R
        bool busy = false;                    // B
        bool also_home_agent = false;         // H
        bool routes_common_traffic = true;    // ICMP code 0, else 16
        std::size_t max_visitors = 1024;
        std::size_t max_pending = 256;
        core::Duration pending_timeout = std::chrono::seconds(10);  // then 78 to the MN
        std::uint16_t relay_port = registration_port;  // also the UDP tunnel's source port (RFC 3519 §3.3)
        UdpTunnelling home_agent_udp_tunnelling = UdpTunnelling::Off;
        std::chrono::seconds keepalive_default{110};  // when the HA's Tunnel Reply says 0 (RFC 3519 §3.2)
    };

    enum class Toward : std::uint8_t { Link, HomeAgent };

    static constexpr std::size_t max_relay_len = 1024;
    /// A registration message to send as one UDP datagram.
    struct Datagram {
        Toward toward = Toward::HomeAgent;
        core::Endpoint source;
        core::Endpoint destination;
        std::uint8_t ttl = 64;
        std::array<std::uint8_t, max_relay_len> storage{};
        std::size_t len = 0;
        std::span<const std::uint8_t> bytes() const noexcept { return {storage.data(), len}; }
    };

    /// An advertisement for the visitor link; always sent with IP TTL 1 (RFC 5944 §2.3).
    struct Advertisement {
        AgentAdvertisement advert;
        core::Ipv4Address source;
        core::Ipv4Address destination;
    };

    struct Visitor {
        core::Ipv4Address home_address;
        core::Ipv4Address home_agent;
        core::Ipv4Address care_of_address;
        core::Endpoint link;  // the MN's IP source and UDP port as seen on the visitor link
        std::uint16_t lifetime = 0;  // granted, seconds
        core::TimePoint expires = core::TimePoint::max();
        bool reverse_tunnel = false;
        bool colocated = false;  // D: the MN decapsulates itself; we only relayed
        TunnelMode mode = TunnelMode::IpInIp;  // Udp: the HA assented to our UDP Tunnel Request
        std::chrono::seconds keepalive_interval{0};  // Udp only
        core::TimePoint last_sent_to_home_agent{};   // Udp only: data or keepalive, for the idle timer
        std::uint16_t keepalive_sequence = 0;        // of the last keepalive sent
        unsigned keepalives_unanswered = 0;
    };

    /// A keepalive to send now inside the visitor's UDP tunnel (RFC 3519 §3.6).
    struct Keepalive {
        core::Ipv4Address home_address;
        core::Ipv4Address home_agent;
        core::Ipv4Address care_of_address;
        std::uint16_t sequence = 0;
    };

    struct VisitorChange {
        bool added = false;  // false: removed (deregistered or expired)
        Visitor visitor;
    };

    enum class Discard : std::uint8_t {
        None,
        Malformed,         // not a request/reply at all
        UnknownExtension,  // unknown non-skippable FA extension after the MHAE
        RateLimited,       // a 76 within a second of the previous one; a solicitation held back
        NoPending,         // reply matching no relayed request
        NotFromHomeAgent,  // reply from another address than the request's home agent
        TooLong,           // longer than max_relay_len
    };

    struct Output {
        Discard discard = Discard::None;
        std::optional<Datagram> datagram;
        std::optional<std::uint8_t> denied;  // code of a denial this FA generated itself
        std::optional<Advertisement> advertisement;
        std::optional<VisitorChange> change;
        std::optional<Keepalive> keepalive;
    };

    /// How a request reached us on the visitor link.
    struct RequestInfo {
        core::Ipv4Address ip_source;
        core::Ipv4Address ip_destination;
        std::uint8_t ttl = 64;
        std::uint16_t udp_source_port = registration_port;
    };

    /// `random` jitters the advertisement interval; it must outlive the ForeignAgent.
    ForeignAgent(Config config, crypto::Random& random);

    Output on_request(std::span<const std::uint8_t> payload, const RequestInfo& from, core::TimePoint now);
    Output on_reply(std::span<const std::uint8_t> payload, core::Endpoint from, core::TimePoint now);
    /// An Agent Solicitation from `source` (0.0.0.0 allowed).
    Output on_solicitation(core::Ipv4Address source, core::TimePoint now);
    /// Periodic advertisement, pending timeouts (78), visitor expiry: at most one per call.
    Output poll(core::TimePoint now);
    std::optional<core::TimePoint> next_deadline() const noexcept;

    /// The data path tunnelled something of `home_address` to its HA: resets the keepalive idle timer.
    void note_sent_to_home_agent(core::Ipv4Address home_address, core::TimePoint now) noexcept;
    /// An ICMP echo reply from the visitor's HA came back through its UDP tunnel. True (and the
    /// unanswered count reset) when it answers the last keepalive sent, i.e. it is ours.
    bool on_keepalive_reply(core::Ipv4Address home_address, std::uint16_t sequence) noexcept;

    const Visitor* visitor(core::Ipv4Address home_address) const noexcept;
    bool is_care_of_address(core::Ipv4Address a) const noexcept;
    std::size_t visitor_count() const noexcept { return visitors_.size(); }
    std::size_t pending_count() const noexcept { return pending_.size(); }
    template <class F>
    void for_each_visitor(F&& f) const {
        for (const auto& [key, v] : visitors_) f(v);
    }
    const Config& config() const noexcept { return config_; }
    /// The sequence number the next advertisement will carry.
    std::uint16_t next_sequence() const noexcept { return sequence_; }

private:
    struct Pending {
        core::Ipv4Address home_address;
        core::Ipv4Address home_agent;
        core::Ipv4Address care_of_address;
        std::uint64_t identification = 0;
        core::Endpoint link;                 // where the MN sent from
        core::Ipv4Address link_destination;  // what it sent to (our address), reply source
        std::uint16_t lifetime = 0;
        bool reverse_tunnel = false;
        bool colocated = false;
        bool udp_requested = false;  // we appended a UDP Tunnel Request
        core::TimePoint relayed_at;
        core::TimePoint expires;
    };

    Output deny(std::uint8_t code, const RegistrationRequestView& req, const RequestInfo& from, std::uint16_t lifetime) const;
    Datagram to_link(core::Ipv4Address source, core::Endpoint mn) const noexcept;
    Advertisement advertise(core::Ipv4Address destination);
    core::Duration jittered_interval() noexcept;

    Config config_;
    crypto::Random& random_;
    std::unordered_map<std::uint32_t, Visitor> visitors_;  // by home address
    std::vector<Pending> pending_;                          // bounded by max_pending
    std::uint16_t sequence_ = 0;
    std::optional<core::TimePoint> next_advertisement_;
    std::optional<core::TimePoint> last_solicited_;
    bool solicitation_held_back_ = false;  // one arrived inside solicited_min_interval
    std::optional<core::TimePoint> last_too_distant_;
};

}  // namespace mipsec::mip
