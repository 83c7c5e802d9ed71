// SPDX-License-Identifier: MIT
#include "mip/mobile_node_stage.hpp"

#include <algorithm>
#include <variant>

#include "core/icmp.hpp"
#include "mip/agent_advertisement_wire.hpp"
#include "mip/tunnel_encap.hpp"

namespace mipsec::mip {

using core::DropReason;
using core::Verdict;

namespace {

constexpr unsigned initial_solicitations = 3;  // RFC 5944 §2.4.1: up to three, at most one per second
// Long enough for what the layers above sent through us on going dormant to reach the home
// agent ahead of our deregistration, short against any registration lifetime.
constexpr auto dormant_deregistration_delay = std::chrono::milliseconds(250);

std::string_view to_string(MobileNode::State s) noexcept {
    switch (s) {
        case MobileNode::State::Idle: return "idle";
        case MobileNode::State::Registering: return "registering";
        case MobileNode::State::Registered: return "registered";
        case MobileNode::State::Denied: return "denied";
        case MobileNode::State::Deregistering: return "deregistering";
        case MobileNode::State::AtHome: return "at_home";
    }
    return "?";
}

std::string_view to_string(MobileNodeStage::CareOfSource s) noexcept {
    switch (s) {
        case MobileNodeStage::CareOfSource::Static: return "static";
        case MobileNodeStage::CareOfSource::Interface: return "interface";
        case MobileNodeStage::CareOfSource::InnerAddress: return "inner_address";
        case MobileNodeStage::CareOfSource::ForeignAgent: return "foreign_agent";
    }
    return "?";
}

MobileNodeStage::Config normalise(MobileNodeStage::Config c) {
    // FA care-of mode is the only one that is not co-located (RFC 5944 §3.6.1.1 D bit).
    c.node.colocated = c.care_of_source != MobileNodeStage::CareOfSource::ForeignAgent;
    if (c.solicitation_max_interval < std::chrono::seconds(1)) c.solicitation_max_interval = std::chrono::seconds(1);
    return c;
}

// The direct client registers the same home address with the same home agent under the same
// key; it differs in using the interface's own address as co-located care-of address (RFC 5265
// mode c) or, on a link that gives none, a foreign agent's (mode f), and in not asking for UDP
// tunnelling (no keepalives through the layers below).
MobileNode::Config direct_config(const MobileNode::Config& c) {
    MobileNode::Config d;
    d.home_address = c.home_address;
    d.home_agent = c.home_agent;
    d.sa = c.sa.clone();
    d.lifetime = c.lifetime;
    d.reverse_tunnel = c.reverse_tunnel;
    d.udp_tunnelling = MobileNode::UdpTunnelling::Off;
    d.colocated = true;
    d.foreign_agents_when_no_address = true;  // fed only the advertisements detection attaches through
    d.nai = c.nai;
    d.source_port = c.source_port;
    d.ntp_offset = c.ntp_offset;
    d.initial_retransmit = c.initial_retransmit;
    d.max_retransmit = c.max_retransmit;
    d.renew_fraction = c.renew_fraction;
    d.keepalive_default = c.keepalive_default;
    d.keepalive_retries = c.keepalive_retries;
    d.max_deregistration_attempts = c.max_deregistration_attempts;
    d.denied_retry = c.denied_retry;
    return d;
}

NetworkDetection::Config detection_config(const MobileNodeStage::Config::Detection& d, const MobileNode::Config& node) {
    NetworkDetection::Config c;
    c.internal_home_agent = node.home_agent;
    c.internal_home_address = node.home_address;
    c.internal_sa = node.sa.clone();
    c.external_home_agent = d.external_home_agent;
    c.profile = d.profile;
    c.internal_retry_window = d.internal_retry_window;
    c.detection_timeout = d.detection_timeout;
    c.t_monitor = d.t_monitor;
    c.monitor_margin = d.monitor_margin;
    c.max_interfaces = std::max<std::size_t>(d.interfaces.size(), 1);
    return c;
}

std::string_view to_string(core::AccessModeChanged::Mode m) noexcept {
    switch (m) {
        case core::AccessModeChanged::Mode::Detecting: return "detecting";
        case core::AccessModeChanged::Mode::Inside: return "inside";
        case core::AccessModeChanged::Mode::Outside: return "outside";
        case core::AccessModeChanged::Mode::NoService: return "no service";
    }
    return "?";
}

core::AccessModeChanged::Mode access_mode_of(NetworkDetection::Mode m) noexcept {
    using A = core::AccessModeChanged::Mode;
    switch (m) {
        case NetworkDetection::Mode::Detecting: return A::Detecting;
        case NetworkDetection::Mode::InsideCoLocated:
        case NetworkDetection::Mode::InsideForeignAgent: return A::Inside;
        case NetworkDetection::Mode::OutsideCoLocated:
        case NetworkDetection::Mode::OutsideForeignAgent: return A::Outside;
        case NetworkDetection::Mode::NoService: return A::NoService;
    }
    return A::NoService;
}

}  // namespace

MobileNodeStage::MobileNodeStage(Config config, crypto::Random& random)
    : config_(normalise(std::move(config))), node_(std::move(config_.node), random) {  // the SA key lives only in the core
    if (config_.detection) {
        detection_.emplace(detection_config(*config_.detection, node_.config()));
        auto wanted = config_.detection->interfaces;
        if (wanted.empty()) wanted.push_back({});  // serves nothing, but keeps links_ non-empty
        links_.reserve(wanted.size());
        for (const auto& i : wanted) {
            if (link_of(i.ifindex) != nullptr) continue;  // a dry run leaves every ifindex 0
            Link& link = links_.emplace_back();
            link.ifindex = i.ifindex;
            link.name = i.name.empty() ? std::to_string(i.ifindex) : i.name;
            link.direct.emplace(direct_config(node_.config()), random);
            // Known from the start, in the configured order: that order breaks ties.
            detection_->add_interface(i.ifindex);
        }
    }
}

MobileNodeStage::Link* MobileNodeStage::link_of(std::uint32_t ifindex) noexcept {
    for (auto& l : links_)
        if (l.ifindex == ifindex) return &l;
    return nullptr;
}

const MobileNodeStage::Link* MobileNodeStage::link_of(std::uint32_t ifindex) const noexcept {
    for (const auto& l : links_)
        if (l.ifindex == ifindex) return &l;
    return nullptr;
}

const MobileNode* MobileNodeStage::direct(std::uint32_t ifindex) const noexcept {
    const Link* l = link_of(ifindex);
    return l != nullptr ? &*l->direct : nullptr;
}

bool MobileNodeStage::data_allowed_now(core::TimePoint now) const noexcept {
    return detection_->data_allowed(serving_link().ifindex, now);
}

// The direct clients and the one through the VPN register one home address with one home agent
// under one key: a request of one must never carry another's Identification, or the home agent
// sees a replayed timestamp, and one reply would answer requests sent on two interfaces (a
// deterministic or coarse clock gives two clients the same timestamp).
void MobileNodeStage::share_identification(const MobileNode::Transmit& t, const MobileNode& sender) noexcept {
    const auto request = RegistrationRequestView::check(t.payload.bytes());
    if (!request) return;
    if (&node_ != &sender) node_.skip_identifications_to(request->identification());
    for (auto& link : links_)
        if (&*link.direct != &sender) link.direct->skip_identifications_to(request->identification());
}

core::Ipv4Address MobileNodeStage::seen_address(std::uint32_t ifindex) const noexcept {
    for (const auto& s : seen_addresses_)
        if (s.ifindex == ifindex) return s.address;
    return {};
}

void MobileNodeStage::note_address(const core::AddressChanged& a) {
    auto it = std::find_if(seen_addresses_.begin(), seen_addresses_.end(), [&](const SeenAddress& s) { return s.ifindex == a.ifindex; });
    if (a.added) {
        if (it != seen_addresses_.end()) it->address = a.prefix.address;
        else if (seen_addresses_.size() < 64) seen_addresses_.push_back({a.ifindex, a.prefix.address});
    } else if (it != seen_addresses_.end() && it->address == a.prefix.address) {
        seen_addresses_.erase(it);
    }
}

std::size_t MobileNodeStage::headroom() const noexcept {
    return node_.config().udp_tunnelling == MobileNode::UdpTunnelling::Off ? ip_in_ip_overhead : ip_in_udp_overhead;
}

std::size_t MobileNodeStage::overhead() const noexcept {
    if (dormant_ || at_home()) return 0;
    const auto* reg = active_registration();
    if (reg == nullptr) return headroom();  // nothing leaves until registered
    if (!reg->reverse_tunnel) return 0;
    // Through a foreign agent we add nothing, but the agent reverse-tunnels what we send to the
    // home agent in IP-in-IP (RFC 3024 §5.2), 20 bytes more on a path we take to have our
    // link's MTU. RFC 5265 §5.2 counts only what the node adds (f: 0, fvc: 77); with that, a
    // full-sized DF packet dies at the agent unless it answers with ICMP (RFC 2003 §5.1), which
    // agents need not do: a TCP stream then stalls for good. So count the agent's header.
    if (reg->via_foreign_agent) return ip_in_ip_overhead;
    return reg->mode == TunnelMode::Udp ? ip_in_udp_overhead : ip_in_ip_overhead;
}

// With detection the lightest stack is mode f (RFC 5265 §5.2: user data goes to the intranet
// foreign agent unencapsulated, it reverse-tunnels) where foreign agents are allowed, else mode c.
std::size_t MobileNodeStage::least_overhead() const noexcept {
    if (!detection_) return headroom();
    return config_.detection->foreign_agents ? 0 : ip_in_ip_overhead;
}

const MobileNode::Registration* MobileNodeStage::active_registration_of(const MobileNode& n) const noexcept {
    const auto& reg = n.registration();
    // After a move the old binding still runs at the HA, but its CoA is no longer ours:
    // sending from it would be wrong (and blocked by ingress filtering).
    if (!reg || reg->care_of_address != n.care_of_address()) return nullptr;
    return &*reg;
}

const MobileNode::Registration* MobileNodeStage::active_registration() const noexcept { return active_registration_of(serving()); }

bool MobileNodeStage::at_home_of(const MobileNode& n) const noexcept {
    const auto s = n.state();
    if (s == MobileNode::State::AtHome || s == MobileNode::State::Deregistering) return true;
    return !n.home_address().is_unspecified() && n.care_of_address() == n.home_address();
}

bool MobileNodeStage::at_home() const noexcept { return at_home_of(serving()); }

void MobileNodeStage::transmit(const MobileNode::Transmit& t, core::StageContext& ctx) {
    auto buf = ctx.allocate();
    if (!emit_udp_packet(buf, {t.source, t.source_port}, t.destination, t.ttl, t.payload.bytes())) {
        ++counters_.no_buffer;
        ctx.log().limited(core::LogLevel::Warn, ctx.now(), "no buffer for a registration request; it will be retransmitted");
        return;
    }
    // Through an agent on a link where we may have no address: leave by that link.
    if (t.destination.address != node_.home_agent()) buf.meta().egress_ifindex = config_.care_of_ifindex;
    if (detection_) share_identification(t, node_);
    ++counters_.requests_sent;
    inner_request_number_ = counters_.requests_sent;
    ctx.send_control(std::move(buf));
}

void MobileNodeStage::send_keepalive(core::StageContext& ctx) {
    const auto* reg = active_registration();
    if (reg == nullptr || reg->mode != TunnelMode::Udp) return;
    auto buf = ctx.allocate();
    // The buffer has headroom for the stages below; this stage's own UDP tunnel headers go
    // in front of the echo, so start the echo that much further in.
    if (!buf.valid() || buf.headroom() + ip_in_udp_overhead > buf.capacity()) {
        ++counters_.no_buffer;
        return;
    }
    buf.reset(buf.headroom() + ip_in_udp_overhead);
    // RFC 3519 §3.6: the keepalive is an ICMP echo request from the home address to the HA.
    if (!emit_echo_packet(buf, reg->home_address, reg->home_agent, core::icmp_type::echo_request, reg->source_port,
                          keepalive_sequence_++)) {
        ++counters_.no_buffer;
        return;
    }
    const OuterHeader outer{reg->care_of_address, reg->home_agent, config_.tunnel_ttl, config_.df_when_inner_clear,
                            next_identification_++};
    if (!push_ip_in_udp(buf, outer, reg->source_port, registration_port).passed()) return;
    ++counters_.keepalives_sent;
    ctx.send_control(std::move(buf));
}

void MobileNodeStage::send_solicitation(core::StageContext& ctx) {
    auto buf = ctx.allocate();
    constexpr std::size_t len = core::Ipv4Header::len + AgentSolicitationView::len;
    if (!buf.valid() || !buf.put(len)) {
        ++counters_.no_buffer;
        return;
    }
    core::Ipv4Header ip;
    ip.total_length = len;
    ip.ttl = 1;  // RFC 5944 §2.2: an Agent Solicitation's TTL MUST be 1
    ip.protocol = core::ip_protocol::icmp;
    ip.source = node_.home_address();
    ip.destination = all_mobility_agents;
    ip.emit(buf.bytes());
    emit_agent_solicitation(buf.bytes().subspan(core::Ipv4Header::len));
    buf.meta().egress_ifindex = config_.care_of_ifindex;
    ++counters_.solicitations_sent;
    ctx.send_control(std::move(buf));
}

void MobileNodeStage::deregister_dormant(core::StageContext& ctx) {
    deregister_at_.reset();
    const auto now = ctx.now();
    const bool via_agent = node_.via_foreign_agent();
    auto out = node_.shutdown(now);
    if (out.transmit) {
        ctx.log().info("inside the intranet: deregistering ", node_.home_address().to_string());
        transmit(*out.transmit, ctx);
    }
    // Woken later, perhaps on another link, the layer looks for an agent afresh (RFC 5944
    // §2.4.2) instead of registering through one it heard before going dormant.
    if (via_agent) (void)node_.care_of_address_changed({}, now);
}

void MobileNodeStage::shutdown(core::StageContext& ctx) {
    auto out = node_.shutdown(ctx.now());
    if (!out.transmit) return;
    ctx.log().info("stopping: deregistering ", node_.home_address().to_string(), " at care-of address ",
                   node_.care_of_address().to_string());
    transmit(*out.transmit, ctx);
}

void MobileNodeStage::handle(const MobileNode::Output& out, core::StageContext& ctx) {
    // Our outer packets leave from the care-of address: a layer that pinned its own source to
    // it (addressed by the old address) follows the move.
    if (const auto coa = node_.care_of_address(); coa != announced_care_of_) {
        ctx.raise(core::OuterAddressChanged{announced_care_of_, coa, config_.care_of_ifindex});
        announced_care_of_ = coa;
    }
    if (out.transmit) transmit(*out.transmit, ctx);
    if (out.changed) {
        core::RegistrationChanged change = *out.changed;
        const auto& reg = node_.registration();
        if (change.registered && reg && reg->via_foreign_agent) {
            change.foreign_agent = reg->foreign_agent;
            change.link_ifindex = config_.care_of_ifindex;
        }
        // Home again: the shell reclaims the home address on the link from the HA's proxy
        // ARP with a gratuitous ARP (RFC 5944 §4.6).
        if (!change.registered && at_home()) change.link_ifindex = config_.care_of_ifindex;
        ctx.log().info(change.registered ? "registered " : "registration ended for ", change.home_address.to_string(),
                       " at care-of address ", change.care_of_address.to_string(),
                       change.foreign_agent.is_unspecified() ? "" : " via foreign agent ",
                       change.foreign_agent.is_unspecified() ? std::string() : change.foreign_agent.to_string());
        ctx.raise(change);
    }
    if (out.keepalive_due) send_keepalive(ctx);
}

Verdict MobileNodeStage::encapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    // A layer above talks to its internal home agent directly (RFC 5265 §4, §6): not through us.
    if (packet.meta().direct) {
        ++counters_.passed_direct;
        return Verdict::not_mine();
    }
    if (dormant_) {
        ++counters_.passed_dormant;
        return Verdict::not_mine();
    }
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    // Our own registration traffic never comes from the host: if it does, the host routes the
    // node's outer packets back into its TUN (say, a default route through it) and passing it
    // on would loop it at full speed.
    if (auto udp = udp_of(*ip); udp && udp->destination_port() == registration_port &&
                                udp->source_port() == node_.config().source_port &&
                                (ip->destination() == node_.home_agent() || ip->source() == node_.care_of_address())) {
        ++counters_.dropped_loop;
        ctx.log().limited(core::LogLevel::Warn, ctx.now(), "own registration request came back from the host: "
                          "a route sends the node's outer packets into its own TUN; check the routes to ", ip->destination().to_string());
        return Verdict::drop(DropReason::Loop);
    }
    const core::Ipv4Address home = node_.home_address();
    if (home.is_unspecified() || ip->source() != home) {
        ++counters_.passed_unrelated_out;
        return Verdict::not_mine();
    }
    // RFC 5265 §6: after an attachment change, and past T_MONITOR, user data stops until the
    // node knows again whether it is inside.
    if (detection_ && !data_allowed_now(ctx.now())) {
        ++counters_.dropped_detecting;
        return Verdict::drop(DropReason::Blocked);
    }
    if (at_home()) {
        ++counters_.passed_plain_out;
        return Verdict::pass();
    }
    const auto* reg = active_registration();
    if (reg == nullptr) {
        ++counters_.dropped_not_registered;
        return Verdict::drop(DropReason::NotRegistered);
    }
    // Without T the MN routes triangularly; through an FA (direct delivery, RFC 3024 §4.2.1)
    // the FA does the tunnelling.
    if (!reg->reverse_tunnel || reg->via_foreign_agent) {
        ++counters_.passed_plain_out;
        // Inside through an intranet agent (mode f) the packet goes to the agent on the link.
        if (inside()) {
            packet.meta().direct = true;
            packet.meta().egress_ifindex = serving_link().ifindex;
        }
        return Verdict::pass();
    }
    // RFC 3024 §5.2: the reverse tunnel uses the forward tunnel's encapsulation.
    const OuterHeader outer{reg->care_of_address, reg->home_agent, config_.tunnel_ttl, config_.df_when_inner_clear,
                            next_identification_++};
    const Verdict v = reg->mode == TunnelMode::Udp ? push_ip_in_udp(packet, outer, reg->source_port, registration_port)
                                                   : push_ip_in_ip(packet, outer);
    if (v.passed()) {
        ++counters_.tunnelled_out;
        serving().note_sent_to_home_agent(ctx.now());
        // Inside (mode c) the tunnel to the internal home agent runs on the link itself, the
        // inside one, whatever the routing table prefers.
        if (inside()) {
            packet.meta().direct = true;
            packet.meta().egress_ifindex = serving_link().ifindex;
        }
    }
    return v;
}

Verdict MobileNodeStage::decapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    if (dormant_) {
        ++counters_.passed_dormant;
        return Verdict::not_mine();
    }
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    const auto now = ctx.now();

    if (auto udp = udp_of(*ip); udp && udp->source_port() == registration_port &&
                                udp->destination_port() == node_.config().source_port && !udp->payload().empty() &&
                                udp->payload()[0] == message_type::registration_reply) {
        // Two Mobile IP layers (RFC 5265 i-MIP over x-MIP) may share the port: a reply for
        // another home address is the other layer's (the i-HA's direct replies cross x-MIP).
        if (auto reply = RegistrationReplyView::check(udp->payload());
            reply && !node_.home_address().is_unspecified() && reply->home_address() != node_.home_address()) {
            ++counters_.passed_other_reply;
            return Verdict::not_mine();
        }
        // RFC 5944 §3.6.2.1: a non-zero checksum that fails means silent discard.
        if (!udp->checksum_valid(ip->source(), ip->destination())) return Verdict::drop(DropReason::Malformed);
        ++counters_.replies_received;
        const core::Endpoint from{ip->source(), udp->source_port()};
        if (detection_) {
            // RFC 5265 §6: only a reply that came in the clear on an interface, to its address,
            // can prove that interface inside; one out of a tunnel is counted (via_tunnel) and
            // goes to the registration through the VPN. Attached through a foreign agent, the
            // agent relays the reply to the home address (RFC 5944 §3.7.3); detection then
            // insists it comes from that agent. Which interface: the one it arrived on.
            std::uint32_t ifindex = serving_link().ifindex;
            Link* link = nullptr;
            const bool direct = direct_reply_interface(packet, *ip, from.address, ifindex, link);
            const auto result = detection_->internal_reply(ifindex, direct ? NetworkDetection::Path::Direct : NetworkDetection::Path::Tunnel,
                                                           from, udp->payload(), now);
            if (direct) {
                // The direct client hears only what detection verified, and denials it must
                // repair (a 133 resynchronises its timestamps).
                if (link != nullptr && (!NetworkDetection::is_rejection(result) || result == NetworkDetection::ReplyResult::Denied)) {
                    handle_direct(*link, link->direct->on_reply(udp->payload(), from, now), ctx);
                } else {
                    ++counters_.direct_replies_rejected;
                    ctx.log().limited(core::LogLevel::Warn, now, "direct registration reply from ", from.to_string(),
                                      " rejected: ", NetworkDetection::result_name(result));
                }
                sync_detection(ctx);
                return Verdict::consumed();
            }
        }
        handle(node_.on_reply(udp->payload(), from, now), ctx);
        return Verdict::consumed();
    }

    if (ip->protocol() == core::ip_protocol::icmp && !ip->is_fragment()) {
        if (auto view = AgentAdvertisementView::check(ip->payload())) {
            if (auto advert = AgentAdvertisement::parse(*view)) {
                if (!core::IcmpView::check(ip->payload())->checksum_valid()) return Verdict::drop(DropReason::Malformed);
                // RFC 5944 §2.3: every advertisement is sent with IP TTL 1, so one with any
                // other TTL was forged beyond the link (e.g. "your home agent is here").
                if (ip->ttl() != 1) return Verdict::drop(DropReason::NotOnLink);
                ++counters_.advertisements_received;
                if (advert->foreign_agent() || advert->home_agent()) advert_heard_ = true;
                if (detection_) {
                    if (Link* link = advert_link(packet)) agent_heard(*link, *advert, ip->source(), ctx);
                    return Verdict::consumed();
                }
                // Following one interface, an agent heard on another is not ours (the layer
                // above, detecting on several, may want it).
                const auto ingress = packet.meta().ingress_ifindex;
                if (config_.care_of_source == CareOfSource::Interface && ingress != 0 && ingress != config_.care_of_ifindex)
                    return follows_layer_above_ ? Verdict::not_mine() : Verdict::consumed();
                handle(node_.agent_advertisement(*advert, ip->source(), now), ctx);
                // A layer above detecting on the same link needs the agents too (modes f, fvc).
                return follows_layer_above_ ? Verdict::not_mine() : Verdict::consumed();
            }
        }
    }

    auto tunnel = peek_tunnel(*ip);
    // Only the HA's tunnel is this layer's; other tunnels belong to the host or a layer above.
    if (!tunnel || tunnel->source != serving().home_agent()) return Verdict::not_mine();
    if (tunnel->fragment) return Verdict::drop(DropReason::Fragment);
    if (detection_ && !data_allowed_now(now)) {
        ++counters_.dropped_detecting;
        return Verdict::drop(DropReason::Blocked);
    }
    const auto* reg = active_registration();
    if (reg == nullptr || at_home()) {
        ++counters_.dropped_not_registered;
        return Verdict::drop(DropReason::NotRegistered);
    }
    bool matches = tunnel->destination == reg->care_of_address;
    if (reg->mode == TunnelMode::Udp) {
        // RFC 3519 §5.1: once UDP tunnelling is on, all data uses it, on the registration's ports.
        matches = matches && tunnel->kind == TunnelKind::Udp && tunnel->source_port == registration_port &&
                  tunnel->destination_port == reg->source_port;
        if (matches && tunnel->next_header != core::ip_protocol::ipip) return Verdict::drop(DropReason::BadNextHeader);
        if (matches && !tunnel->udp_checksum_ok) return Verdict::drop(DropReason::Malformed);
    } else {
        matches = matches && tunnel->kind == TunnelKind::IpInIp;
    }
    if (!matches) {
        ++counters_.dropped_binding_mismatch;
        return Verdict::drop(DropReason::BindingMismatch);
    }
    if (auto v = strip_tunnel(packet, *tunnel); !v.passed()) return v;
    packet.meta().tunnelled = true;  // for a layer above: this did not arrive on the link as is

    if (reg->mode == TunnelMode::Udp) {
        auto inner = core::Ipv4View::check(packet.bytes());
        if (inner && inner->protocol() == core::ip_protocol::icmp && inner->source() == reg->home_agent &&
            inner->destination() == reg->home_address && !inner->is_fragment()) {
            auto icmp = core::IcmpView::check(inner->payload());
            if (icmp && icmp->type() == core::icmp_type::echo_reply && icmp->echo_identifier() == reg->source_port &&
                icmp->checksum_valid()) {
                // RFC 3519 §3.6: the HA's answer to our keepalive; the NAT mapping is alive.
                ++counters_.keepalive_replies;
                serving().note_keepalive_reply();
                return Verdict::consumed();
            }
        }
    }
    ++counters_.tunnelled_in;
    return Verdict::pass();
}

void MobileNodeStage::follow_access_mode(const core::RaisedEvent& event, core::StageContext& ctx) {
    // Only a layer above decides for us (we are its x-MIP), never the shell or a layer below.
    if (event.origin == core::RaisedEvent::external || event.origin >= ctx.position()) return;
    follows_layer_above_ = true;
    const auto& access = std::get<core::AccessModeChanged>(event.event);
    const bool dormant = access.mode == core::AccessModeChanged::Mode::Inside;
    const auto now = ctx.now();
    // The layer above detects on several interfaces and names the one it uses (RFC 5265 §6):
    // follow it there, with the address last seen on it (or, without one, an agent heard there).
    const bool follows_interface = config_.care_of_source == CareOfSource::Interface;
    if (follows_interface && access.ifindex != 0 && access.ifindex != config_.care_of_ifindex) {
        config_.care_of_ifindex = access.ifindex;
        const auto address = seen_address(access.ifindex);
        ctx.log().info("following the layer above to interface ", access.ifindex, " (",
                       address.is_unspecified() ? std::string("no address") : address.to_string(), ")");
        if (dormant_) {
            dormant_care_of_ = address;  // registered there when woken
        } else if (!dormant) {
            handle(node_.care_of_address_changed(address, now), ctx);
            if (address.is_unspecified() && solicits_without_address()) {
                advert_heard_ = false;
                solicitations_in_burst_ = 0;
                solicitation_interval_ = std::chrono::seconds(1);
                next_solicitation_ = now;
            }
        }
    }
    if (dormant == dormant_) return;
    if (dormant) {
        // RFC 5265 §4: inside, the mobile node SHOULD deregister from the external home agent.
        // An agent's care-of address is not ours to keep: it is the intranet agent's (mode f).
        const bool via_agent = node_.via_foreign_agent();
        dormant_care_of_ = via_agent              ? core::Ipv4Address{}
                           : follows_interface ? seen_address(config_.care_of_ifindex)
                                               : node_.care_of_address();
        // What the layers above sent on leaving (the VPN's Delete payloads, RFC 5265 §4) went
        // through our tunnel a moment ago. Deregistering at once races them: an agent relays
        // our deregistration from its UDP socket and our tunnelled packets from another, and a
        // home agent that unbinds first drops them, leaving the gateway with a client that
        // only its DPD ends. So the binding outlives them briefly.
        ctx.log().info("inside the intranet: going dormant, deregistering ", node_.home_address().to_string(), " in ",
                       std::chrono::duration_cast<std::chrono::milliseconds>(dormant_deregistration_delay).count(), " ms");
        deregister_at_ = now + dormant_deregistration_delay;
        dormant_ = true;
        next_solicitation_.reset();
        return;
    }
    dormant_ = false;
    // Woken before the deregistration left: the binding is still ours, and the care-of
    // address below decides whether it moves.
    deregister_at_.reset();
    ctx.log().info("leaving the intranet (", to_string(access.mode), "): registering again");
    if (config_.care_of_source == CareOfSource::Static) dormant_care_of_ = config_.static_care_of;
    // Register where the interface is now. With no address there (woken onto an agent's link,
    // mode fvc), forget the address we slept with too: it went while we were dormant, and a
    // care-of address we still held would keep us from soliciting and make us register from
    // an address the link no longer has.
    if (!dormant_care_of_.is_unspecified() || !node_.care_of_address().is_unspecified())
        handle(node_.care_of_address_changed(dormant_care_of_, now), ctx);
    if (config_.care_of_source == CareOfSource::ForeignAgent || solicits_without_address()) {
        advert_heard_ = false;
        solicitations_in_burst_ = 0;
        solicitation_interval_ = std::chrono::seconds(1);
        next_solicitation_ = now;
    }
}

void MobileNodeStage::on_event(const core::RaisedEvent& event, core::StageContext& ctx) {
    if (std::holds_alternative<core::AccessModeChanged>(event.event)) {
        if (!detection_) follow_access_mode(event, ctx);
        return;
    }
    if (const auto* a = std::get_if<core::AddressChanged>(&event.event); a && config_.care_of_source == CareOfSource::Interface)
        note_address(*a);
    if (dormant_) {
        // Inside, nothing is registered here; remember where the interface is for later.
        if (const auto* a = std::get_if<core::AddressChanged>(&event.event);
            a && config_.care_of_source == CareOfSource::Interface && a->ifindex == config_.care_of_ifindex) {
            if (a->added) dormant_care_of_ = a->prefix.address;
            else if (a->prefix.address == dormant_care_of_) dormant_care_of_ = {};
        }
        return;
    }
    if (detection_ && detecting_events(event, ctx)) return;
    const auto now = ctx.now();
    const bool follows_interface =
        config_.care_of_source == CareOfSource::Interface && config_.care_of_ifindex != 0;
    if (const auto* a = std::get_if<core::AddressChanged>(&event.event)) {
        if (!follows_interface || a->ifindex != config_.care_of_ifindex) return;
        if (a->added && a->prefix.address != node_.care_of_address()) {
            handle(node_.care_of_address_changed(a->prefix.address, now), ctx);
        } else if (!a->added && a->prefix.address == node_.care_of_address()) {
            // The CoA went away: nothing can be sent until the shell reports another address.
            handle(node_.care_of_address_changed({}, now), ctx);
        }
    } else if (const auto* l = std::get_if<core::LinkChanged>(&event.event)) {
        if (!l->up || config_.care_of_ifindex == 0 || l->ifindex != config_.care_of_ifindex) return;
        if (config_.care_of_source == CareOfSource::Interface && solicits_without_address()) {
            // A new link: an agent heard on the old one is gone (RFC 5944 §2.4.2); until the
            // link gives an address, look for an agent here.
            const auto& reg = node_.registration();
            if (node_.care_of_address().is_unspecified() || (reg && reg->via_foreign_agent && reg->care_of_address == node_.care_of_address()))
                handle(node_.care_of_address_changed({}, now), ctx);
            else
                handle(node_.link_changed(now), ctx);
            advert_heard_ = false;
            solicitations_in_burst_ = 0;
            solicitation_interval_ = std::chrono::seconds(1);
            next_solicitation_ = now;
        } else if (config_.care_of_source == CareOfSource::Interface) {
            handle(node_.link_changed(now), ctx);
        } else if (config_.care_of_source == CareOfSource::ForeignAgent) {
            // A new link may hold a new agent: solicit again (RFC 5944 §2.4.1).
            advert_heard_ = false;
            solicitations_in_burst_ = 0;
            solicitation_interval_ = std::chrono::seconds(1);
            next_solicitation_ = now;
        }
    } else if (const auto* r = std::get_if<core::RouteChanged>(&event.event)) {
        // The link's routes come just after its address: a request sent in between had no
        // way out, so try again at once rather than after the retransmission timer.
        if (r->added && config_.care_of_ifindex != 0 && r->ifindex == config_.care_of_ifindex) handle(node_.retry_now(now), ctx);
    } else if (const auto* i = std::get_if<core::InnerAddressAssigned>(&event.event)) {
        // Only a VPN layer below this one carries our packets; an address another layer got is
        // not a care-of address for us.
        if (config_.care_of_source != CareOfSource::InnerAddress) return;
        if (event.origin == core::RaisedEvent::external || event.origin <= ctx.position()) return;
        if (!i->assigned) {
            // The VPN's IKE SA ended and took its address with it (a gateway restart, say): no
            // care-of address until the next one; then we register again, even at the same
            // address, since the home agent's binding may have run out or been lost meanwhile.
            if (i->prefix.address == node_.care_of_address()) handle(node_.care_of_address_changed({}, now), ctx);
            return;
        }
        if (i->prefix.address == node_.care_of_address()) return;
        // RFC 5265 §4 step 5: the VPN tunnel inner address is the i-MIP co-located CoA.
        handle(node_.care_of_address_changed(i->prefix.address, now), ctx);
    } else if (const auto* sa = std::get_if<core::SaInstalled>(&event.event)) {
        // The VPN below installs its first outbound SA just after raising the inner address
        // (our care-of address): a request sent in between found no SA, so try again at once
        // rather than after the retransmission timer.
        if (sa->spi_outbound == 0 || config_.care_of_source != CareOfSource::InnerAddress) return;
        if (event.origin == core::RaisedEvent::external || event.origin <= ctx.position()) return;
        handle(node_.retry_now(now), ctx);
    }
}

// ---- RFC 5265 internal-network detection (i-MIP) ----

bool MobileNodeStage::detecting_events(const core::RaisedEvent& event, core::StageContext& ctx) {
    const auto now = ctx.now();
    if (const auto* a = std::get_if<core::AddressChanged>(&event.event)) {
        Link* link = link_of(a->ifindex);
        if (link == nullptr) return false;
        if (a->added && a->prefix.address != link->address) {
            link->address = a->prefix.address;
            attach(*link, ctx);
        } else if (!a->added && a->prefix.address == link->address) {
            link->address = {};
            detach(*link, ctx);
        }
        return true;
    }
    if (const auto* l = std::get_if<core::LinkChanged>(&event.event)) {
        Link* link = link_of(l->ifindex);
        if (link == nullptr) return false;
        // RFC 5265 §6: any connection-status change restarts detection (an L2 trigger). The
        // kernel keeps an IPv4 address across link down and up, so it is kept here too.
        if (!l->up) detach(*link, ctx);
        else if (!link->address.is_unspecified()) attach(*link, ctx);
        return true;
    }
    if (const auto* r = std::get_if<core::RouteChanged>(&event.event)) {
        // The default route follows the address: a direct request sent in between was lost.
        if (Link* link = link_of(r->ifindex); link != nullptr && r->added) handle_direct(*link, link->direct->retry_now(now), ctx);
        return false;
    }
    if (const auto* reg = std::get_if<core::RegistrationChanged>(&event.event)) {
        // The x-MIP layer below accepted its external home agent's authenticated reply for an
        // interface's address: the x-HA answered for that interface (RFC 5265 §3.3). Its core
        // matched the reply to its own request; the care-of address ties it to the attachment.
        if (event.origin == core::RaisedEvent::external || event.origin <= ctx.position()) return false;
        for (auto& link : links_) {
            if (!is_external_answer(link, *reg)) continue;
            link.external_answer_waiting = true;
            sync_detection(ctx);
            break;
        }
        return false;
    }
    if (const auto* inner = std::get_if<core::InnerAddressAssigned>(&event.event)) {
        if (event.origin == core::RaisedEvent::external || event.origin <= ctx.position()) return false;
        if (inner->assigned) inner_address_ = inner->prefix.address;
        else if (inner_address_ == inner->prefix.address) inner_address_.reset();
        // Outside, the usual path registers it (or drops it); otherwise it waits for outside.
        return announced_mode_ != core::AccessModeChanged::Mode::Outside;
    }
    return false;
}

bool MobileNodeStage::direct_reply_interface(const core::PacketBuf& packet, const core::Ipv4View& ip, core::Ipv4Address from,
                                             std::uint32_t& ifindex, Link*& link) noexcept {
    if (packet.meta().tunnelled) return false;
    // In the clear to one of our interfaces' addresses, or, through an agent, to the home
    // address (relayed by the agent: the one it came from, else any agent we are attached by).
    const auto destination = ip.destination();
    Link* addressed = nullptr;
    for (auto& l : links_)
        if (!l.address.is_unspecified() && l.address == destination) addressed = &l;
    if (addressed == nullptr && destination == node_.home_address()) {
        for (auto& l : links_)
            if (l.agent && (addressed == nullptr || l.agent->address == from)) addressed = &l;
    }
    if (addressed == nullptr) return false;
    // RFC 5265 §6: it speaks only for the interface it arrived on. Where the shell says which
    // that was, a reply addressed to one interface that came in on another answers nothing of
    // the other's (detection rejects it: unknown interface or identification).
    const auto ingress = packet.meta().ingress_ifindex;
    ifindex = ingress != 0 ? ingress : addressed->ifindex;
    link = link_of(ifindex);
    return true;
}

MobileNodeStage::Link* MobileNodeStage::advert_link(const core::PacketBuf& packet) noexcept {
    if (const auto ingress = packet.meta().ingress_ifindex; ingress != 0) return link_of(ingress);
    if (links_.size() == 1) return &links_.front();
    // Not told where it arrived: only an interface without an address of its own attaches
    // through an agent; with several such, the advertisement cannot be placed.
    Link* only = nullptr;
    for (auto& l : links_) {
        if (!l.address.is_unspecified()) continue;
        if (only != nullptr) return nullptr;
        only = &l;
    }
    return only;
}

bool MobileNodeStage::is_external_answer(const Link& link, const core::RegistrationChanged& reg) const noexcept {
    if (reg.kind != core::RegistrationChanged::Kind::OwnRegistration || !reg.registered || reg.home_address == node_.home_address())
        return false;
    // Through the agent this interface is attached by, with its care-of address (fvc) ...
    if (link.agent) return reg.foreign_agent == link.agent->address && reg.care_of_address == link.agent->advert.care_of[0];
    // ... or co-located at the interface's address (cvc).
    return !link.address.is_unspecified() && reg.foreign_agent.is_unspecified() && reg.care_of_address == link.address;
}

void MobileNodeStage::agent_heard(Link& link, const AgentAdvertisement& advert, core::Ipv4Address source, core::StageContext& ctx) {
    // A foreign agent is the attachment only on a link that gives us no address of our own
    // (RFC 5944 §3.6 allows either kind of care-of address; like the plain mobile node, we
    // prefer our own), and only one that takes visitors.
    if (!config_.detection->foreign_agents || !link.address.is_unspecified() || !advert.foreign_agent() || advert.busy() ||
        advert.care_of_count == 0)
        return;
    // The internal home agent advertising on its own link is not an agent to visit through.
    if (advert.home_agent() && source == node_.home_agent()) return;
    const auto now = ctx.now();
    if (link.agent && link.agent->address == source && link.agent->advert.care_of[0] == advert.care_of[0]) {
        link.agent->advert = advert;
        // The same attachment. Inside through it, a rebooted agent (sequence number below 256
        // again, RFC 5944 §2.4.2) lost its visitor list: the direct client registers again.
        const auto st = detection_->status(link.ifindex, now);
        if (st && access_mode_of(st->mode) == core::AccessModeChanged::Mode::Inside)
            handle_direct(link, link.direct->agent_advertisement(advert, source, now), ctx);
        return;
    }
    // A new agent, or a new care-of address: a status change (RFC 5265 §6). Detection starts
    // over, and the direct request goes to the i-HA through this agent.
    link.agent = HeardAgent{source, advert};
    ctx.log().info("interface ", link.name, " via foreign agent ", source.to_string(), " (care-of address ",
                   advert.care_of[0].to_string(), "): detecting whether inside (RFC 5265)");
    detection_->attachment_changed(link.ifindex, NetworkDetection::Attachment::ForeignAgent, now, source);
    expect_external_registration(link, now);
    handle_direct(link, link.direct->care_of_address_changed({}, now), ctx);  // forget any earlier agent
    handle_direct(link, link.direct->agent_advertisement(advert, source, now), ctx);
    sync_detection(ctx);
}

MobileNode::Output MobileNodeStage::register_direct(Link& link, core::TimePoint now) {
    // On the home link the direct request is a deregistration, even with no binding to end.
    if (!link.agent && !link.address.is_unspecified() && link.address == link.direct->home_address())
        return link.direct->deregister_at_home(now);
    if (!link.agent) return link.direct->care_of_address_changed(link.address, now);
    // Through the agent: again with its care-of address; a client that was stopped starts over
    // from the agent's advertisement.
    if (link.direct->care_of_address() == link.agent->advert.care_of[0]) return link.direct->link_changed(now);
    return link.direct->agent_advertisement(link.agent->advert, link.agent->address, now);
}

void MobileNodeStage::expect_external_registration(Link& link, core::TimePoint now) {
    link.external_answer_waiting = false;
    link.external_token = ++next_external_token_;
    detection_->request_sent(link.ifindex, NetworkDetection::Target::External, link.external_token, now);
}

void MobileNodeStage::attach(Link& link, core::StageContext& ctx) {
    const auto now = ctx.now();
    ctx.log().info("interface ", link.name, " at ", link.address.to_string(), ": detecting whether inside (RFC 5265)");
    link.agent.reset();
    detection_->attachment_changed(link.ifindex, NetworkDetection::Attachment::CoLocated, now);
    expect_external_registration(link, now);
    // The direct request to the internal home agent, with this address as co-located CoA
    // (a deregistration on the home link).
    handle_direct(link, register_direct(link, now), ctx);
    sync_detection(ctx);
}

void MobileNodeStage::detach(Link& link, core::StageContext& ctx) {
    const auto now = ctx.now();
    link.agent.reset();  // a new link may hold another agent, or none (RFC 5944 §2.4.2)
    detection_->attachment_changed(link.ifindex, NetworkDetection::Attachment::Detached, now);
    handle_direct(link, link.direct->care_of_address_changed({}, now), ctx);
    sync_detection(ctx);
}

void MobileNodeStage::transmit_direct(Link& link, const MobileNode::Transmit& t, core::StageContext& ctx) {
    auto buf = ctx.allocate();
    if (!emit_udp_packet(buf, {t.source, t.source_port}, t.destination, t.ttl, t.payload.bytes())) {
        ++counters_.no_buffer;
        return;
    }
    // Only requests sent directly on this interface since its last change can prove anything
    // about it; so they leave by it, whatever the routing table prefers.
    if (auto request = RegistrationRequestView::check(t.payload.bytes()))
        detection_->request_sent(link.ifindex, NetworkDetection::Target::Internal, request->identification(), ctx.now());
    share_identification(t, *link.direct);
    buf.meta().direct = true;
    buf.meta().egress_ifindex = link.ifindex;
    ++counters_.requests_sent;
    ++counters_.direct_requests_sent;
    link.direct_request_number = counters_.requests_sent;
    ctx.send_control(std::move(buf));
}

void MobileNodeStage::handle_direct(Link& link, const MobileNode::Output& out, core::StageContext& ctx) {
    if (out.transmit) transmit_direct(link, *out.transmit, ctx);
    if (!out.changed) return;
    core::RegistrationChanged change = *out.changed;
    // Mode f: the shell routes user data via the intranet agent (RFC 5944 §4.2.2).
    if (const auto& reg = link.direct->registration(); change.registered && reg && reg->via_foreign_agent) {
        change.foreign_agent = reg->foreign_agent;
        change.link_ifindex = link.ifindex;
    }
    ctx.log().info(change.registered ? "registered directly " : "direct registration ended for ", change.home_address.to_string(),
                   " at care-of address ", change.care_of_address.to_string(),
                   change.foreign_agent.is_unspecified() ? "" : " via foreign agent ",
                   change.foreign_agent.is_unspecified() ? std::string() : change.foreign_agent.to_string(), " (interface ",
                   link.name, ")");
    ctx.raise(change);
    // The internal home agent keeps one binding per home address: another inside interface
    // registering directly has just taken it from the one user data uses, which takes it back.
    Link& serving = serving_link();
    if (change.registered && inside() && &link != &serving && serving.attached() &&
        serving.direct->state() != MobileNode::State::Registering)
        handle_direct(serving, register_direct(serving, ctx.now()), ctx);
}

void MobileNodeStage::sync_link(Link& link, core::StageContext& ctx) {
    using A = core::AccessModeChanged::Mode;
    const auto now = ctx.now();
    auto st = detection_->status(link.ifindex, now);
    if (!st) return;
    // An x-MIP registration that came while inside decides nothing later: after T_MONITOR
    // the x-MIP layer registers again, and that answer counts.
    if (access_mode_of(st->mode) == A::Inside) link.external_answer_waiting = false;
    // The 2002 profile asks the x-HA only after the i-HA had its chance; an x-MIP answer that
    // came earlier counts from then on.
    if (link.external_answer_waiting && st->register_external) {
        link.external_answer_waiting = false;
        detection_->external_registered(link.ifindex, link.external_token, now);
        st = detection_->status(link.ifindex, now);
    }
    const A mode = access_mode_of(st->mode);
    const auto direct_state = link.direct->state();
    if (st->register_internal && link.attached() &&
        (direct_state == MobileNode::State::Registered || direct_state == MobileNode::State::Idle ||
         direct_state == MobileNode::State::AtHome)) {
        // Inside: the re-registration every T_MONITOR - N (RFC 5265 §6), or detection starting
        // again after T_MONITOR; the client has nothing in flight, so ask now. (A denied one
        // retries on its own timer.)
        handle_direct(link, register_direct(link, now), ctx);
    } else if (mode == A::Outside && !st->register_internal && direct_state == MobileNode::State::Registering) {
        // RFC 5265 §3.3: the i-HA was retried "for a while" after the x-HA answered; stop. A
        // late answer to an earlier request still makes the interface inside.
        handle_direct(link, link.direct->care_of_address_changed({}, now), ctx);
    } else if (mode == A::Inside && active_registration_of(*link.direct) == nullptr &&
               direct_state != MobileNode::State::Registering && direct_state != MobileNode::State::Deregistering &&
               direct_state != MobileNode::State::AtHome && link.attached()) {
        // Inside on a late answer the stopped client could not take: register properly now.
        handle_direct(link, register_direct(link, now), ctx);
    }
}

std::size_t MobileNodeStage::link_to_announce(core::TimePoint now) const noexcept {
    // User data and the layers below go where detection prefers: inside, else outside.
    if (const auto preferred = detection_->preferred_interface(now)) {
        for (std::size_t i = 0; i < links_.size(); ++i)
            if (links_[i].ifindex == *preferred) return i;
    }
    // None decided: the layers below stay on (or move to) an attached interface, so that
    // x-MIP's registration there is the external answer that decides it. (Attached as
    // detection sees it: a link that is down keeps its address but serves nothing.)
    const auto attached = [&](const Link& l) {
        const auto st = detection_->status(l.ifindex, now);
        return st && st->attachment != NetworkDetection::Attachment::Detached;
    };
    if (attached(links_[announced_link_])) return announced_link_;
    for (std::size_t i = 0; i < links_.size(); ++i)
        if (attached(links_[i])) return i;
    return announced_link_;
}

void MobileNodeStage::sync_detection(core::StageContext& ctx) {
    using A = core::AccessModeChanged::Mode;
    const auto now = ctx.now();
    for (auto& link : links_) sync_link(link, ctx);
    const std::size_t index = link_to_announce(now);
    Link& link = links_[index];
    const auto st = detection_->status(link.ifindex, now);
    const A mode = st ? access_mode_of(st->mode) : A::NoService;
    const bool moved = index != announced_link_;
    if (mode_announced_ && mode == announced_mode_ && !moved) return;
    const A before = announced_mode_;
    announced_mode_ = mode;
    announced_link_ = index;
    mode_announced_ = true;
    ctx.log().info("access mode ", NetworkDetection::mode_name(st ? st->mode : NetworkDetection::Mode::NoService), " (",
                   NetworkDetection::cause_name(st ? st->decided_by.cause : NetworkDetection::Decision::Cause::None),
                   ") on interface ", link.name);
    // x-MIP registers (again) on this interface: after being dormant, or having followed us here.
    if (mode != A::Inside && (before == A::Inside || moved)) expect_external_registration(link, now);
    if (mode == A::Inside) {
        // The binding now points at the interface's address; the VPN's inner address is not
        // our care-of address while inside.
        const bool inner_request_out = !node_.care_of_address().is_unspecified() &&
                                       (node_.state() == MobileNode::State::Registering || node_.state() == MobileNode::State::Registered);
        if (!node_.care_of_address().is_unspecified()) handle(node_.care_of_address_changed({}, now), ctx);
        // RFC 5265 §3.3: a late i-HA answer after IPsec setup began. The inner-address request
        // sent meanwhile may have reached the i-HA after the direct one that was just answered,
        // and then its binding points into the VPN: register directly once more, last. The
        // same when user data moves to another inside interface: the binding may be elsewhere.
        // A direct request still in flight does that too, unless it left before the latest
        // inner-address request: the late answer may be to an earlier retry, the pending one
        // then lost the race at the i-HA (its Identification is older, RFC 5944 §5.7) and its
        // answer would leave the binding in the VPN until the next re-registration (RFC 5265
        // §6, T_MONITOR - N later). Then start the direct registration over.
        const bool direct_pending_older =
            inner_request_out && link.direct_request_number < inner_request_number_;
        if ((inner_request_out || moved) && link.attached() &&
            (link.direct->state() != MobileNode::State::Registering || direct_pending_older))
            handle_direct(link, register_direct(link, now), ctx);
    } else if (mode == A::Outside) {
        if (inner_address_ && node_.care_of_address() != *inner_address_) inner_registration_due_ = true;
    }
    ctx.raise(core::AccessModeChanged{mode, link.ifindex, config_.detection->keep_vpn_sas, config_.detection->ike_delay});
}

bool MobileNodeStage::solicits_without_address() const noexcept {
    return node_.config().foreign_agents_when_no_address && config_.care_of_ifindex != 0;
}

std::optional<core::TimePoint> MobileNodeStage::solicitation_deadline() const noexcept {
    if (advert_heard_) return std::nullopt;
    if (config_.care_of_source == CareOfSource::ForeignAgent) return next_solicitation_;
    // Interface mode: only while the link has given us no address.
    if (config_.care_of_source == CareOfSource::Interface && solicits_without_address() &&
        node_.care_of_address().is_unspecified())
        return next_solicitation_;
    return std::nullopt;
}

std::optional<core::TimePoint> MobileNodeStage::poll(core::StageContext& ctx) {
    const auto now = ctx.now();
    last_now_ = now;
    if (dormant_) {
        if (deregister_at_ && now >= *deregister_at_) deregister_dormant(ctx);
        return deregister_at_;  // then nothing until the layer above wakes us
    }
    if (!started_) {
        started_ = true;
        if (config_.care_of_source == CareOfSource::Static && !config_.static_care_of.is_unspecified())
            handle(node_.care_of_address_changed(config_.static_care_of, now), ctx);
        if (config_.care_of_source == CareOfSource::ForeignAgent) {
            next_solicitation_ = now;
            solicitation_interval_ = std::chrono::seconds(1);
        }
    }
    // Several timers may be due at once (expiry, then a new request); the core reports one
    // thing per call.
    for (int i = 0; i < 8; ++i) {
        auto out = node_.poll(now);
        const bool any = out.transmit || out.changed || out.keepalive_due;
        handle(out, ctx);
        const auto next = node_.next_deadline();
        if (!any || !next || *next > now) break;
    }
    if (auto due = solicitation_deadline(); due && now >= *due) {
        send_solicitation(ctx);
        // Three at one per second, then binary exponential back-off (RFC 5944 §2.4.1).
        if (++solicitations_in_burst_ >= initial_solicitations)
            solicitation_interval_ = std::min<core::Duration>(solicitation_interval_ * 2, config_.solicitation_max_interval);
        next_solicitation_ = now + solicitation_interval_;
    }
    std::optional<core::TimePoint> next = node_.next_deadline();
    if (auto s = solicitation_deadline(); s && (!next || *s < *next)) next = s;
    if (detection_) {
        for (auto& link : links_) {
            for (int i = 0; i < 8; ++i) {
                auto out = link.direct->poll(now);
                const bool any = out.transmit || out.changed || out.keepalive_due;
                handle_direct(link, out, ctx);
                const auto due = link.direct->next_deadline();
                if (!any || !due || *due > now) break;
            }
        }
        detection_->poll(now);
        sync_detection(ctx);
        if (inner_registration_due_) {
            // Outside again (RFC 5265 §4 step 5): the VPN's inner address is the care-of
            // address; the layers below have seen the mode change by now.
            inner_registration_due_ = false;
            if (inner_address_ && announced_mode_ == core::AccessModeChanged::Mode::Outside)
                handle(node_.care_of_address_changed(*inner_address_, now), ctx);
        }
        for (auto d : {node_.next_deadline(), detection_->next_deadline()})
            if (d && (!next || *d < *next)) next = d;
        for (const auto& link : links_)
            if (auto d = link.direct->next_deadline(); d && (!next || *d < *next)) next = d;
        if (inner_registration_due_ && (!next || now < *next)) next = now;
    }
    return next;
}

void MobileNodeStage::report_link(core::StatusSink& out, const Link& link) const {
    const auto st = detection_->status(link.ifindex, last_now_);
    out.field("mode", NetworkDetection::mode_name(st ? st->mode : NetworkDetection::Mode::NoService));
    out.field("cause", NetworkDetection::cause_name(st ? st->decided_by.cause : NetworkDetection::Decision::Cause::None));
    out.field("data_allowed", st && st->data_allowed);
    out.field("interface_address", link.address.to_string());
    if (link.agent) {
        out.field("foreign_agent", link.agent->address.to_string());
        out.field("foreign_agent_care_of", link.agent->advert.care_of[0].to_string());
    }
    out.field("direct_state", to_string(link.direct->state()));
    // RFC 5265 §6: user data stops once this passes T_MONITOR.
    if (st && st->last_internal_success)
        out.field("since_internal_success_s", static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                                                            last_now_ - *st->last_internal_success).count()));
}

void MobileNodeStage::report(core::StatusSink& out) const {
    // The registration in effect: inside the intranet (RFC 5265 mode c) the direct one, whose
    // care-of address is the interface's, not the VPN inner address.
    const MobileNode& in_effect = serving();
    out.field("state", to_string(in_effect.state()));
    out.field("care_of_source", inside() ? (serving_link().agent ? "foreign_agent" : "interface") : to_string(config_.care_of_source));
    out.field("home_address", node_.home_address().to_string());
    out.field("home_agent", node_.home_agent().to_string());
    out.field("care_of_address", in_effect.care_of_address().to_string());
    const auto* reg = active_registration();
    out.field("registered", reg != nullptr);
    if (reg != nullptr) {
        out.field("mode", reg->via_foreign_agent ? "foreign_agent" : reg->mode == TunnelMode::Udp ? "ip_in_udp" : "ip_in_ip");
        out.field("reverse_tunnel", reg->reverse_tunnel);
        out.field("lifetime_granted_s", static_cast<std::uint64_t>(reg->lifetime));
        if (reg->expires != core::TimePoint::max()) {
            out.field("lifetime_left_s", static_cast<std::int64_t>(
                                             std::chrono::duration_cast<std::chrono::seconds>(reg->expires - last_now_).count()));
        }
        if (reg->mode == TunnelMode::Udp) {
            out.field("keepalive_interval_s", static_cast<std::uint64_t>(reg->keepalive_interval.count()));
            out.field("source_port", static_cast<std::uint64_t>(reg->source_port));
        }
    }
    if (auto code = node_.last_reply_code()) out.field("last_reply_code", static_cast<std::uint64_t>(*code));
    if (dormant_) out.field("dormant", true);
    if (detection_) {
        out.begin_object("detection");
        // The interface user data follows (and the layers below), then every interface.
        out.field("interface", serving_link().name);
        report_link(out, serving_link());
        out.field("t_monitor_s", static_cast<std::int64_t>(
                                     std::chrono::duration_cast<std::chrono::seconds>(config_.detection->t_monitor).count()));
        out.begin_array("interfaces");
        for (const auto& link : links_) {
            out.begin_element();
            out.field("name", link.name);
            out.field("ifindex", static_cast<std::uint64_t>(link.ifindex));
            out.field("in_use", &link == &serving_link() && data_allowed_now(last_now_));
            report_link(out, link);
            out.end();
        }
        out.end();
        out.begin_object("replies");
        for (std::size_t i = 0; i < NetworkDetection::reply_result_count; ++i) {
            const auto r = static_cast<NetworkDetection::ReplyResult>(i);
            out.field(NetworkDetection::result_name(r), detection_->count(r));
        }
        out.end();
        out.end();
    }
    out.begin_object("counters");
    out.field("requests_sent", counters_.requests_sent);
    out.field("replies_received", counters_.replies_received);
    out.field("advertisements_received", counters_.advertisements_received);
    out.field("solicitations_sent", counters_.solicitations_sent);
    out.field("tunnelled_out", counters_.tunnelled_out);
    out.field("tunnelled_in", counters_.tunnelled_in);
    out.field("passed_plain_out", counters_.passed_plain_out);
    out.field("passed_unrelated_out", counters_.passed_unrelated_out);
    out.field("dropped_not_registered", counters_.dropped_not_registered);
    out.field("dropped_binding_mismatch", counters_.dropped_binding_mismatch);
    out.field("keepalives_sent", counters_.keepalives_sent);
    out.field("keepalive_replies", counters_.keepalive_replies);
    out.field("no_buffer", counters_.no_buffer);
    out.field("dropped_loop", counters_.dropped_loop);
    if (detection_) {
        out.field("dropped_detecting", counters_.dropped_detecting);
        out.field("direct_requests_sent", counters_.direct_requests_sent);
        out.field("direct_replies_rejected", counters_.direct_replies_rejected);
    }
    out.field("passed_direct", counters_.passed_direct);
    out.field("passed_dormant", counters_.passed_dormant);
    out.field("passed_other_reply", counters_.passed_other_reply);
    out.end();
}

}  // namespace mipsec::mip
