// SPDX-License-Identifier: MIT
#include "ipsec/vpn_client_stage.hpp"

#include <algorithm>

#include "core/hex.hpp"
#include "core/icmp.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "ipsec/ike_datagram.hpp"
#include "ipsec/ike_status.hpp"

namespace mipsec::ipsec {

using core::DropReason;
using core::Verdict;

EspSuite to_esp_suite(ike::EspAlgorithm a) noexcept {
    switch (a) {
        case ike::EspAlgorithm::AesGcm128: return EspSuite::AesGcm128;
        case ike::EspAlgorithm::AesGcm256: return EspSuite::AesGcm256;
        case ike::EspAlgorithm::AesCbc128HmacSha1: return EspSuite::AesCbc128HmacSha1;
        case ike::EspAlgorithm::AesCbc256HmacSha1: return EspSuite::AesCbc256HmacSha1;
        case ike::EspAlgorithm::AesCbc128HmacSha256: return EspSuite::AesCbc128HmacSha256;
        case ike::EspAlgorithm::AesCbc256HmacSha256: return EspSuite::AesCbc256HmacSha256;
    }
    return EspSuite::AesGcm128;
}

namespace {
// A re-authentication has to finish inside the margin before the old IKE SA ends, and needs
// five round trips there (Main Mode 3, Mode Config, Quick Mode). strongSwan's schedule waits
// 13, 23, 42 and 76 s before its later retransmissions: fine in a margin of minutes (the
// default, a tenth of 4.4 h), but in a margin of tens of seconds two losses in a row of one
// message would use it up. So no single wait is longer than a twentieth of the margin (four
// sends for each of the five round trips; never under 1 s, which is still far above a round
// trip's time); the schedule still gives up no sooner. With the
// default lifetime the cap (79 s) is above every delay of the schedule: nothing changes.
ike::SessionConfig fitted_to_margin(ike::SessionConfig s, core::Duration configured_margin) {
    core::Duration lifetime = core::Duration::max();
    for (const auto& p : s.ike_proposals) lifetime = std::min(lifetime, p.lifetime);
    if (s.ike_proposals.empty() || lifetime <= core::Duration::zero()) return s;
    auto margin = configured_margin > core::Duration::zero() ? configured_margin : lifetime / 10;
    margin = std::min(margin, lifetime / 2);  // as schedule_reauthentication() applies it
    s.retransmit = s.retransmit.limited_to(std::max<core::Duration>(margin / 20, std::chrono::seconds(1)));
    return s;
}
}  // namespace

VpnClientStage::VpnClientStage(Config config, crypto::Random& random)
    : config_(std::move(config)),
      session_config_(std::make_shared<const ike::SessionConfig>(fitted_to_margin(std::move(config_.session), config_.reauth_margin))),
      random_(random),
      esp_({config_.local, config_.gateway, config_.ttl}),
      access_(config_.wait_for_access_mode ? Access::Held : Access::Awake) {
    // RFC 2407 §4.6.3.3: INITIAL-CONTACT would make the gateway drop the SAs still in use.
    auto reauth = std::make_shared<ike::SessionConfig>(*session_config_);
    reauth->send_initial_contact = false;
    reauth_config_ = std::move(reauth);
}

VpnClientStage::~VpnClientStage() = default;

namespace {
constexpr core::Duration retire_delay = std::chrono::seconds(3);
// Closing the old IKE SA deletes its CHILD_SAs, at both ends: while the gateway has not shown
// that it holds the new IKE SA's CHILD_SA (our QM3 may have been lost; it goes again only with
// the gateway's repeated QM2), the old pair is the only one both ends hold. The old IKE SA then
// waits, at most until the ESP stage stops waiting for that proof too.
constexpr core::Duration retire_wait_max = EspTunnelStage::outbound_confirmation_wait - retire_delay;
}  // namespace

void VpnClientStage::start_session(core::StageContext& ctx) {
    retire(ctx);
    session_ = ike::Session::initiator(session_config_, random_, {config_.local, session_config_->ike_port},
                                       {config_.gateway, session_config_->ike_port});
    next_session_.reset();
    reauth_at_.reset();
    promote_pending_ = false;
    ++sessions_started_;
    ike_key_logged_ = false;
    restart_at_.reset();
    ctx.log().info("starting IKE with ", config_.gateway.to_string());
    session_->start(ctx.now(), last_inner_address_);
    drain(ctx);
}

void VpnClientStage::schedule_reauthentication(const ike::Session& s) {
    const auto lifetime = s.ike_sa().proposal.lifetime;
    if (lifetime <= core::Duration::zero()) return;
    auto margin = config_.reauth_margin > core::Duration::zero() ? config_.reauth_margin : lifetime / 10;
    margin = std::min(margin, lifetime / 2);
    reauth_at_ = s.established_at() + lifetime - margin;
}

void VpnClientStage::start_reauthentication(core::StageContext& ctx) {
    next_session_ = ike::Session::initiator(reauth_config_, random_, {config_.local, session_config_->ike_port},
                                            {config_.gateway, session_config_->ike_port});
    reauth_at_.reset();
    ctx.log().info("re-authenticating with ", config_.gateway.to_string(), " before the IKE SA expires");
    next_session_->start(ctx.now(), inner_address_ ? std::optional(inner_address_->address) : std::nullopt);
    drain_session(*next_session_, Role::Next, ctx);
}

// The new IKE SA has its child SA installed next to the old one: now the old ones can go.
void VpnClientStage::promote_next(core::StageContext& ctx) {
    promote_pending_ = false;
    auto old = std::move(session_);
    session_ = std::move(next_session_);
    ++reauths_;
    ike_key_logged_ = true;
    schedule_reauthentication(*session_);
    // The gateway may still send on the old CHILD_SA until it has installed the new one: the
    // old IKE SA and its SAs are deleted a moment later.
    retiring_ = std::move(old);
    retire_at_ = ctx.now() + retire_delay;
    ctx.log().info("re-authenticated with ", config_.gateway.to_string(), "; the old IKE SA goes in ",
                   std::chrono::duration_cast<std::chrono::seconds>(retire_delay).count(), " s");
}

void VpnClientStage::retire(core::StageContext& ctx) {
    if (!retiring_) return;
    retiring_->close(ctx.now());
    drain_session(*retiring_, Role::Retiring, ctx);
    retiring_.reset();
    retire_at_.reset();
}

void VpnClientStage::send(const ike::OutgoingDatagram& d, core::StageContext& ctx) {
    if (send_ike_packet(d, config_.ttl, ctx)) ++ike_sent_;
}

void VpnClientStage::install(const ike::ChildSa& child, bool inbound_only, core::StageContext& ctx) {
    Sa::Config in;
    in.spi = child.spi_in;
    in.suite = to_esp_suite(child.algorithm);
    in.lifetime.hard.time = child.hard_lifetime;
    Sa::Config out = in;
    out.spi = child.spi_out;
    auto inbound = Sa::create(Sa::Direction::Inbound, in, child.keymat_in(), random_, ctx.now());
    auto outbound = Sa::create(Sa::Direction::Outbound, out, child.keymat_out(), random_, ctx.now());
    if (!inbound || !outbound) {
        ctx.log().error("cannot create ESP SAs from IKE keys: ", (inbound ? outbound.error() : inbound.error()).message());
        return;
    }
    // Make-before-break: the new inbound SA joins the old one. Outbound switches at once when
    // the peer ran Quick Mode (it installed the pair before sending QM3); after our own QM3
    // only once the peer shows it has the pair (unless this SA lost a rekey collision and is
    // about to be deleted: then never). RFC 3947/3948: ESP goes in UDP exactly when this SA
    // was negotiated that way, whatever stages the configuration stacked below.
    auto r1 = esp_.install_inbound(std::move(*inbound), &ctx);
    core::Result<void> r2;
    if (inbound_only) {
    } else if (child.initiator) {
        r2 = esp_.install_outbound_when_confirmed(std::move(*outbound), child.udp_encapsulation, child.spi_in,
                                                  ctx.now() + EspTunnelStage::outbound_confirmation_wait, &ctx);
    } else {
        r2 = esp_.install_outbound(std::move(*outbound), &ctx);
        if (r2) esp_.set_udp_encapsulation(child.udp_encapsulation);
    }
    if (!r1 || !r2) {
        ctx.log().error("cannot install ESP SAs: ", (r1 ? r2.error() : r1.error()).message());
        return;
    }
    ++sa_installs_;
    if (config_.key_log != nullptr) {
        // Outer addresses as they appear on this side's wire (before any NAT).
        config_.key_log->esp_sa(config_.gateway, config_.local, child.spi_in, in.suite, child.keymat_in().span());
        config_.key_log->esp_sa(config_.local, config_.gateway, child.spi_out, in.suite, child.keymat_out().span());
    }
    ctx.log().info("ESP SA installed: in 0x", std::hex, child.spi_in, " out 0x", child.spi_out, std::dec, " ",
                   to_string(in.suite), child.udp_encapsulation ? " (UDP-encapsulated)" : "");
}

void VpnClientStage::drain(core::StageContext& ctx) {
    if (session_) drain_session(*session_, Role::Current, ctx);
    if (next_session_) drain_session(*next_session_, Role::Next, ctx);
    if (retiring_) drain_session(*retiring_, Role::Retiring, ctx);
    if (next_session_ && next_session_->state() != ike::SessionState::Connecting &&
        next_session_->state() != ike::SessionState::Established) {
        next_session_.reset();  // failed or closed: the current IKE SA stays; reauth_at_ retries
        promote_pending_ = false;
    }
    if (promote_pending_ && next_session_) promote_next(ctx);
}

void VpnClientStage::drain_session(ike::Session& s, Role role, core::StageContext& ctx) {
    auto output = s.take_output();
    for (const auto& d : output.datagrams) send(d, ctx);
    for (auto& e : output.events) {
        if (auto* est = std::get_if<ike::Established>(&e)) {
            if (role == Role::Retiring) continue;
            const auto& sa = s.ike_sa();
            if (config_.key_log != nullptr && sa.keys && (role == Role::Next || !ike_key_logged_)) {
                config_.key_log->ike_sa(std::span<const std::uint8_t, 8>(sa.cky_i.data(), 8), sa.keys->cipher_key.span());
                if (role == Role::Current) ike_key_logged_ = true;
            }
            if (role == Role::Current) schedule_reauthentication(s);
            ctx.log().info(role == Role::Next ? "new IKE SA established with " : "IKE SA established with ", est->remote.to_string(),
                           est->udp_encapsulation ? ", NAT-T in use" : "");
        } else if (auto* vip = std::get_if<ike::InnerAddressAssigned>(&e)) {
            if (role == Role::Retiring || !vip->ours) continue;
            if (inner_address_ != vip->address) {
                inner_address_ = vip->address;
                ctx.log().info("Mode Config address ", vip->address.to_string());
                ctx.raise(core::InnerAddressAssigned{vip->address});
            }
        } else if (auto* inst = std::get_if<ike::ChildSaInstalled>(&e)) {
            // A Quick Mode the old IKE SA had in flight when the re-authentication finished:
            // the gateway now holds the pair and may send on it, so accept what arrives on it
            // until the old IKE SA is closed (which deletes the pair); we keep sending on the
            // new IKE SA's CHILD_SA.
            install(inst->sa, inst->inbound_only || role == Role::Retiring, ctx);
            if (role == Role::Next) promote_pending_ = true;
        } else if (auto* del = std::get_if<ike::ChildSaDeleted>(&e)) {
            // Both directions of the CHILD_SA go: a Delete names one SPI of the pair (RFC 2408
            // §3.15). The outbound SA only while it is still this CHILD_SA's: after a make-
            // before-break rekey it is already the new one. Without one, encapsulate() asks
            // for a new CHILD_SA.
            // Our own Delete may cross packets the gateway sealed with the SA (or is still
            // sealing, when it lost a rekey collision): accept them a little longer.
            if (del->by_peer)
                esp_.remove_inbound(del->sa.spi_in);
            else
                esp_.retire_inbound(del->sa.spi_in, ctx.now() + EspTunnelStage::deleted_inbound_linger);
            const Sa* out = esp_.outbound();
            const bool was_current = out != nullptr && out->spi() == del->sa.spi_out;
            esp_.forget_outbound(del->sa.spi_out, ctx.now());
            if (was_current && role != Role::Retiring && esp_.outbound() == nullptr)
                ctx.log().info("ESP SA in 0x", std::hex, del->sa.spi_in, " out 0x", del->sa.spi_out, std::dec, " deleted",
                               del->by_peer ? " by the gateway" : "", "; none left to send on");
        } else if (auto* failed = std::get_if<ike::Failed>(&e)) {
            if (role == Role::Retiring) continue;
            const std::string why = std::string(ike::to_string(failed->reason)) + (failed->detail.empty() ? "" : ": " + failed->detail);
            if (role == Role::Next) {
                ctx.log().warn("re-authentication with ", config_.gateway.to_string(), " failed (", why, "); the current IKE SA stays, retrying in ",
                               std::chrono::duration_cast<std::chrono::seconds>(config_.restart_delay).count(), " s");
                reauth_at_ = ctx.now() + config_.restart_delay;
                promote_pending_ = false;
                continue;
            }
            last_failure_ = why;
            ctx.log().warn("IKE with ", config_.gateway.to_string(), " failed (", last_failure_, "); retrying in ",
                           std::chrono::duration_cast<std::chrono::seconds>(config_.restart_delay).count(), " s");
            restart_at_ = ctx.now() + config_.restart_delay;
            withdraw_inner_address(ctx);
        } else if (auto* closed = std::get_if<ike::Closed>(&e)) {
            if (role == Role::Retiring) continue;
            if (role == Role::Next) {
                reauth_at_ = ctx.now() + config_.restart_delay;
                promote_pending_ = false;
                continue;
            }
            ctx.log().info("IKE SA closed", closed->by_peer ? " by the gateway" : "", "; reconnecting");
            restart_at_ = ctx.now() + config_.restart_delay;
            withdraw_inner_address(ctx);
        }
    }
}

// The Mode Config address belonged to the IKE SA that just ended: it must not stay on the
// TUN (nor serve as care-of address) while no tunnel exists; the next IKE SA raises it again.
void VpnClientStage::withdraw_inner_address(core::StageContext& ctx) {
    if (!inner_address_) return;
    ctx.log().info("Mode Config address ", inner_address_->to_string(), " withdrawn");
    ctx.raise(core::InnerAddressAssigned{*inner_address_, false});
    last_inner_address_ = inner_address_->address;
    inner_address_.reset();
}

Verdict VpnClientStage::encapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    // RFC 5265 §4, §6: the direct registration with the internal home agent never goes
    // through the VPN, and inside the intranet nothing does.
    if (packet.meta().direct) {
        ++passed_direct_;
        return Verdict::not_mine();
    }
    if (access_ == Access::Dormant) {
        ++passed_dormant_;
        return Verdict::not_mine();
    }
    // Traffic needs a CHILD_SA and the peer deleted the last one: negotiate a new one on the
    // IKE SA we have (a re-authentication under way brings its own). Until it is installed
    // the ESP stage drops with NoSa, counted like every drop.
    if (!esp_.outbound() && session_ && !next_session_ && session_->request_child(ctx.now())) {
        ctx.log().info("no CHILD_SA to send on: negotiating a new one with ", config_.gateway.to_string());
        drain(ctx);
    }
    return esp_.encapsulate(packet, ctx);
}

Verdict VpnClientStage::decapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    if (access_ == Access::Dormant) {
        ++passed_dormant_;
        return Verdict::not_mine();
    }
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    if (ip->protocol() == core::ip_protocol::udp) {
        auto udp = core::UdpView::check(ip->payload());
        if (!udp) return Verdict::drop(DropReason::Truncated);
        const auto port = udp->destination_port();
        // Not an IKE port: only a Mobile IP registration reply (from UDP port 434, RFC 5944
        // §3.4) may go up in the clear — the internal home agent's direct answer that the
        // i-MIP layer above verifies (RFC 5265 §6). Any other clear UDP would bypass the VPN
        // into the host, so it is dropped as before.
        constexpr std::uint16_t mobile_ip_registration_port = 434;
        if (port != session_config_->ike_port && port != session_config_->nat_t_port) {
            if (udp->source_port() != mobile_ip_registration_port) return Verdict::drop(DropReason::UnexpectedProtocol);
            ++passed_registration_replies_;
            return Verdict::not_mine();
        }
        auto payload = udp->payload();
        // ESP and keepalives on the NAT-T port were handled by nat.udp_encap below; what
        // reaches this layer on the IKE ports must be IKE.
        auto kind = classify_udp(port, payload, session_config_->ike_port, session_config_->nat_t_port);
        if (kind == UdpKind::NotIke) return Verdict::drop(DropReason::UnexpectedProtocol);
        if (kind != UdpKind::Ike) return Verdict::drop(DropReason::MisplacedKeepalive);
        if (ip->destination() != config_.local) return Verdict::drop(DropReason::NotForUs);
        ++ike_received_;
        const std::size_t skip = port == session_config_->nat_t_port ? non_esp_marker_len : 0;
        auto message = payload.subspan(std::min(skip, payload.size()));
        // During a re-authentication two IKE SAs share the ports: the initiator cookie, ours
        // in both, says which one a message belongs to.
        ike::Session* target = session_.get();
        auto ours = [&](const std::unique_ptr<ike::Session>& s) {
            return s && message.size() >= 8 && std::equal(message.begin(), message.begin() + 8, s->ike_sa().cky_i.begin());
        };
        if (ours(next_session_)) target = next_session_.get();
        else if (ours(retiring_)) target = retiring_.get();
        if (target) {
            target->on_datagram(message, {ip->destination(), port}, {ip->source(), udp->source_port()}, ctx.now());
            drain(ctx);
        }
        return Verdict::consumed();
    }
    if (ip->protocol() == core::ip_protocol::icmp && ip->ttl() == 1 && !ip->is_fragment() && !ip->payload().empty() &&
        ip->payload()[0] == core::icmp_type::router_advertisement) {
        // An Agent Advertisement (RFC 5944 §2.1: ICMP router advertisement, always TTL 1, so it
        // never left its link), passed up by a Mobile IP layer below to the i-MIP layer above
        // that detects on the same link (RFC 5265 modes f and fvc). Control for that layer, not
        // user data: nothing reaches the host around the VPN.
        return Verdict::not_mine();
    }
    auto v = esp_.decapsulate(packet, ctx);
    if (v.passed()) {
        // What came out of ESP did not arrive directly on the link (RFC 5265 §5: a reply of the
        // internal home agent through the tunnel proves nothing about where the node is).
        packet.meta().tunnelled = true;
        if (session_) session_->note_traffic(ctx.now());
        if (next_session_) next_session_->note_traffic(ctx.now());
    }
    return v;
}

void VpnClientStage::follow_access_mode(const core::AccessModeChanged& access, core::StageContext& ctx) {
    using Mode = core::AccessModeChanged::Mode;
    const Access wanted = access.mode == Mode::Inside ? Access::Dormant : access.mode == Mode::Outside ? Access::Awake : Access::Held;
    if (wanted == access_) return;
    if (wanted == Access::Dormant) {
        if (!access.keep_vpn_sas && session_) {
            // RFC 5265 §4: inside, an existing SA "may be kept or deleted". The Delete payloads
            // go through the layers below (they see this event after us), but reach the gateway
            // only if the x-MIP layer is still registered on the new link; otherwise the
            // gateway's DPD ends the SAs. Either way the inner address is ours no longer.
            ctx.log().info("inside the intranet: deleting the IKE and ESP SAs");
            shutdown(ctx);  // Delete payloads for every SA, as when the node stops
            session_.reset();
            withdraw_inner_address(ctx);
        } else {
            ctx.log().info("inside the intranet: dormant", session_ ? ", SAs kept" : "");
            slept_with_sas_ = session_ != nullptr;
        }
    } else if (wanted == Access::Awake && access_ == Access::Dormant) {
        ctx.log().info("outside: VPN awake", session_ ? " (reusing the kept SAs)" : "");
    }
    // RFC 5265 §3.3: tentatively outside on the external HA's answer, the internal HA still
    // asked; IKE MAY wait for it. Only a negotiation waits: kept SAs are used at once.
    if (wanted == Access::Awake && !session_ && access.ike_delay > core::Duration::zero()) {
        ike_not_before_ = ctx.now() + access.ike_delay;
        ctx.log().info("outside: IKE in ", std::chrono::duration_cast<std::chrono::milliseconds>(access.ike_delay).count(),
                       " ms unless the internal home agent answers first");
    } else if (wanted != Access::Awake) {
        ike_not_before_.reset();
    }
    if (wanted == Access::Awake && slept_with_sas_) {
        slept_with_sas_ = false;
        // The gateway may have dropped the kept SAs while we were inside (its DPD saw nothing
        // from us, or it restarted): reusing dead SAs would black-hole every packet until our
        // own idle DPD noticed, minutes later. Ask now; no answer, and a new negotiation starts.
        // The probe leaves on the next poll, once the layers below are awake too.
        if (session_ && session_->probe_peer(ctx.now(), config_.wake_probe_window, std::chrono::seconds(1)))
            ctx.log().info("outside: asking the gateway whether the kept IKE SA still stands (DPD)");
    }
    access_ = wanted;
}

void VpnClientStage::on_event(const core::RaisedEvent& event, core::StageContext& ctx) {
    if (const auto* access = std::get_if<core::AccessModeChanged>(&event.event)) {
        if (event.origin != core::RaisedEvent::external && event.origin < ctx.position()) follow_access_mode(*access, ctx);
        return;
    }
    esp_.on_event(event, ctx);
    if (access_ == Access::Dormant) return;
    // Mobile IP below (RFC 5265's x-MIP, whose home address is our local address) has just
    // registered: IKE sent before that was dropped for want of a registration, so resend what
    // is awaited now rather than after the retransmission timer (4 s for the first MM1).
    const auto* reg = std::get_if<core::RegistrationChanged>(&event.event);
    if (reg == nullptr || !reg->registered || reg->kind != core::RegistrationChanged::Kind::OwnRegistration ||
        reg->home_address != config_.local)
        return;
    for (auto* s : {session_.get(), next_session_.get()})
        if (s != nullptr) s->resend_pending(ctx.now());
    drain(ctx);
}

std::optional<core::TimePoint> VpnClientStage::poll(core::StageContext& ctx) {
    const auto now = ctx.now();
    last_now_ = now;
    // Inside the intranet: no IKE, no DPD, no re-authentication; kept SAs wait for outside.
    if (access_ == Access::Dormant) return std::nullopt;
    if (ike_not_before_ && now >= *ike_not_before_) ike_not_before_.reset();
    if (access_ == Access::Awake && !ike_not_before_ && (!session_ || (restart_at_ && now >= *restart_at_))) start_session(ctx);
    std::optional<core::TimePoint> next = esp_.poll(ctx);
    auto consider = [&](std::optional<core::TimePoint> t) {
        if (t && (!next || *t < *next)) next = t;
    };
    // A re-authentication asks Mode Config for the address this IKE SA holds: while the IKE SA
    // still waits for it (Mode Config retransmitting on a lossy path), starting one would end
    // with another address. It starts once the address is in (its arrival polls again).
    const bool reauth_ready = inner_address_.has_value() || !session_config_->request_virtual_ip;
    if (session_ && !next_session_ && reauth_at_ && now >= *reauth_at_ && reauth_ready &&
        session_->state() == ike::SessionState::Established)
        start_reauthentication(ctx);
    const bool unconfirmed = esp_.pending_outbound() != nullptr;
    if (retire_at_ && now >= *retire_at_ && (!unconfirmed || now >= *retire_at_ + retire_wait_max)) retire(ctx);
    if (session_) consider(session_->poll(now));
    if (next_session_) consider(next_session_->poll(now));
    if (retiring_) consider(retiring_->poll(now));
    drain(ctx);
    if (retire_at_) consider(now >= *retire_at_ && esp_.pending_outbound() != nullptr ? *retire_at_ + retire_wait_max : *retire_at_);
    if (ike_not_before_) consider(*ike_not_before_);
    consider(restart_at_);
    if (!next_session_ && reauth_ready) consider(reauth_at_);
    return next;
}

void VpnClientStage::shutdown(core::StageContext& ctx) {
    retire(ctx);
    for (auto* s : {next_session_.get(), session_.get()}) {
        if (!s) continue;
        s->close(ctx.now());
        drain_session(*s, Role::Retiring, ctx);
    }
    next_session_.reset();
    restart_at_.reset();
    reauth_at_.reset();
}

void VpnClientStage::report(core::StatusSink& out) const {
    out.field("gateway", config_.gateway.to_string());
    out.field("ike_state", session_ ? std::string(ike::to_string(session_->state())) : std::string("idle"));
    out.field("inner_address", inner_address_ ? inner_address_->to_string() : std::string("none"));
    out.field("sessions_started", sessions_started_);
    out.field("ike_received", ike_received_);
    out.field("ike_sent", ike_sent_);
    out.field("sa_installs", sa_installs_);
    out.field("ike_reauthentications", reauths_);
    out.field("access", access_ == Access::Dormant ? "dormant" : access_ == Access::Held ? "held" : "awake");
    if (ike_not_before_)
        out.field("ike_delayed_ms", std::chrono::duration_cast<std::chrono::milliseconds>(*ike_not_before_ - last_now_).count());
    out.field("passed_direct", passed_direct_);
    out.field("passed_dormant", passed_dormant_);
    out.field("passed_registration_replies", passed_registration_replies_);
    if (next_session_) out.field("reauthentication", std::string(ike::to_string(next_session_->state())));
    else if (reauth_at_)
        out.field("reauth_in_s", static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::seconds>(*reauth_at_ - last_now_).count()));
    if (!last_failure_.empty()) out.field("last_failure", last_failure_);
    if (session_) {
        report_ike_session(out, *session_, esp_, last_now_);
        // The live IKE SA's initiator and responder cookies as on the wire (RFC 2408 §3.1),
        // hex: what a capture filter or a test addressing this very SA needs.
        out.field("ike_cookies", core::to_hex(session_->ike_sa().cky_i) + core::to_hex(session_->ike_sa().cky_r));
    }
    out.begin_object("esp");
    esp_.report(out);
    out.end();
}

}  // namespace mipsec::ipsec
