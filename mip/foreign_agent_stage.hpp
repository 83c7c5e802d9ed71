// SPDX-License-Identifier: MIT
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>

#include "core/mtu_guard.hpp"
#include "core/stage.hpp"
#include "crypto/random.hpp"
#include "mip/foreign_agent.hpp"

namespace mipsec::mip {

/// The foreign agent's data path around a ForeignAgent core (RFC 5944 §3.7, §4.2.2; RFC 3024
/// Direct Delivery reverse tunnelling; RFC 2003 IP-in-IP).
///
/// How the two sides are modelled: the stage's *inner* side is the visitor link, its *outer*
/// side the network toward home agents.
///  * encapsulate() takes what visiting mobile nodes send on the link: Registration Requests
///    (UDP to port 434 of the FA, a care-of address, 224.0.0.11 or broadcast) and Agent
///    Solicitations (ICMP 10) are consumed; data from a visitor that registered with T is
///    reverse-tunnelled to its home agent (outer source = its care-of address), leaving as
///    Pass; other packets pass unchanged (the FA routes them normally).
///  * decapsulate() takes what arrives from the network: Registration Replies to a care-of
///    address (port `relay_port`) are consumed; IP-in-IP from a visitor's home agent to a
///    care-of address is unwrapped and the inner packet passes inward, i.e. onto the visitor
///    link (no visitor: NoBinding; from another source: BindingMismatch); other packets pass.
///  * Everything the FA sends to the link — relayed replies, its own denials, advertisements
///    (periodic and solicited, IP TTL 1) — goes out with ctx.deliver_inward(); relayed
///    requests toward home agents go out with ctx.send_control().
/// So the shell connects the inner side to the visitor link (`link_ifindex`: a packet
/// socket, or a TUN plus a host route per visitor from the RegistrationChanged events this
/// stage raises) and the outer side to its usual sockets. As a router forwarding between the
/// two, the FA decrements the inner TTL of packets it tunnels or detunnels (RFC 2003 §3.1).
///
/// RFC 3519 toward the HA (an FA behind a NAT; `home_agent_udp_tunnelling` in the core): a
/// visitor whose HA assented tunnels as IP-in-UDP instead, care-of:`relay_port` <-> HA:434 with
/// the MIP Tunnel Data header (Next Header 4), the same 5-tuple as the registration so one NAT
/// mapping carries both. Inward such a packet must come from the visitor's HA port 434 to
/// `relay_port` with Next Header 4 and a good UDP checksum (else BadNextHeader / Malformed), and
/// a visitor's tunnel must arrive in its negotiated encapsulation (else BindingMismatch). The
/// keepalives the core asks for leave with send_control() (ICMP echo request home address -> HA,
/// identifier `relay_port`, inside the UDP tunnel); the HA's echo reply to the last one is
/// consumed, never delivered to the visitor.
///
/// As a tunnel entry point (RFC 2003 §5.1, RFC 1191 §4) the FA answers a visitor's DF packet
/// that its tunnel headers would make bigger than the path toward the HA (`outer_mtu`, lowered
/// by PathMtuChanged) with ICMP "fragmentation needed" onto the link, rate-limited (a
/// core::MtuGuard), and drops it as TooBig: a mobile node counts 20 bytes for an agent's
/// IP-in-IP, and the 12 more of IP-in-UDP would otherwise kill its full-sized packets silently.
/// Not thread-safe.
/// Config: {"type": "mip.foreign_agent", "link_address": "192.0.2.1", "care_of": ["192.0.2.1"],
///          "reverse_tunnel": true, "advertisement_interval_s": 10, "home_agent_udp_tunnelling": "wanted"}
class ForeignAgentStage final : public core::Stage {
public:
    struct Config {
        ForeignAgent::Config agent;
        std::uint32_t link_ifindex = 0;  // for the shell: the visitor link; unused by the stage
        std::uint8_t tunnel_ttl = 64;
        bool df_when_inner_clear = false;
        std::size_t report_limit = 100;
        std::size_t outer_mtu = 1500;  // toward home agents, until a PathMtuChanged says less
    };

    struct Counters {
        std::uint64_t requests_relayed = 0;
        std::uint64_t replies_relayed = 0;
        std::uint64_t denials_sent = 0;
        std::uint64_t messages_discarded = 0;
        std::uint64_t advertisements_sent = 0;
        std::uint64_t solicitations = 0;
        std::uint64_t solicitations_held_back = 0;  // inside solicited_min_interval: answered by one multicast advertisement later
        std::uint64_t reverse_tunnelled = 0;      // IP-in-IP and IP-in-UDP
        std::uint64_t reverse_tunnelled_udp = 0;  // of which IP-in-UDP (RFC 3519)
        std::uint64_t keepalives_sent = 0;
        std::uint64_t keepalive_replies = 0;
        std::uint64_t delivered_to_visitors = 0;
        std::uint64_t delivered_from_udp = 0;     // of which arrived IP-in-UDP
        std::uint64_t dropped_no_visitor = 0;
        std::uint64_t dropped_binding_mismatch = 0;
        std::uint64_t passed_other = 0;
        std::uint64_t too_big_answered = 0;  // ICMP fragmentation needed sent onto the link
        std::uint64_t too_big_dropped = 0;   // every DF packet too big for the tunnel (answered or not)
        std::uint64_t no_buffer = 0;
    };

    ForeignAgentStage(Config config, crypto::Random& random);

    std::string_view name() const noexcept override { return "mip.foreign_agent"; }
    std::size_t headroom() const noexcept override;
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    std::optional<core::TimePoint> poll(core::StageContext& ctx) override;
    void on_event(const core::RaisedEvent& event, core::StageContext& ctx) override;
    void report(core::StatusSink& out) const override;

    const ForeignAgent& agent() const noexcept { return agent_; }
    const Counters& counters() const noexcept { return counters_; }
    const Config& config() const noexcept { return config_; }

private:
    bool emit(const ForeignAgent::Output& out, core::StageContext& ctx);
    void send_keepalive(const ForeignAgent::Keepalive& k, core::StageContext& ctx);
    bool addressed_to_us(core::Ipv4Address destination) const noexcept;

    Config config_;
    ForeignAgent agent_;
    Counters counters_;
    core::MtuGuard too_big_;  // the tunnel's headers against the path toward home agents
    std::uint16_t next_identification_ = 0;
    core::TimePoint last_now_{};
};

}  // namespace mipsec::mip
