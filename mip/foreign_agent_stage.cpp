// SPDX-License-Identifier: MIT
#include "mip/foreign_agent_stage.hpp"

#include <string>

#include "core/icmp.hpp"
#include "mip/tunnel_encap.hpp"

namespace mipsec::mip {

using core::DropReason;
using core::Verdict;

namespace {

/// RFC 2003 §3.1 / RFC 1812: forwarding decrements the TTL; a packet that would reach 0 dies here.
bool forward_ttl(core::PacketBuf& packet) noexcept {
    auto ip = core::Ipv4MutView::check(packet.bytes());
    if (!ip || ip->ttl() <= 1) return false;
    ip->decrement_ttl();
    return true;
}

}  // namespace

ForeignAgentStage::ForeignAgentStage(Config config, crypto::Random& random)
    : config_(std::move(config)), agent_(config_.agent, random), too_big_(core::MtuGuard::Config{.outer_mtu = config_.outer_mtu}) {
    config_.agent = agent_.config();  // as normalised by the core
}

std::size_t ForeignAgentStage::headroom() const noexcept {
    return agent_.config().home_agent_udp_tunnelling == ForeignAgent::UdpTunnelling::Off ? ip_in_ip_overhead : ip_in_udp_overhead;
}

void ForeignAgentStage::send_keepalive(const ForeignAgent::Keepalive& k, core::StageContext& ctx) {
    auto buf = ctx.allocate();
    // The buffer has headroom for the stages below; our UDP tunnel headers go in front of the echo.
    if (!buf.valid() || buf.headroom() + ip_in_udp_overhead > buf.capacity()) {
        ++counters_.no_buffer;
        return;
    }
    buf.reset(buf.headroom() + ip_in_udp_overhead);
    // RFC 3519 §3.6: an ICMP echo request from the home address to the HA, inside the tunnel.
    const std::uint16_t port = agent_.config().relay_port;
    if (!emit_echo_packet(buf, k.home_address, k.home_agent, core::icmp_type::echo_request, port, k.sequence)) {
        ++counters_.no_buffer;
        return;
    }
    const OuterHeader outer{k.care_of_address, k.home_agent, config_.tunnel_ttl, config_.df_when_inner_clear, next_identification_++};
    if (!push_ip_in_udp(buf, outer, port, registration_port).passed()) {
        ++counters_.no_buffer;
        return;
    }
    ++counters_.keepalives_sent;
    ctx.send_control(std::move(buf));
}

bool ForeignAgentStage::addressed_to_us(core::Ipv4Address destination) const noexcept {
    return destination == agent_.config().link_address || agent_.is_care_of_address(destination) ||
           destination == all_mobility_agents || destination.is_broadcast();
}

bool ForeignAgentStage::emit(const ForeignAgent::Output& out, core::StageContext& ctx) {
    bool any = false;
    if (out.discard != ForeignAgent::Discard::None) ++counters_.messages_discarded;
    if (out.datagram) {
        any = true;
        const auto& d = *out.datagram;
        auto buf = ctx.allocate();
        if (!emit_udp_packet(buf, d.source, d.destination, d.ttl, d.bytes())) {
            ++counters_.no_buffer;
        } else if (d.toward == ForeignAgent::Toward::HomeAgent) {
            ++counters_.requests_relayed;
            ctx.send_control(std::move(buf));
        } else {
            if (out.denied) {
                ++counters_.denials_sent;
                ctx.log().limited(core::LogLevel::Debug, ctx.now(), "registration of ", d.destination.to_string(),
                                  " denied with code ", static_cast<unsigned>(*out.denied));
            } else {
                ++counters_.replies_relayed;
            }
            ctx.deliver_inward(std::move(buf));
        }
    }
    if (out.advertisement) {
        any = true;
        const auto& a = *out.advertisement;
        auto buf = ctx.allocate();
        const std::size_t len = core::Ipv4Header::len + a.advert.emitted_len();
        if (!buf.valid() || !buf.put(len)) {
            ++counters_.no_buffer;
        } else {
            core::Ipv4Header ip;
            ip.total_length = static_cast<std::uint16_t>(len);
            ip.ttl = 1;  // RFC 5944 §2.3: every advertisement has TTL 1
            ip.protocol = core::ip_protocol::icmp;
            ip.source = a.source;
            ip.destination = a.destination;
            ip.emit(buf.bytes());
            a.advert.emit(buf.bytes().subspan(core::Ipv4Header::len));
            ++counters_.advertisements_sent;
            ctx.deliver_inward(std::move(buf));
        }
    }
    if (out.keepalive) {
        any = true;
        send_keepalive(*out.keepalive, ctx);
    }
    if (out.change) {
        any = true;
        const auto& v = out.change->visitor;
        ctx.log().info(out.change->added ? "visitor " : "visitor gone: ", v.home_address.to_string(), " (home agent ",
                       v.home_agent.to_string(), ", care-of ", v.care_of_address.to_string(), ")");
        ctx.raise(core::RegistrationChanged{v.home_address, v.care_of_address, out.change->added, {}, 0,
                                            core::RegistrationChanged::Kind::Visitor});
    }
    return any;
}

Verdict ForeignAgentStage::encapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    const auto now = ctx.now();
    last_now_ = now;

    if (auto udp = udp_of(*ip); udp && udp->destination_port() == registration_port && addressed_to_us(ip->destination()) &&
                                !udp->payload().empty() && udp->payload()[0] == message_type::registration_request) {
        if (!udp->checksum_valid(ip->source(), ip->destination())) return Verdict::drop(DropReason::Malformed);
        const ForeignAgent::RequestInfo from{ip->source(), ip->destination(), ip->ttl(), udp->source_port()};
        emit(agent_.on_request(udp->payload(), from, now), ctx);
        return Verdict::consumed();
    }
    if (ip->protocol() == core::ip_protocol::icmp && !ip->is_fragment() && addressed_to_us(ip->destination())) {
        if (auto sol = AgentSolicitationView::check(ip->payload())) {
            if (!core::IcmpView::check(ip->payload())->checksum_valid()) return Verdict::drop(DropReason::Malformed);
            ++counters_.solicitations;
            auto out = agent_.on_solicitation(ip->source(), now);
            if (out.discard == ForeignAgent::Discard::RateLimited) {
                ++counters_.solicitations_held_back;
                return Verdict::consumed();
            }
            emit(out, ctx);
            return Verdict::consumed();
        }
    }

    const auto* v = agent_.visitor(ip->source());
    if (v == nullptr || !v->reverse_tunnel || v->colocated || v->expires <= now) {
        ++counters_.passed_other;
        return Verdict::not_mine();
    }
    // RFC 3024 §5.2 Direct Delivery: the FA tunnels the visitor's plain packets to its HA.
    const bool udp = v->mode == TunnelMode::Udp;
    too_big_.set_overhead(udp ? ip_in_udp_overhead : ip_in_ip_overhead);
    if (auto quote = too_big_.too_big(packet)) {
        // RFC 2003 §5.1: the tunnel entry point tells the sender the tunnel's MTU (RFC 1191 §4).
        ++counters_.too_big_dropped;
        auto answer = ctx.allocate();
        if (answer.valid() && too_big_.answer(answer, *quote, now) == core::MtuGuard::Outcome::Answered) {
            ++counters_.too_big_answered;
            ctx.deliver_inward(std::move(answer));
        }
        return Verdict::drop(DropReason::TooBig);
    }
    if (!forward_ttl(packet)) return Verdict::drop(DropReason::TtlExpired);
    const OuterHeader outer{v->care_of_address, v->home_agent, config_.tunnel_ttl, config_.df_when_inner_clear,
                            next_identification_++};
    // RFC 3519 §3.3: the same ports as the registration, so the NAT mapping is the same.
    auto verdict = udp ? push_ip_in_udp(packet, outer, agent_.config().relay_port, registration_port) : push_ip_in_ip(packet, outer);
    if (verdict.passed()) {
        ++counters_.reverse_tunnelled;
        if (udp) ++counters_.reverse_tunnelled_udp;
        agent_.note_sent_to_home_agent(v->home_address, now);
    }
    return verdict;
}

Verdict ForeignAgentStage::decapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    const auto now = ctx.now();
    last_now_ = now;

    if (auto udp = udp_of(*ip); udp && udp->destination_port() == agent_.config().relay_port &&
                                agent_.is_care_of_address(ip->destination()) && !udp->payload().empty() &&
                                udp->payload()[0] == message_type::registration_reply) {
        if (!udp->checksum_valid(ip->source(), ip->destination())) return Verdict::drop(DropReason::Malformed);
        emit(agent_.on_reply(udp->payload(), {ip->source(), udp->source_port()}, now), ctx);
        return Verdict::consumed();
    }

    auto tunnel = peek_tunnel(*ip);
    if (!tunnel || !agent_.is_care_of_address(tunnel->destination)) {
        ++counters_.passed_other;
        return Verdict::not_mine();
    }
    const bool udp = tunnel->kind == TunnelKind::Udp;
    if (udp) {
        // RFC 3519 §3.3: the HA answers on the registration's 5-tuple, HA:434 -> care-of:relay_port.
        if (tunnel->destination_port != agent_.config().relay_port || tunnel->source_port != registration_port)
            return Verdict::drop(DropReason::UnexpectedProtocol);
        if (!tunnel->udp_checksum_ok) return Verdict::drop(DropReason::Malformed);
        // Only IP-in-UDP is requested (Encapsulation 4 in our Tunnel Request).
        if (tunnel->next_header != core::ip_protocol::ipip) return Verdict::drop(DropReason::BadNextHeader);
    }
    if (tunnel->fragment) return Verdict::drop(DropReason::Fragment);
    if (auto verdict = strip_tunnel(packet, *tunnel); !verdict.passed()) return verdict;
    auto inner = core::Ipv4View::check(packet.bytes());
    if (!inner) return Verdict::drop(DropReason::Internal);
    const auto* v = agent_.visitor(inner->destination());
    // RFC 5944 §4.2.2: undeliverable tunnelled packets are dropped silently (no ICMP).
    if (v == nullptr || v->colocated || v->expires <= now) {
        ++counters_.dropped_no_visitor;
        return Verdict::drop(DropReason::NoBinding);
    }
    // RFC 3519 §3.3: once a binding uses UDP tunnelling, all its data does (and the reverse).
    if (tunnel->source != v->home_agent || tunnel->destination != v->care_of_address || udp != (v->mode == TunnelMode::Udp)) {
        ++counters_.dropped_binding_mismatch;
        return Verdict::drop(DropReason::BindingMismatch);
    }
    if (udp && inner->protocol() == core::ip_protocol::icmp && inner->source() == v->home_agent && !inner->is_fragment()) {
        auto icmp = core::IcmpView::check(inner->payload());
        if (icmp && icmp->type() == core::icmp_type::echo_reply && icmp->echo_identifier() == agent_.config().relay_port &&
            icmp->checksum_valid() && agent_.on_keepalive_reply(v->home_address, icmp->echo_sequence())) {
            // RFC 3519 §3.6: the HA's answer to our keepalive; the NAT mapping is alive.
            ++counters_.keepalive_replies;
            return Verdict::consumed();
        }
    }
    if (!forward_ttl(packet)) return Verdict::drop(DropReason::TtlExpired);
    ++counters_.delivered_to_visitors;
    if (udp) ++counters_.delivered_from_udp;
    return Verdict::pass();
}

void ForeignAgentStage::on_event(const core::RaisedEvent& event, core::StageContext&) {
    // The shell learnt a smaller path MTU (a send was refused): our tunnels go that way.
    if (const auto* mtu = std::get_if<core::PathMtuChanged>(&event.event);
        mtu && mtu->mtu >= core::MtuGuard::min_mtu && mtu->mtu < too_big_.outer_mtu()) {
        too_big_.set_outer_mtu(mtu->mtu);
    }
}

std::optional<core::TimePoint> ForeignAgentStage::poll(core::StageContext& ctx) {
    const auto now = ctx.now();
    last_now_ = now;
    for (int i = 0; i < 64; ++i) {
        if (!emit(agent_.poll(now), ctx)) break;
    }
    return agent_.next_deadline();
}

void ForeignAgentStage::report(core::StatusSink& out) const {
    const auto& cfg = agent_.config();
    out.field("link_address", cfg.link_address.to_string());
    std::string coas;
    for (const auto& a : cfg.care_of_addresses) {
        if (!coas.empty()) coas += ',';
        coas += a.to_string();
    }
    out.field("care_of_addresses", coas);
    out.field("reverse_tunnel", cfg.reverse_tunnel);
    out.field("outer_mtu", static_cast<std::uint64_t>(too_big_.outer_mtu()));
    out.field("home_agent_udp_tunnelling", cfg.home_agent_udp_tunnelling == ForeignAgent::UdpTunnelling::Off      ? "off"
                                           : cfg.home_agent_udp_tunnelling == ForeignAgent::UdpTunnelling::Wanted ? "wanted"
                                                                                                                  : "forced");
    out.field("next_sequence", static_cast<std::uint64_t>(agent_.next_sequence()));
    out.field("visitor_count", static_cast<std::uint64_t>(agent_.visitor_count()));
    out.field("pending_count", static_cast<std::uint64_t>(agent_.pending_count()));
    out.begin_array("visitors");
    std::size_t listed = 0;
    agent_.for_each_visitor([&](const ForeignAgent::Visitor& v) {
        if (listed++ >= config_.report_limit) return;
        out.begin_element();
        out.field("home_address", v.home_address.to_string());
        out.field("home_agent", v.home_agent.to_string());
        out.field("care_of_address", v.care_of_address.to_string());
        out.field("link", v.link.to_string());
        out.field("reverse_tunnel", v.reverse_tunnel);
        out.field("colocated", v.colocated);
        out.field("mode", v.mode == TunnelMode::Udp ? "ip_in_udp" : "ip_in_ip");
        if (v.mode == TunnelMode::Udp) {
            out.field("keepalive_interval_s", static_cast<std::uint64_t>(v.keepalive_interval.count()));
            out.field("keepalives_unanswered", static_cast<std::uint64_t>(v.keepalives_unanswered));
        }
        if (v.expires != core::TimePoint::max()) {
            out.field("lifetime_left_s", static_cast<std::int64_t>(
                                             std::chrono::duration_cast<std::chrono::seconds>(v.expires - last_now_).count()));
        }
        out.end();
    });
    out.end();
    out.begin_object("counters");
    out.field("requests_relayed", counters_.requests_relayed);
    out.field("replies_relayed", counters_.replies_relayed);
    out.field("denials_sent", counters_.denials_sent);
    out.field("messages_discarded", counters_.messages_discarded);
    out.field("advertisements_sent", counters_.advertisements_sent);
    out.field("solicitations", counters_.solicitations);
    out.field("solicitations_held_back", counters_.solicitations_held_back);
    out.field("reverse_tunnelled", counters_.reverse_tunnelled);
    out.field("reverse_tunnelled_udp", counters_.reverse_tunnelled_udp);
    out.field("keepalives_sent", counters_.keepalives_sent);
    out.field("keepalive_replies", counters_.keepalive_replies);
    out.field("delivered_to_visitors", counters_.delivered_to_visitors);
    out.field("delivered_from_udp", counters_.delivered_from_udp);
    out.field("dropped_no_visitor", counters_.dropped_no_visitor);
    out.field("dropped_binding_mismatch", counters_.dropped_binding_mismatch);
    out.field("passed_other", counters_.passed_other);
    out.field("too_big_answered", counters_.too_big_answered);
    out.field("too_big_dropped", counters_.too_big_dropped);
    out.field("no_buffer", counters_.no_buffer);
    out.end();
}

}  // namespace mipsec::mip
