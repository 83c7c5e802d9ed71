// SPDX-License-Identifier: MIT
#include "ipsec/vpn_gateway_stage.hpp"

#include <utility>

#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "ipsec/ike_datagram.hpp"
#include "ipsec/ike_status.hpp"
#include "ipsec/vpn_client_stage.hpp"

namespace mipsec::ipsec {

using core::DropReason;
using core::Verdict;

VpnGatewayStage::VpnGatewayStage(Config config, crypto::Random& random)
    : config_(std::move(config)), random_(random), responder_(config_.responder, random) {}

VpnGatewayStage::~VpnGatewayStage() = default;

bool VpnGatewayStage::first_report(core::Ipv4Address peer) {
    constexpr std::size_t max_reported_peers = 4096;
    auto it = reported_peers_.find(peer);
    if (it != reported_peers_.end()) {
        ++it->second;
        return false;
    }
    if (reported_peers_.size() >= max_reported_peers) {
        ++unreported_;
        return false;
    }
    reported_peers_.emplace(peer, 1);
    return true;
}

void VpnGatewayStage::send(const ike::OutgoingDatagram& d, core::StageContext& ctx) {
    if (send_ike_packet(d, config_.ttl, ctx)) ++ike_sent_;
}

// "client 203.0.113.5:4500 (10.99.100.1)" as far as it is known, for logs.
std::string VpnGatewayStage::describe(std::uint64_t owner) const {
    std::string s = "client";
    const auto* c = clients_.find(owner);
    const auto* session = responder_.session_of(owner);
    if (c && c->remote.address != core::Ipv4Address{}) {
        s += " " + c->remote.to_string();
    } else if (session != nullptr) {
        s += " " + session->ike_sa().remote.to_string();
    } else if (auto peer = session_peer_.find(owner); peer != session_peer_.end()) {
        s += " " + peer->second.to_string();
    }
    if (c && c->inner) s += " (" + c->inner->to_string() + ")";
    return s;
}

void VpnGatewayStage::reschedule(GatewayClient& c, core::StageContext& ctx) {
    clients_.schedule(c.owner, c.esp ? c.esp->poll(ctx) : std::nullopt);
}

void VpnGatewayStage::install(std::uint64_t owner, const ike::ChildSa& child, bool inbound_only, core::StageContext& ctx) {
    auto& c = clients_.entry(owner);
    c.remote = child.remote;
    if (!c.esp) {
        EspTunnelStage::Config esp{config_.local, child.remote.address, config_.ttl};
        // RFC 3948 §3.1.1 / RFC 4301 §5.2: a client may only send from the address it was given.
        esp.allowed_inner_source = c.inner ? core::Ipv4Prefix{*c.inner, 32} : child.remote_ts;
        c.esp = std::make_unique<EspTunnelStage>(esp);
    }
    if (child.udp_encapsulation && !c.udp) {
        nat::UdpEncapStage::Config udp;
        udp.local_port = config_.responder.session->nat_t_port;
        udp.remote_port = child.remote.port;
        udp.keepalive = core::Duration::zero();  // only the NATed side (the client) keeps alive
        udp.local = config_.local;
        udp.remote = child.remote.address;
        udp.ttl = config_.ttl;
        c.udp = std::make_unique<nat::UdpEncapStage>(udp);
    }
    Sa::Config in;
    in.spi = child.spi_in;
    in.suite = to_esp_suite(child.algorithm);
    in.lifetime.hard.time = child.hard_lifetime;
    Sa::Config out = in;
    out.spi = child.spi_out;
    auto inbound = Sa::create(Sa::Direction::Inbound, in, child.keymat_in(), random_, ctx.now());
    auto outbound = Sa::create(Sa::Direction::Outbound, out, child.keymat_out(), random_, ctx.now());
    if (!inbound || !outbound || !c.esp->install_inbound(std::move(*inbound), &ctx)) {
        ctx.log().error("cannot install ESP SAs for ", child.remote.to_string());
        return;
    }
    // As at the client: after our own QM3 the new outbound SA waits until the client shows
    // it has the pair. This client's ESP goes in UDP exactly when its own negotiation said so
    // (RFC 3947).
    if (inbound_only) {
    } else if (child.initiator) {
        (void)c.esp->install_outbound_when_confirmed(std::move(*outbound), child.udp_encapsulation, child.spi_in,
                                                     ctx.now() + EspTunnelStage::outbound_confirmation_wait, &ctx);
    } else {
        (void)c.esp->install_outbound(std::move(*outbound), &ctx);
        c.esp->set_udp_encapsulation(child.udp_encapsulation);
    }
    clients_.add_spi(owner, child.spi_in);
    ++c.installs;
    reschedule(c, ctx);
    if (config_.key_log != nullptr) {
        // Outer addresses as they appear on this side's wire (the client's NAT address).
        config_.key_log->esp_sa(child.remote.address, config_.local, child.spi_in, in.suite, child.keymat_in().span());
        config_.key_log->esp_sa(config_.local, child.remote.address, child.spi_out, in.suite, child.keymat_out().span());
    }
    ctx.log().info("client ", child.remote.to_string(), c.inner ? " (" + c.inner->to_string() + ")" : std::string(), ": ESP SA in 0x",
                   std::hex, child.spi_in, " out 0x", child.spi_out, std::dec, child.udp_encapsulation ? ", UDP-encapsulated" : "");
}

// A session ended: its client entry goes too, unless its ESP SAs were orphaned.
void VpnGatewayStage::release(std::uint64_t owner) {
    const auto* c = clients_.find(owner);
    if (c != nullptr && c->orphaned) {
        session_peer_.erase(owner);
        return;
    }
    remove(owner);
}

void VpnGatewayStage::remove(std::uint64_t owner) {
    session_peer_.erase(owner);
    clients_.erase(owner);
}

// The client re-authenticated and its old IKE SA ended before the new one made a CHILD_SA: the
// old ESP SAs (still in use by the client) now belong to the new session.
void VpnGatewayStage::hand_over(std::uint64_t from, std::uint64_t to, core::StageContext& ctx) {
    auto* old = clients_.find(from);
    if (old == nullptr) return;
    if (to == 0) {
        old->orphaned = true;
        ctx.log().info("client ", old->remote.to_string(), ": IKE SA gone, its ESP SAs stay for its next IKE SA");
        return;
    }
    // Kept: the heir has an ESP tunnel of its own already; the old entry keeps the old SAs
    // until the heir's Session deletes them.
    if (clients_.hand_over(from, to) == GatewayClientTable::HandOver::Moved)
        ctx.log().info("client ", clients_.find(to)->remote.to_string(), ": ESP SAs carried over to its re-authenticated IKE SA");
}

// RFC 2409 §5.5: the Quick Mode failed here and the client got NO-PROPOSAL-CHOSEN (or another
// error notify). A client without any SA yet holds a lease for nothing: its IKE SA is deleted
// (freeing the lease and the entry) so it starts over, and the log says why. A refused rekey
// leaves the client's current SAs alone.
void VpnGatewayStage::child_refused(std::uint64_t owner, const ike::ChildSaRefused& refused, core::StageContext& ctx) {
    ++child_sas_refused_;
    const auto* c = clients_.find(owner);
    const bool has_sas = c != nullptr && !c->spis.empty();
    std::string why = std::string(ike::to_string(refused.reason)) + (refused.detail.empty() ? "" : " (" + refused.detail + ")");
    auto peer = session_peer_.find(owner);
    const bool log = peer == session_peer_.end() || first_report(peer->second);
    if (has_sas) {
        if (log) ctx.log().warn(describe(owner), ": Quick Mode refused: ", why, "; its current ESP SAs stay");
        return;
    }
    if (log) {
        const auto* session = responder_.session_of(owner);
        const bool leased = session && session->mode_config();
        ctx.log().warn(describe(owner), ": Quick Mode failed: ", why, "; deleting its IKE SA",
                       leased ? " and freeing " + session->mode_config()->address.to_string() : std::string(),
                       " (further problems from this peer are counted, not logged)");
    }
    refused_.push_back(owner);
}

void VpnGatewayStage::drain(core::StageContext& ctx) {
    auto output = responder_.take_output();
    for (const auto& d : output.datagrams) send(d, ctx);
    for (auto& tagged : output.events) {
        const auto owner = tagged.session;
        auto& e = tagged.event;
        if (std::holds_alternative<ike::Established>(e)) {
            const auto* session = responder_.session_of(owner);
            if (config_.key_log != nullptr && session && session->ike_sa().keys) {
                const auto& sa = session->ike_sa();
                config_.key_log->ike_sa(std::span<const std::uint8_t, 8>(sa.cky_i.data(), 8), sa.keys->cipher_key.span());
            }
        } else if (auto* vip = std::get_if<ike::InnerAddressAssigned>(&e)) {
            clients_.entry(owner).inner = vip->address.address;
        } else if (auto* inst = std::get_if<ike::ChildSaInstalled>(&e)) {
            install(owner, inst->sa, inst->inbound_only, ctx);
        } else if (auto* refused = std::get_if<ike::ChildSaRefused>(&e)) {
            child_refused(owner, *refused, ctx);
        } else if (auto* del = std::get_if<ike::ChildSaDeleted>(&e)) {
            const auto spi = del->sa.spi_in;
            const auto holder = clients_.remove_spi(spi);  // an orphaned entry may hold it, not `owner`
            if (!holder) continue;
            auto* c = clients_.find(*holder);
            if (c == nullptr) continue;
            if (c->esp) {
                // Both directions go, as at the client: the outbound SA only while it is still
                // this CHILD_SA's (after a rekey it is already the new one); if it was, the SA
                // it replaced takes over when still alive, else packets for the client drop as
                // NoSa until it negotiates again rather than go out under an SA it no longer has.
                c->esp->remove_inbound(spi);
                c->esp->forget_outbound(del->sa.spi_out, ctx.now());
            }
            if (c->orphaned && c->spis.empty()) {
                remove(*holder);
            } else {
                reschedule(*c, ctx);
            }
        } else if (auto* handed = std::get_if<ike::ChildSasHandedOver>(&e)) {
            hand_over(owner, handed->successor, ctx);
        } else if (auto* failed = std::get_if<ike::Failed>(&e)) {
            auto peer = session_peer_.find(owner);
            if (failed->reason == ike::FailReason::Expired) {
                // Normal for a gateway: re-authenticating is the client's job (its ESP SAs,
                // if any are left, wait for its next IKE SA).
                const auto* c = clients_.find(owner);
                ctx.log().info("IKE session ", owner, peer != session_peer_.end() ? " from " + peer->second.to_string() : std::string(),
                               " reached its lifetime", c != nullptr && c->orphaned ? "; its ESP SAs stay for the client's next IKE SA" : "");
            } else if (peer == session_peer_.end() || first_report(peer->second))
                ctx.log().warn("IKE session ", owner, peer != session_peer_.end() ? " from " + peer->second.to_string() : std::string(),
                               " failed: ", ike::to_string(failed->reason), failed->detail.empty() ? "" : " (" + failed->detail + ")",
                               " (further problems from this peer are counted, not logged)");
            release(owner);
        } else if (std::holds_alternative<ike::Closed>(e)) {
            release(owner);
        }
    }
    if (refused_.empty()) return;
    for (auto owner : std::exchange(refused_, {})) responder_.close(owner, ctx.now());
    drain(ctx);  // the Delete payloads and Closed events of what was just closed
}

Verdict VpnGatewayStage::encapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    auto* c = clients_.by_inner(ip->destination());
    if (c == nullptr || !c->esp) return Verdict::drop(DropReason::NoSa);
    auto v = c->esp->encapsulate(packet, ctx);
    // RFC 3948 §3.1: in UDP exactly when this client's negotiation chose UDP encapsulation.
    if (v.passed() && c->udp) v = c->udp->encapsulate(packet, ctx);
    return v;
}

Verdict VpnGatewayStage::decapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    if (ip->destination() != config_.local) return Verdict::drop(DropReason::NotForUs);
    const auto& session = *config_.responder.session;
    GatewayClient* client = nullptr;
    if (ip->protocol() == core::ip_protocol::udp) {
        auto udp = core::UdpView::check(ip->payload());
        if (!udp) return Verdict::drop(DropReason::Truncated);
        auto payload = udp->payload();
        switch (classify_udp(udp->destination_port(), payload, session.ike_port, session.nat_t_port)) {
            case UdpKind::NotIke: return Verdict::drop(DropReason::UnexpectedProtocol);
            case UdpKind::Malformed: return Verdict::drop(DropReason::Malformed);
            case UdpKind::Keepalive: ++keepalives_; return Verdict::consumed();
            case UdpKind::Ike: {
                ++ike_received_;
                const std::size_t skip = udp->destination_port() == session.nat_t_port ? non_esp_marker_len : 0;
                const auto& rc = responder_.counters();
                const auto drops_before = rc.dropped_malformed + rc.dropped_unknown_sa + rc.dropped_half_open;
                const auto created_before = rc.sessions_created;
                responder_.on_datagram(payload.subspan(skip), {ip->destination(), udp->destination_port()},
                                       {ip->source(), udp->source_port()}, ctx.now());
                if (rc.sessions_created != created_before) session_peer_[responder_.last_owner()] = ip->source();
                if (rc.dropped_malformed + rc.dropped_unknown_sa + rc.dropped_half_open != drops_before && first_report(ip->source()))
                    ctx.log().warn("dropping IKE from ", ip->source().to_string(), " (malformed, unknown SA or over the half-open limit; ",
                                   "further drops from this peer are counted, not logged)");
                drain(ctx);
                return Verdict::consumed();
            }
            case UdpKind::Esp:
                client = clients_.by_spi(core::load_be32(payload.data()));
                if (client == nullptr || !client->esp) return Verdict::drop(DropReason::UnknownSpi);
                if (!client->udp) return Verdict::drop(DropReason::UnexpectedProtocol);  // this SA is not UDP-encapsulated
                if (auto v = client->udp->decapsulate(packet, ctx); !v.passed()) return v;
                break;
        }
    } else if (ip->protocol() == core::ip_protocol::esp) {
        auto esp = ip->payload();
        if (esp.size() < 8) return Verdict::drop(DropReason::Truncated);
        client = clients_.by_spi(core::load_be32(esp.data()));
        if (client == nullptr || !client->esp) return Verdict::drop(DropReason::UnknownSpi);
    } else {
        return Verdict::drop(DropReason::UnexpectedProtocol);
    }
    auto v = client->esp->decapsulate(packet, ctx);
    // The ESP stage moved its peer on an authenticated packet; the client's UDP follows.
    if (v.passed() && client->udp && client->esp->peer() && client->udp->peer() != client->esp->peer())
        client->udp->on_event({core::RaisedEvent::external, core::PeerFloated{client->udp->peer().value_or(core::Endpoint{}), *client->esp->peer(),
                                                                               {config_.local, config_.responder.session->nat_t_port}}}, ctx);
    // Authenticated traffic: the client is alive (its DPD idle timer restarts, RFC 3706 §5.3).
    if (v.passed()) responder_.note_traffic(client->owner, ctx.now());
    return v;
}

std::optional<core::TimePoint> VpnGatewayStage::poll(core::StageContext& ctx) {
    last_now_ = ctx.now();
    (void)responder_.poll(ctx.now());
    drain(ctx);
    // Only the clients whose ESP deadline passed; each is filed again with its next one.
    std::vector<std::uint64_t> due;
    while (auto owner = clients_.pop_due(ctx.now())) due.push_back(*owner);
    for (auto owner : due)
        if (auto* c = clients_.find(owner)) reschedule(*c, ctx);
    auto next = responder_.next_deadline();  // drain() may have moved it
    auto esp = clients_.next_deadline();
    if (esp && (!next || *esp < *next)) next = esp;
    return next;
}

std::size_t VpnGatewayStage::reconfigure(Config config) {
    config_.responder = config.responder;
    return responder_.reconfigure(std::move(config.responder));
}

void VpnGatewayStage::shutdown(core::StageContext& ctx) {
    responder_.close_all(ctx.now());
    drain(ctx);
}

void VpnGatewayStage::report(core::StatusSink& out) const {
    out.field("local", config_.local.to_string());
    if (const auto* pool = responder_.pool()) {
        out.field("pool", pool->range().to_string());
        out.field("pool_leased", static_cast<std::uint64_t>(pool->leased()));
        out.field("pool_leased_outside", static_cast<std::uint64_t>(pool->leased_outside_range()));
    }
    out.field("ike_received", ike_received_);
    out.field("ike_sent", ike_sent_);
    out.field("keepalives_received", keepalives_);
    out.field("peers_with_problems", static_cast<std::uint64_t>(reported_peers_.size()) + unreported_);
    const auto& rc = responder_.counters();
    out.field("ike_sessions", static_cast<std::uint64_t>(responder_.session_count()));
    out.field("ike_half_open", static_cast<std::uint64_t>(responder_.half_open_count()));
    out.field("ike_dropped_malformed", rc.dropped_malformed);
    out.field("ike_dropped_unknown_sa", rc.dropped_unknown_sa);
    out.field("ike_dropped_half_open", rc.dropped_half_open);
    out.field("orphaned_child_sas", static_cast<std::uint64_t>(responder_.orphan_count()));
    out.field("child_sas_refused", child_sas_refused_);
    out.begin_array("clients");
    std::size_t shown = 0;
    clients_.for_each([&](const GatewayClient& c) {
        if (++shown > 100) return;  // status stays readable with thousands of clients
        const auto owner = c.owner;
        out.begin_element();
        out.field("session", owner);
        out.field("remote", c.remote.to_string());
        out.field("inner_address", c.inner ? c.inner->to_string() : std::string("none"));
        out.field("sa_installs", c.installs);
        const auto* session = responder_.session_of(owner);
        out.field("ike_state", session ? std::string(ike::to_string(session->state())) : std::string(c.orphaned ? "gone (SAs kept)" : "none"));
        if (session && c.esp) report_ike_session(out, *session, *c.esp, last_now_);
        if (c.esp) {
            out.begin_object("esp");
            c.esp->report(out);
            out.end();
        }
        out.end();
    });
    out.end();
    out.field("clients_total", static_cast<std::uint64_t>(clients_.size()));
}

}  // namespace mipsec::ipsec
