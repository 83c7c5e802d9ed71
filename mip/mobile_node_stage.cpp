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

}  // namespace

MobileNodeStage::MobileNodeStage(Config config, crypto::Random& random)
    : config_(normalise(std::move(config))), node_(std::move(config_.node), random) {}  // the SA key lives only in the core

std::size_t MobileNodeStage::headroom() const noexcept {
    return node_.config().udp_tunnelling == MobileNode::UdpTunnelling::Off ? ip_in_ip_overhead : ip_in_udp_overhead;
}

const MobileNode::Registration* MobileNodeStage::active_registration() const noexcept {
    const auto& reg = node_.registration();
    // After a move the old binding still runs at the HA, but its CoA is no longer ours:
    // sending from it would be wrong (and blocked by ingress filtering).
    if (!reg || reg->care_of_address != node_.care_of_address()) return nullptr;
    return &*reg;
}

bool MobileNodeStage::at_home() const noexcept {
    const auto s = node_.state();
    if (s == MobileNode::State::AtHome || s == MobileNode::State::Deregistering) return true;
    return !node_.home_address().is_unspecified() && node_.care_of_address() == node_.home_address();
}

void MobileNodeStage::transmit(const MobileNode::Transmit& t, core::StageContext& ctx) {
    auto buf = ctx.allocate();
    if (!emit_udp_packet(buf, {t.source, t.source_port}, t.destination, t.ttl, t.payload.bytes())) {
        ++counters_.no_buffer;
        ctx.log().limited(core::LogLevel::Warn, ctx.now(), "no buffer for a registration request; it will be retransmitted");
        return;
    }
    // Through an agent on a link where we may have no address: leave by that link.
    if (t.destination.address != node_.home_agent()) buf.meta().egress_ifindex = config_.care_of_ifindex;
    ++counters_.requests_sent;
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
        return Verdict::pass();
    }
    // RFC 3024 §5.2: the reverse tunnel uses the forward tunnel's encapsulation.
    const OuterHeader outer{reg->care_of_address, reg->home_agent, config_.tunnel_ttl, config_.df_when_inner_clear,
                            next_identification_++};
    const Verdict v = reg->mode == TunnelMode::Udp ? push_ip_in_udp(packet, outer, reg->source_port, registration_port)
                                                   : push_ip_in_ip(packet, outer);
    if (v.passed()) {
        ++counters_.tunnelled_out;
        node_.note_sent_to_home_agent(ctx.now());
    }
    return v;
}

Verdict MobileNodeStage::decapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    const auto now = ctx.now();

    if (auto udp = udp_of(*ip); udp && udp->source_port() == registration_port &&
                                udp->destination_port() == node_.config().source_port && !udp->payload().empty() &&
                                udp->payload()[0] == message_type::registration_reply) {
        // RFC 5944 §3.6.2.1: a non-zero checksum that fails means silent discard.
        if (!udp->checksum_valid(ip->source(), ip->destination())) return Verdict::drop(DropReason::Malformed);
        ++counters_.replies_received;
        handle(node_.on_reply(udp->payload(), {ip->source(), udp->source_port()}, now), ctx);
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
                handle(node_.agent_advertisement(*advert, ip->source(), now), ctx);
                return Verdict::consumed();
            }
        }
    }

    auto tunnel = peek_tunnel(*ip);
    // Only the HA's tunnel is this layer's; other tunnels belong to the host or a layer above.
    if (!tunnel || tunnel->source != node_.home_agent()) return Verdict::not_mine();
    if (tunnel->fragment) return Verdict::drop(DropReason::Fragment);
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

    if (reg->mode == TunnelMode::Udp) {
        auto inner = core::Ipv4View::check(packet.bytes());
        if (inner && inner->protocol() == core::ip_protocol::icmp && inner->source() == reg->home_agent &&
            inner->destination() == reg->home_address && !inner->is_fragment()) {
            auto icmp = core::IcmpView::check(inner->payload());
            if (icmp && icmp->type() == core::icmp_type::echo_reply && icmp->echo_identifier() == reg->source_port &&
                icmp->checksum_valid()) {
                // RFC 3519 §3.6: the HA's answer to our keepalive; the NAT mapping is alive.
                ++counters_.keepalive_replies;
                node_.note_keepalive_reply();
                return Verdict::consumed();
            }
        }
    }
    ++counters_.tunnelled_in;
    return Verdict::pass();
}

void MobileNodeStage::on_event(const core::RaisedEvent& event, core::StageContext& ctx) {
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
    return next;
}

void MobileNodeStage::report(core::StatusSink& out) const {
    out.field("state", to_string(node_.state()));
    out.field("care_of_source", to_string(config_.care_of_source));
    out.field("home_address", node_.home_address().to_string());
    out.field("home_agent", node_.home_agent().to_string());
    out.field("care_of_address", node_.care_of_address().to_string());
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
    out.end();
}

}  // namespace mipsec::mip
