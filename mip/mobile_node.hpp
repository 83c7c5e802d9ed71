// SPDX-License-Identifier: MIT
#pragma once
// MobileNode: the sans-I/O mobile node registration core (RFC 5944 §3.6-3.7, §5.7; RFC 3024
// reverse tunnelling; RFC 3519 UDP tunnelling; RFC 2794 NAI). One instance per home
// registration; every bit of state is in the object (no statics), so several MIP layers can
// run in one process (RFC 5265 i-MIP over x-MIP).
//
// Inputs: care-of address changed / link changed / agent advertisement seen / returned home,
// received Registration Reply bytes, and poll(now) for timers. Each returns an Output: at most
// one request to transmit (UDP payload + addressing), the RegistrationChanged event data when
// the registration appears, moves or goes, and whether an RFC 3519 keepalive is due.
// next_deadline() says when poll() must run next.
//
// Behaviour (RFC 5944 §3.5-§3.8, §5; RFC 3519 §3, §4):
//  * Identification: NTP timestamps, strictly increasing even across resyncs, or nonces
//    (high 32 bits = the HA's last authenticated nonce). A 133 reply resynchronises only if
//    it is authenticated and its low 32 bits match the request (RFC 5944 §5.7).
//  * Retransmission: from `initial_retransmit` (>= 1 s), doubling up to `max_retransmit` and
//    never beyond the requested lifetime; timestamps get a fresh Identification per try,
//    nonce style resends the identical request (§3.6.3).
//  * Lifetime counts from when the accepted request was *sent*; renewal at
//    `renew_fraction` of the granted lifetime (§3.6.1.2 / §3.7.2.3).
//  * Repair: 69 shorter lifetime, 133 resync, 136 new HA address, 137/134-with-T drop T,
//    138 set T, 142 stop asking for UDP tunnelling (§3.6.3, RFC 3024 §4.2.2).
//  * UDP tunnelling only with a co-located CoA and only when the authenticated reply holds an
//    assenting UDP Tunnel Reply (RFC 3519 §3.2: no Tunnel Reply => never tunnel over UDP).
//  * Keepalive: in UDP mode, due when nothing went to the HA for K s (reply's interval or
//    110 s); unanswered `keepalive_retries` times => re-register (RFC 3519 §3.6.2, §5.2).
// Not thread-safe.
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "core/address.hpp"
#include "core/events.hpp"
#include "core/time.hpp"
#include "crypto/random.hpp"
#include "mip/agent_advertisement_wire.hpp"
#include "mip/binding_table.hpp"
#include "mip/registration_wire.hpp"
#include "mip/security_association.hpp"

namespace mipsec::mip {

class MobileNode {
public:
    enum class UdpTunnelling : std::uint8_t { Off, Wanted, Forced };
    /// Denied: the last reply refused the registration and no repair applied; a retry is
    /// scheduled after `denied_retry`.
    enum class State : std::uint8_t { Idle, Registering, Registered, Denied, Deregistering, AtHome };

    struct Config {
        core::Ipv4Address home_address;  // 0.0.0.0 with a NAI: learnt from the first reply
        core::Ipv4Address home_agent;
        SecurityAssociation sa;
        std::uint16_t lifetime = 1800;   // requested, seconds
        bool reverse_tunnel = true;      // T bit (RFC 3024)
        UdpTunnelling udp_tunnelling = UdpTunnelling::Wanted;
        bool colocated = true;           // co-located CoA (D bit) vs FA care-of address
        // Co-located, but while the link gives no address of our own, register through a
        // foreign agent heard on it (RFC 5944 §3.6: an MN may use either kind of CoA).
        bool foreign_agents_when_no_address = false;
        std::string nai;                 // RFC 2794 MN-NAI; empty: none
        std::uint16_t source_port = registration_port;  // kept for data too (RFC 3519 §5.1)
        core::Duration ntp_offset{};
        core::Duration initial_retransmit = std::chrono::seconds(1);
        core::Duration max_retransmit = std::chrono::seconds(64);
        double renew_fraction = 0.8;
        std::chrono::seconds keepalive_default{110};
        unsigned keepalive_retries = 3;
        unsigned max_deregistration_attempts = 5;
        core::Duration denied_retry = std::chrono::seconds(60);
    };

    struct Transmit {
        Message payload;                 // UDP payload
        core::Ipv4Address source;        // IP source (CoA, or HoA at home / via an FA)
        std::uint16_t source_port = registration_port;
        core::Endpoint destination;      // HA or FA, port 434
        std::uint8_t ttl = 64;           // 255 with T set (RFC 3024 §4.1.1)
    };

    struct Output {
        std::optional<Transmit> transmit;
        std::optional<core::RegistrationChanged> changed;
        bool keepalive_due = false;  // send a UDP-encapsulated ICMP echo request to the HA now
    };

    /// The current accepted registration.
    struct Registration {
        core::Ipv4Address home_address;
        core::Ipv4Address home_agent;
        core::Ipv4Address care_of_address;
        TunnelMode mode = TunnelMode::IpInIp;
        bool reverse_tunnel = false;
        bool via_foreign_agent = false;
        core::Ipv4Address foreign_agent;             // its address on the link (advert source)
        std::uint16_t lifetime = 0;                  // granted
        std::chrono::seconds keepalive_interval{0};  // UDP mode
        core::TimePoint expires = core::TimePoint::max();
        std::uint16_t source_port = registration_port;
    };

    /// `random` supplies nonce low bits; it must outlive the MobileNode.
    MobileNode(Config config, crypto::Random& random);

    /// A co-located care-of address was obtained or changed; registers at once. A CoA equal
    /// to the home address means "at home".
    Output care_of_address_changed(core::Ipv4Address care_of, core::TimePoint now);
    /// The link changed without a new address: re-register, reset the keepalive interval.
    Output link_changed(core::TimePoint now);
    /// An Agent Advertisement arrived from `source` (RFC 5944 §2.4): FA mode registers through
    /// it; the home agent's own advert means "at home"; a sequence number restarting below 256
    /// means the agent rebooted and the MN re-registers.
    Output agent_advertisement(const AgentAdvertisement& advert, core::Ipv4Address source, core::TimePoint now);
    /// Send the pending request again now (a route just appeared that the last try lacked);
    /// counts as a retransmission. Nothing to do without a pending request.
    Output retry_now(core::TimePoint now);
    /// Back on the home link: deregister all bindings (CoA = HoA, lifetime 0).
    Output returned_home(core::TimePoint now);
    /// On the home link, deregister all bindings now even when none is known (returned_home
    /// sends nothing then): RFC 5265 §6 decides "inside", and keeps confirming it every
    /// T_MONITOR, only on a direct answer from the internal home agent, and at home the
    /// request it answers is a deregistration (RFC 5944 §3.6.1.2).
    Output deregister_at_home(core::TimePoint now);
    /// The node is stopping while away: deregister the current care-of address's binding (one
    /// try, no reply awaited) so the HA stops tunnelling to an address nobody serves.
    Output shutdown(core::TimePoint now);
    /// A UDP payload received on the registration socket.
    Output on_reply(std::span<const std::uint8_t> payload, core::Endpoint from, core::TimePoint now);
    /// Timers: retransmission, renewal, expiry, keepalive.
    Output poll(core::TimePoint now);
    std::optional<core::TimePoint> next_deadline() const noexcept;

    /// The data path sent something through the tunnel to the HA (resets the keepalive idle timer).
    void note_sent_to_home_agent(core::TimePoint now) noexcept { last_sent_to_ha_ = now; }
    /// An ICMP echo reply to a keepalive came back through the tunnel.
    void note_keepalive_reply() noexcept { keepalives_unanswered_ = 0; }
    /// Requests from now on carry Identifications above `id`. Several clients registering one
    /// home address with one home agent under one key (RFC 5265: a direct one per interface,
    /// and the one through the VPN) share one sequence this way: with timestamps the home
    /// agent takes them as a sequence (RFC 5944 §5.7.1), and a reply must answer one request.
    void skip_identifications_to(std::uint64_t id) noexcept {
        if (id > last_identification_) last_identification_ = id;
    }

    State state() const noexcept { return state_; }
    const std::optional<Registration>& registration() const noexcept { return registration_; }
    std::optional<std::uint8_t> last_reply_code() const noexcept { return last_code_; }
    core::Ipv4Address care_of_address() const noexcept { return care_of_; }
    /// The care-of address is a foreign agent's (registering or registered through it).
    bool via_foreign_agent() const noexcept { return via_fa_; }
    core::Ipv4Address home_address() const noexcept { return home_address_; }
    core::Ipv4Address home_agent() const noexcept { return home_agent_; }
    const Config& config() const noexcept { return config_; }

private:
    struct Pending {
        Message payload;
        Transmit transmit;
        std::uint64_t identification = 0;
        std::uint16_t lifetime = 0;
        bool deregistration = false;
        bool udp_requested = false;
        bool reverse_tunnel = false;
        core::TimePoint first_sent;
        core::TimePoint sent;
        core::TimePoint retransmit_at;
        core::Duration interval{};
        unsigned attempts = 0;
    };

    Output start(core::TimePoint now, bool deregistration);
    std::optional<Transmit> send(core::TimePoint now, bool deregistration, bool fresh_timer, bool away = false);
    std::uint64_t next_identification(core::TimePoint now);
    Output lose_registration(core::TimePoint now);
    core::Duration retransmit_cap(std::uint16_t lifetime) const noexcept;

    Config config_;
    crypto::Random& random_;

    core::Ipv4Address home_address_;
    core::Ipv4Address home_agent_;
    core::Ipv4Address care_of_;
    bool via_fa_ = false;
    core::Ipv4Address fa_address_;
    std::optional<std::uint16_t> last_advert_sequence_;
    std::uint16_t lifetime_limit_;   // after a 69, or an FA's advertised maximum
    bool reverse_tunnel_;
    bool udp_allowed_;
    unsigned repairs_ = 0;

    // Identification state (RFC 5944 §5.7).
    std::uint64_t last_identification_ = 0;
    std::uint64_t last_accepted_identification_ = 0;
    std::int64_t clock_adjust_s_ = 0;  // HA clock - our clock, learnt from an authenticated 133
    std::uint32_t ha_nonce_ = 0;

    State state_ = State::Idle;
    std::optional<Pending> pending_;
    std::optional<core::TimePoint> retry_at_;  // a denied registration is retried then
    std::optional<Registration> registration_;
    core::TimePoint renew_at_ = core::TimePoint::max();

    // RFC 3519 keepalives.
    core::TimePoint last_sent_to_ha_{};
    std::chrono::seconds keepalive_interval_;
    unsigned keepalives_unanswered_ = 0;

    std::optional<std::uint8_t> last_code_;
};

}  // namespace mipsec::mip
