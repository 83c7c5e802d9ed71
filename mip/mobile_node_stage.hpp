// SPDX-License-Identifier: MIT
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/ipv4.hpp"
#include "core/stage.hpp"
#include "crypto/random.hpp"
#include "mip/agent_advertisement_wire.hpp"
#include "mip/mobile_node.hpp"
#include "mip/network_detection.hpp"

namespace mipsec::mip {

/// The mobile node's data path around a MobileNode core (RFC 5944 co-located or FA care-of
/// mode, RFC 3024 reverse tunnelling, RFC 3519 UDP tunnelling, RFC 5265 i-MIP/x-MIP layers).
///
/// Care-of address: a static address, the address of one interface (AddressChanged events
/// whose ifindex is `care_of_ifindex`; LinkChanged "up" on it re-registers), the address an
/// InnerAddressAssigned event carries (RFC 5265 §4 step 5: i-MIP registers the VPN tunnel
/// inner address as its co-located CoA), or Agent Advertisements (FA care-of mode; the stage
/// solicits until one arrives). A CoA equal to the home address means "at home".
///
/// Registration requests leave through ctx.send_control() as whole IPv4/UDP packets
/// (source CoA or HoA as the core says, source port `node.source_port`, to the HA or FA on
/// port 434, TTL 255 with T set, UDP checksum computed).
///
/// Outward (from the TUN): packets whose source is the home address are reverse-tunnelled to
/// the HA while a co-located registration with T holds (IP-in-IP, or IP-in-UDP from the
/// registration port when the HA assented to RFC 3519 tunnelling); at home, with triangular
/// routing (no T) or through an FA (direct delivery: the FA tunnels) they pass unchanged;
/// away without a registration for the current CoA they are dropped as NotRegistered. Packets
/// from other sources are not this layer's and pass unchanged.
/// Inward: registration replies (UDP from port 434 to the registration port) go to the core;
/// Agent Advertisements (ICMP 9 with the mobility extension) go to the core; IP-in-IP or
/// Tunnel Data from the HA to the CoA is unwrapped when it matches the negotiated mode
/// (else BindingMismatch, or NotRegistered with no registration); RFC 3519 keepalive echo
/// replies from the HA are consumed. Anything else passes unchanged.
///
/// Keepalives (RFC 3519 §3.6): when the core says one is due, an ICMP echo request HoA -> HA
/// (identifier = the registration port) goes out inside the UDP tunnel.
/// Raises RegistrationChanged whenever the core reports one.
///
/// RFC 5265 internal-network detection (`detection`, for the i-MIP layer: care_of
/// inner_address): the stage owns a NetworkDetection for one physical interface and a second
/// registration client, `direct`, that registers with the same (internal) home agent using
/// the interface's address as co-located care-of address, sent around every layer below
/// (PacketMeta::direct). Each address or link change of that interface stops user data
/// (Blocked) and restarts detection; the direct request goes out while the x-MIP layer below
/// registers in parallel (its RegistrationChanged for the interface's address is the external
/// home agent's answer). Only an authenticated direct reply with TNC, answering a request sent
/// since the change, makes the node inside (modes c); then the stage raises
/// AccessModeChanged Inside, the layers below go dormant, user data is tunnelled directly to
/// the internal home agent and re-registered every T_MONITOR - N. The x-HA answering first
/// makes it Outside (cvc): the VPN wakes and the VPN's inner address becomes the CoA again.
/// T_MONITOR without a successful re-registration stops data and restarts detection.
///
/// Several interfaces (`detection.interfaces`, e.g. a wired and a wireless link up at once):
/// each has its own attachment, its own direct client (its requests leave by that interface,
/// PacketMeta::egress_ifindex, from its address) and its own detection outcome (RFC 5265 §6:
/// success on one says nothing about another). A reply counts only for the interface it
/// arrived on (PacketMeta::ingress_ifindex when the shell says, else the interface whose
/// address it is sent to): a reply to a request of interface A arriving on B answers nothing
/// of B's and is rejected and counted. User data follows NetworkDetection::preferred_interface():
/// an inside interface if any (the first configured among several), else an outside one; the
/// layers below follow the interface AccessModeChanged names (x-MIP registers that interface's
/// address). With none decided, they follow the interface being detected (the one they were
/// on if still attached, else the first attached one), so x-MIP's answer there decides it.
/// Losing the inside interface moves user data at once to an outside one (x-MIP registers it,
/// the VPN wakes, i-MIP registers the VPN's inner address); once the lost one is back and
/// proven inside again, data returns to it. A direct registration on a second inside
/// interface moves the i-HA's binding there, so the serving one registers again right after.
///
/// Foreign agents under detection (modes f and fvc, `detection.foreign_agents`): while the
/// interface has no address of its own, an Agent Advertisement from a foreign agent on it is
/// the attachment. The direct client then registers *through that agent* (FA care-of address,
/// request from the home address to the agent, RFC 5944 §3.6) while x-MIP registers through it
/// too. The agent relays the internal home agent's reply to the home address; detection takes
/// it as the direct reply only when it comes in the clear from that agent (the advertisement's
/// source), authenticated under the i-HA key with TNC inside the authenticated part, answering
/// a request sent through that agent since the attachment (RFC 5265 §5, §6). The i-HA checks
/// the agent's care-of address against its trusted networks, so only an intranet agent gets
/// TNC. Inside (f) user data leaves in the clear to the agent, which reverse-tunnels it (RFC
/// 3024); outside (fvc) x-MIP's registration via the agent is the external answer and the VPN
/// runs over it. A new agent or care-of address, or an address appearing, is a status change.
///
/// A stage without `detection` below one that has it (x-MIP) follows AccessModeChanged from
/// above: Inside, it deregisters and goes dormant (every packet passes unchanged both ways;
/// address changes are remembered); otherwise it registers again. With care_of "interface" it
/// also follows the event's interface: the layer above may move it to another one (it keeps
/// the last address seen on each interface for that). Packets a layer above sends
/// directly (PacketMeta::direct) and registration replies for another home address pass
/// unchanged; Agent Advertisements it took go on to the layer above as well (it detects on the
/// same link). Not thread-safe.
/// Config: {"type": "mip.mobile_node", "home_address": "10.1.0.77", "home_agent": "10.1.0.1",
///          "spi": 256, "key": "hex", "care_of": "interface", "interface": "eth0", ...}
class MobileNodeStage final : public core::Stage {
public:
    enum class CareOfSource : std::uint8_t {
        Static,        // `static_care_of`
        Interface,     // AddressChanged/LinkChanged with ifindex == care_of_ifindex
        InnerAddress,  // InnerAddressAssigned from a VPN layer (RFC 5265 i-MIP)
        ForeignAgent,  // Agent Advertisements; forces node.colocated = false
    };

    struct Config {
        MobileNode::Config node;
        CareOfSource care_of_source = CareOfSource::Static;
        core::Ipv4Address static_care_of;  // Static: registered at the first poll()
        std::uint32_t care_of_ifindex = 0;  // Interface: filled in by the shell from the name
        std::uint8_t tunnel_ttl = 64;       // outer TTL of tunnelled packets
        bool df_when_inner_clear = false;
        core::Duration solicitation_max_interval = std::chrono::seconds(60);  // FA mode

        /// RFC 5265 §3.3, §4-§6 internal-network detection (i-MIP layer only).
        struct Detection {
            struct Interface {
                std::uint32_t ifindex = 0;  // the shell fills it from the name
                std::string name;           // for status only
            };
            // The physical interfaces, in order of preference among equals (two inside: the
            // first); at most NetworkDetection::Config::max_interfaces (8).
            std::vector<Interface> interfaces;
            core::Ipv4Address external_home_agent;
            NetworkDetection::Profile profile = NetworkDetection::Profile::Rfc5265;
            core::Duration t_monitor = std::chrono::seconds(60);
            core::Duration monitor_margin = std::chrono::seconds(10);
            core::Duration internal_retry_window = std::chrono::seconds(10);
            core::Duration detection_timeout = std::chrono::seconds(30);
            bool keep_vpn_sas = true;  // inside: keep the VPN's SAs for the next outside period
            core::Duration ike_delay{};  // outside: how long a VPN without SAs waits before IKE (§3.3)
            // Without an address of its own on the interface, attach through a foreign agent
            // advertising there (modes f and fvc).
            bool foreign_agents = true;
        };
        std::optional<Detection> detection;
    };

    struct Counters {
        std::uint64_t requests_sent = 0;
        std::uint64_t replies_received = 0;
        std::uint64_t advertisements_received = 0;
        std::uint64_t solicitations_sent = 0;
        std::uint64_t tunnelled_out = 0;
        std::uint64_t tunnelled_in = 0;
        std::uint64_t passed_plain_out = 0;   // at home, triangular or via an FA
        std::uint64_t passed_unrelated_out = 0;  // source is not the home address
        std::uint64_t dropped_not_registered = 0;
        std::uint64_t dropped_binding_mismatch = 0;
        std::uint64_t keepalives_sent = 0;
        std::uint64_t keepalive_replies = 0;
        std::uint64_t no_buffer = 0;
        std::uint64_t dropped_loop = 0;  // our own registration traffic routed back to us
        std::uint64_t dropped_detecting = 0;  // RFC 5265 §6: user data stopped, mode not decided
        std::uint64_t direct_requests_sent = 0;  // to the internal HA, around the layers below
        std::uint64_t direct_replies_rejected = 0;  // not proof of being inside (see detection)
        std::uint64_t passed_direct = 0;    // a layer above sent it around us
        std::uint64_t passed_dormant = 0;   // x-MIP while the node is inside
        std::uint64_t passed_other_reply = 0;  // a registration reply for another home address
    };

    /// `random` supplies nonce bits to the core; it must outlive the stage.
    MobileNodeStage(Config config, crypto::Random& random);

    std::string_view name() const noexcept override { return "mip.mobile_node"; }
    std::size_t headroom() const noexcept override;
    /// RFC 5265 §5.2: 0 dormant, at home, triangular or through a foreign agent (the FA
    /// tunnels); else the registration's tunnel (IP-in-IP 20, RFC 3519 UDP 32).
    std::size_t overhead() const noexcept override;
    /// With detection, mode c's IP-in-IP (the direct registration never tunnels in UDP); at
    /// home is not a mode (packets there are smaller than they could be, nothing breaks).
    std::size_t least_overhead() const noexcept override;
    /// With detection: inside, the layers below go dormant.
    bool may_idle_layers_below() const noexcept override { return config_.detection.has_value(); }
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    void on_event(const core::RaisedEvent& event, core::StageContext& ctx) override;
    std::optional<core::TimePoint> poll(core::StageContext& ctx) override;
    void report(core::StatusSink& out) const override;
    /// Away from home: deregisters the current binding at the HA (one try).
    void shutdown(core::StageContext& ctx) override;

    const MobileNode& node() const noexcept { return node_; }
    const Counters& counters() const noexcept { return counters_; }
    /// The stage's own settings; the core's (with the key) are node().config().
    const Config& config() const noexcept { return config_; }
    /// The registration the data path uses: accepted, and for the current care-of address.
    const MobileNode::Registration* active_registration() const noexcept;
    /// With detection: the core, the direct registration client of the interface last
    /// announced (or of `ifindex`), and the mode and interface last raised.
    const NetworkDetection* detection() const noexcept { return detection_ ? &*detection_ : nullptr; }
    const MobileNode* direct() const noexcept { return links_.empty() ? nullptr : &*links_[announced_link_].direct; }
    const MobileNode* direct(std::uint32_t ifindex) const noexcept;
    core::AccessModeChanged::Mode access_mode() const noexcept { return announced_mode_; }
    std::uint32_t access_interface() const noexcept { return links_.empty() ? 0 : links_[announced_link_].ifindex; }
    /// x-MIP: the node is inside and this layer passes everything unchanged.
    bool dormant() const noexcept { return dormant_; }

private:
    void handle(const MobileNode::Output& out, core::StageContext& ctx);
    void transmit(const MobileNode::Transmit& t, core::StageContext& ctx);
    // RFC 5265 detection (i-MIP): one Link per physical interface.
    struct HeardAgent {
        core::Ipv4Address address;
        AgentAdvertisement advert;
    };
    struct Link {
        std::uint32_t ifindex = 0;
        std::string name;
        core::Ipv4Address address{};  // the interface's current address
        // Attached through a foreign agent (no address of our own): the agent (its address on
        // the link, the advertisement source) and its last advertisement.
        std::optional<HeardAgent> agent;
        std::optional<MobileNode> direct;      // CoA = this interface's address (or agent's), sent directly
        std::uint64_t external_token = 0;      // stands for the x-MIP request of this attachment
        bool external_answer_waiting = false;  // x-MIP registered here before the profile asks the x-HA
        std::uint64_t direct_request_number = 0;  // counters_.requests_sent when its last request left
        bool attached() const noexcept { return !address.is_unspecified() || agent.has_value(); }
    };
    bool detecting_events(const core::RaisedEvent& event, core::StageContext& ctx);
    Link* link_of(std::uint32_t ifindex) noexcept;
    const Link* link_of(std::uint32_t ifindex) const noexcept;
    bool direct_reply_interface(const core::PacketBuf& packet, const core::Ipv4View& ip, core::Ipv4Address from,
                                std::uint32_t& ifindex, Link*& link) noexcept;
    Link* advert_link(const core::PacketBuf& packet) noexcept;
    void attach(Link& link, core::StageContext& ctx);
    void detach(Link& link, core::StageContext& ctx);
    void expect_external_registration(Link& link, core::TimePoint now);
    void handle_direct(Link& link, const MobileNode::Output& out, core::StageContext& ctx);
    void transmit_direct(Link& link, const MobileNode::Transmit& t, core::StageContext& ctx);
    void sync_link(Link& link, core::StageContext& ctx);
    void sync_detection(core::StageContext& ctx);
    std::size_t link_to_announce(core::TimePoint now) const noexcept;
    void agent_heard(Link& link, const AgentAdvertisement& advert, core::Ipv4Address source, core::StageContext& ctx);
    MobileNode::Output register_direct(Link& link, core::TimePoint now);
    bool is_external_answer(const Link& link, const core::RegistrationChanged& reg) const noexcept;
    bool data_allowed_now(core::TimePoint now) const noexcept;
    void share_identification(const MobileNode::Transmit& t, const MobileNode& sender) noexcept;
    void report_link(core::StatusSink& out, const Link& link) const;
    bool inside() const noexcept { return detection_ && announced_mode_ == core::AccessModeChanged::Mode::Inside; }
    Link& serving_link() noexcept { return links_[announced_link_]; }
    const Link& serving_link() const noexcept { return links_[announced_link_]; }
    const MobileNode& serving() const noexcept { return inside() ? *serving_link().direct : node_; }
    MobileNode& serving() noexcept { return inside() ? *serving_link().direct : node_; }
    const MobileNode::Registration* active_registration_of(const MobileNode& n) const noexcept;
    bool at_home_of(const MobileNode& n) const noexcept;
    // x-MIP following the layer above.
    void follow_access_mode(const core::RaisedEvent& event, core::StageContext& ctx);
    void deregister_dormant(core::StageContext& ctx);
    void send_keepalive(core::StageContext& ctx);
    void send_solicitation(core::StageContext& ctx);
    std::optional<core::TimePoint> solicitation_deadline() const noexcept;
    bool at_home() const noexcept;
    bool solicits_without_address() const noexcept;

    Config config_;
    MobileNode node_;
    Counters counters_;
    bool started_ = false;
    std::uint16_t next_identification_ = 0;
    std::uint16_t keepalive_sequence_ = 0;
    // FA mode: Agent Solicitations until an advertisement arrives (RFC 5944 §2.4.1).
    bool advert_heard_ = false;
    core::Ipv4Address announced_care_of_{};  // the care-of address last raised as OuterAddressChanged
    std::optional<core::TimePoint> next_solicitation_;
    core::Duration solicitation_interval_{};
    unsigned solicitations_in_burst_ = 0;
    core::TimePoint last_now_{};  // for report(): lifetime left

    // RFC 5265 detection (i-MIP).
    std::optional<NetworkDetection> detection_;
    std::vector<Link> links_;  // in configured order; never resized after construction
    std::size_t announced_link_ = 0;  // the interface user data and the layers below follow
    std::uint64_t next_external_token_ = 0;
    std::optional<core::Ipv4Address> inner_address_;  // the VPN's inner address: our CoA outside
    // counters_.requests_sent when node_'s last request left: which of it and a direct
    // client's last request is the later one (RFC 5265 §3.3 race, see sync_detection).
    std::uint64_t inner_request_number_ = 0;
    core::AccessModeChanged::Mode announced_mode_ = core::AccessModeChanged::Mode::NoService;
    bool mode_announced_ = false;
    bool inner_registration_due_ = false;       // outside again: register the inner address at the next poll
    // x-MIP: dormant while a layer above is inside; the interface's address meanwhile.
    bool dormant_ = false;
    std::optional<core::TimePoint> deregister_at_;  // dormant, deregistration not yet sent
    core::Ipv4Address dormant_care_of_{};
    // x-MIP with care_of "interface": the last address seen on each interface, so that it can
    // follow the layer above to another one (bounded: a host has few interfaces).
    struct SeenAddress {
        std::uint32_t ifindex = 0;
        core::Ipv4Address address;
    };
    std::vector<SeenAddress> seen_addresses_;
    core::Ipv4Address seen_address(std::uint32_t ifindex) const noexcept;
    void note_address(const core::AddressChanged& a);
    bool follows_layer_above_ = false;  // a layer above detects: share agent advertisements with it
};

}  // namespace mipsec::mip
