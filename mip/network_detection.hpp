// SPDX-License-Identifier: MIT
#pragma once
// NetworkDetection: the sans-I/O core of secure internal-network detection and monitoring for
// a mobile node with an internal home agent (i-HA, behind the VPN gateway) and an external one
// (x-HA) — RFC 5265 §3.3, §4-§6. It sends nothing and owns no registration client: the shell
// tells it what happened (an interface's attachment changed, a registration request went out,
// a reply came back, the time) and reads back, per interface, the access mode decided, whether
// user data may flow now, which home agents to keep registering with, and the next deadline.
//
// The rules it enforces (RFC 5265 §6):
//  * Each interface is tracked on its own; success on one says nothing about another.
//  * Every attachment change stops user data on that interface at once and restarts detection.
//  * "Inside" only on an accepted reply from the i-HA that (a) comes from the i-HA's address and
//    port 434 (attached through an intranet FA: from that FA, which relays it), (b) carries a
//    valid Mobile-Home Authentication Extension under the i-HA key,
//    (c) answers a request sent directly (not through the VPN tunnel) on *that* interface since
//    its last attachment change (matched by Identification, so a replayed or stale reply, or
//    one answering another interface's request, proves nothing; with timestamps, a reply whose
//    i-HA time is older than one already accepted is a replay even if its low-order 32 bits
//    happen to equal a fresh request's), and (d) carries the Trusted
//    Networks Configured extension inside the authenticated part (RFC 5265 §5). A reply that
//    came through the tunnel never makes the node inside: the i-HA answers the VPN's inner
//    addresses with TNC too.
//  * §3.3: both home agents are asked in parallel. If the x-HA answers first the interface is
//    tentatively outside (data may flow, through the VPN) while the i-HA is still retried for
//    `internal_retry_window`; an i-HA answer that arrives later — even after IPsec setup
//    began — still switches the interface inside.
//  * While inside, a re-registration with the i-HA is due every T_MONITOR - N; once T_MONITOR
//    has passed since the last success, user data stops and detection starts again (without an
//    attachment change, so a late answer to the re-registration still counts).
//  * If the two home agents have the same address the node is always outside (RFC 5265 §4).
//
// Foreign agents (modes f, fvc). RFC 5265 §6 asks for a *direct* registration with the i-HA
// but does not say what that means through an FA; we read "direct" as "not through the VPN"
// and require of a relayed reply exactly what we require of one straight from the i-HA, with
// the FA (the advertisement's source, the only sender a relayed reply can have, RFC 5944
// §3.7.3) in place of the i-HA as sender. The FA cannot forge or extend the authenticated
// part, so the TNC must be the i-HA's; and the i-HA grants TNC only to trusted sources, which
// for a relayed request is the FA's care-of address (RFC 5265 §5): an FA outside the intranet
// cannot obtain one, and one it replays answers no request of this attachment.
//
// Profile::PlainInternalFirst is the behaviour of draft-nuopponen-vaarala-mipvpn-00 (2002):
// the i-HA is tried alone first and any authenticated direct reply from it means inside, TNC
// or not. It is weaker: an i-HA that does not check where requests come from (e.g. one reachable
// from outside through a port forward or a misconfigured firewall) answers an outside node
// too, which then sends intranet traffic in the clear. Use it only for internal home agents
// without RFC 5265 support, and only where the firewall guarantees the i-HA is unreachable
// from outside.
//
// Not thread-safe; one instance per mobile node. No allocation after construction except for
// the per-interface table (bounded by max_interfaces).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/address.hpp"
#include "core/time.hpp"
#include "mip/registration_wire.hpp"
#include "mip/security_association.hpp"

namespace mipsec::mip {

class NetworkDetection {
public:
    /// The RFC 5265 §2 access modes of one interface, and the states around them.
    enum class Mode : std::uint8_t {
        Detecting,            // attachment changed (or T_MONITOR expired): asking both HAs, data stopped
        InsideCoLocated,      // c: direct i-MIP with a co-located intranet care-of address
        InsideForeignAgent,   // f: direct i-MIP via an intranet foreign agent
        OutsideCoLocated,     // cvc: i-MIP inside IPsec inside x-MIP, co-located
        OutsideForeignAgent,  // fvc: the same via an external foreign agent
        NoService,            // no attachment, or neither HA answered within detection_timeout
    };
    /// How the interface is attached (RFC 5944 §1.7 care-of address kinds).
    enum class Attachment : std::uint8_t { Detached, CoLocated, ForeignAgent };
    enum class Profile : std::uint8_t {
        Rfc5265,             // inside only with an authenticated direct TNC reply (default)
        PlainInternalFirst,  // 2002 draft: i-HA first, any authenticated direct reply; weaker
    };
    enum class Target : std::uint8_t { Internal, External };
    enum class Path : std::uint8_t { Direct, Tunnel };

    struct Config {
        core::Ipv4Address internal_home_agent;
        core::Ipv4Address internal_home_address;  // unspecified: not checked (NAI-based node)
        SecurityAssociation internal_sa;          // verifies the i-HA's replies
        core::Ipv4Address external_home_agent;
        Profile profile = Profile::Rfc5265;
        core::Duration internal_retry_window = std::chrono::seconds(10);  // §3.3 "for a while"
        core::Duration detection_timeout = std::chrono::seconds(30);      // then NoService
        core::Duration t_monitor = std::chrono::seconds(60);              // RFC 5265 §6 default
        core::Duration monitor_margin = std::chrono::seconds(10);         // N in T_MONITOR - N
        core::Duration plain_internal_wait = std::chrono::seconds(3);     // PlainInternalFirst only
        std::size_t max_interfaces = 8;
    };

    /// What one reply did. The first four are acceptances, the rest rejections (counted).
    enum class ReplyResult : std::uint8_t {
        MadeInside,          // the interface is now inside (c or f)
        Refreshed,           // inside already: T_MONITOR restarts
        MadeOutside,         // x-HA answered first: tentatively outside (cvc or fvc)
        NoChange,            // a valid answer that decides nothing now (x-HA while inside/outside)
        UnknownInterface,    // not attached, or never seen
        WrongSource,         // not from the i-HA's address and port 434
        Malformed,           // not a reply, or a broken extension list
        NoAuthentication,    // no MHAE, or not the i-HA's SPI
        BadAuthenticator,    // MHAE does not verify under the i-HA key (wrong key, tampered)
        WrongHomeAddress,    // for another home address
        UnknownIdentification,  // answers no request sent on this interface since its attachment
        Replayed,            // timestamps: older than (or the same as) a reply already accepted
        Denied,              // a denial code: a registration that did not succeed
        NoTrustedNetworks,   // no authenticated TNC (absent, malformed or after the MHAE)
        ViaTunnel,           // came through the VPN tunnel: proves nothing about this network
        DetectionDisabled,   // i-HA and x-HA share an address: always outside (RFC 5265 §4)
        Count_
    };
    static constexpr std::size_t reply_result_count = static_cast<std::size_t>(ReplyResult::Count_);
    static bool is_rejection(ReplyResult r) noexcept { return r >= ReplyResult::UnknownInterface; }

    /// What decided the current mode, for status.
    struct Decision {
        enum class Cause : std::uint8_t {
            None,              // still detecting after an attachment change
            InternalTnc,       // authenticated direct i-HA reply with TNC
            InternalPlain,     // authenticated direct i-HA reply without TNC (PlainInternalFirst)
            ExternalReply,     // x-HA answered (tentatively outside)
            DetectionTimeout,  // nobody answered
            MonitorExpired,    // T_MONITOR passed without a successful re-registration
            Detached,          // the interface lost its attachment
        };
        Cause cause = Cause::None;
        core::TimePoint at{};
        std::uint64_t identification = 0;  // of the deciding reply, when a reply decided
    };

    struct InterfaceStatus {
        std::uint32_t ifindex = 0;
        Attachment attachment = Attachment::Detached;
        Mode mode = Mode::NoService;
        bool data_allowed = false;
        bool register_internal = false;  // send (or keep retransmitting) a direct i-HA request
        bool register_external = false;  // send (or keep retransmitting) an x-HA request
        std::optional<core::TimePoint> last_internal_success;
        Decision decided_by;
    };

    explicit NetworkDetection(Config config);

    /// Makes `ifindex` known ahead of its first attachment (detached, no service), so that
    /// preferred_interface() breaks ties between interfaces in the order they were added (the
    /// configured order) rather than in the order they first came up. False if the table is
    /// full; an interface already known keeps its place.
    bool add_interface(std::uint32_t ifindex);

    /// An interface's link or address changed (rtnetlink, agent advertisement). Stops user data
    /// on it at once and restarts detection; Detached means no service there until the next
    /// attachment. With Attachment::ForeignAgent, `foreign_agent` is the agent's address on the
    /// link: registrations go through it and it relays the replies (RFC 5944 §3.7.3), so they
    /// come from it. False if the interface table is full (the interface then stays unserved),
    /// or if a ForeignAgent attachment names no agent (the interface is then detached).
    bool attachment_changed(std::uint32_t ifindex, Attachment attachment, core::TimePoint now,
                            core::Ipv4Address foreign_agent = {});

    /// A registration request was sent on `ifindex`, directly (in the clear), to one of the
    /// home agents. Only replies answering such requests count. Ignored if not attached.
    void request_sent(std::uint32_t ifindex, Target to, std::uint64_t identification, core::TimePoint now);

    /// A UDP 434 datagram arrived on `ifindex` (Path::Tunnel: out of the VPN tunnel) from
    /// `from`; `reply` is its payload. Verifies it as described above. "From the i-HA" means
    /// from its address, port 434 — or, attached through a foreign agent, from that agent
    /// relaying it (any extension the agent appends after the MHAE is not trusted).
    ReplyResult internal_reply(std::uint32_t ifindex, Path path, core::Endpoint from, std::span<const std::uint8_t> reply,
                               core::TimePoint now);

    /// The x-MIP client accepted an authenticated reply from the x-HA, answering the request
    /// with this Identification (its low 32 bits are matched, RFC 5944 §5.7).
    ReplyResult external_registered(std::uint32_t ifindex, std::uint64_t identification, core::TimePoint now);

    /// Applies every deadline that passed; returns the next one.
    std::optional<core::TimePoint> poll(core::TimePoint now);
    std::optional<core::TimePoint> next_deadline() const noexcept;

    /// Per-interface view; nullopt for an interface never seen.
    std::optional<InterfaceStatus> status(std::uint32_t ifindex, core::TimePoint now) const;
    std::vector<InterfaceStatus> statuses(core::TimePoint now) const;
    /// Whether user data may use `ifindex` now (also false past T_MONITOR, even before poll()).
    bool data_allowed(std::uint32_t ifindex, core::TimePoint now) const;
    /// The interface user data should use: an inside one if any, else an outside one, else
    /// none; among equals the first in table order (add_interface(), else first attachment).
    std::optional<std::uint32_t> preferred_interface(core::TimePoint now) const;

    std::uint64_t count(ReplyResult r) const noexcept { return counts_[static_cast<std::size_t>(r)]; }
    const Config& config() const noexcept { return config_; }

    static std::string_view mode_name(Mode m) noexcept;       // "c", "f", "cvc", "fvc", "detecting", "no service"
    static std::string_view cause_name(Decision::Cause c) noexcept;
    static std::string_view result_name(ReplyResult r) noexcept;

private:
    /// Identifications (low 32 bits) of requests sent since the last attachment change; a
    /// reply consumes its entry, so a second copy of it matches nothing.
    class Outstanding {
    public:
        void add(std::uint32_t id) noexcept;
        bool take(std::uint32_t id) noexcept;
        void clear() noexcept { size_ = 0; }

    private:
        static constexpr std::size_t capacity = 16;
        std::array<std::uint32_t, capacity> ids_{};
        std::size_t size_ = 0;
    };

    struct Interface {
        std::uint32_t ifindex = 0;
        Attachment attachment = Attachment::Detached;
        core::Ipv4Address foreign_agent;  // ForeignAgent attachments: who relays the replies
        Mode mode = Mode::NoService;
        core::TimePoint detection_started{};
        std::optional<core::TimePoint> external_answered;
        // Timed steps poll() has applied, so each deadline is reported once.
        bool external_started = false;      // PlainInternalFirst: the x-HA is asked too
        bool internal_retry_over = false;   // outside: the §3.3 i-HA retry window closed
        bool reregistration_due = false;    // inside: T_MONITOR - N reached
        std::optional<core::TimePoint> last_internal_success;
        Outstanding internal_requests;
        Outstanding external_requests;
        Decision decided_by;
    };

    Interface* find(std::uint32_t ifindex) noexcept;
    const Interface* find(std::uint32_t ifindex) const noexcept;
    bool detection_disabled() const noexcept { return config_.internal_home_agent == config_.external_home_agent; }
    Mode inside_mode(const Interface& i) const noexcept;
    Mode outside_mode(const Interface& i) const noexcept;
    bool is_inside(const Interface& i) const noexcept;
    bool is_outside(const Interface& i) const noexcept;
    bool monitor_expired(const Interface& i, core::TimePoint now) const noexcept;
    bool wants_internal(const Interface& i, core::TimePoint now) const noexcept;
    bool wants_external(const Interface& i, core::TimePoint now) const noexcept;
    bool allows_data(const Interface& i, core::TimePoint now) const noexcept;
    std::optional<core::TimePoint> deadline_of(const Interface& i) const noexcept;
    void restart_detection(Interface& i, core::TimePoint now) noexcept;
    InterfaceStatus status_of(const Interface& i, core::TimePoint now) const;
    ReplyResult counted(ReplyResult r) noexcept;

    Config config_;
    std::vector<Interface> interfaces_;
    // Timestamp replay protection: the Identification of the newest i-HA reply accepted; its
    // high-order 32 bits are the i-HA's clock (RFC 5944 §5.7).
    std::optional<std::uint64_t> newest_internal_reply_;
    std::array<std::uint64_t, reply_result_count> counts_{};
};

}  // namespace mipsec::mip
