// SPDX-License-Identifier: MIT
#include "mip/mobile_node.hpp"

#include <algorithm>

#include "core/ipv4.hpp"

namespace mipsec::mip {

namespace {
constexpr std::uint16_t infinite_lifetime = 0xFFFF;
constexpr unsigned max_consecutive_repairs = 4;
}  // namespace

MobileNode::MobileNode(Config config, crypto::Random& random)
    : config_(std::move(config)),
      random_(random),
      home_address_(config_.home_address),
      home_agent_(config_.home_agent),
      lifetime_limit_(config_.lifetime),
      reverse_tunnel_(config_.reverse_tunnel),
      udp_allowed_(config_.udp_tunnelling != UdpTunnelling::Off),
      keepalive_interval_(config_.keepalive_default) {
    // RFC 5944 §3.6.3: at least one second between requests.
    if (config_.initial_retransmit < std::chrono::seconds(1)) config_.initial_retransmit = std::chrono::seconds(1);
    if (config_.max_retransmit < config_.initial_retransmit) config_.max_retransmit = config_.initial_retransmit;
    // RFC 3519 §3.6.2: the keepalive interval never goes below 10 s.
    if (config_.keepalive_default < std::chrono::seconds(10)) keepalive_interval_ = config_.keepalive_default = std::chrono::seconds(10);
}

std::uint64_t MobileNode::next_identification(core::TimePoint now) {
    std::uint64_t id;
    if (config_.sa.replay == ReplayProtection::Timestamp) {
        // NTP time on the HA's clock as last learnt from a 133, and always beyond anything
        // sent before: the HA treats timestamps as a sequence too (RFC 5944 §5.7.1).
        id = ntp_time(now, config_.ntp_offset + std::chrono::seconds(clock_adjust_s_));
        if (id <= last_identification_) id = last_identification_ + 1;
    } else {
        id = (std::uint64_t{ha_nonce_} << 32) | random_.next_u32();
        if (id == last_identification_) id ^= 1;
    }
    last_identification_ = id;
    return id;
}

core::Duration MobileNode::retransmit_cap(std::uint16_t lifetime) const noexcept {
    // §3.6.3: the back-off never exceeds the requested lifetime.
    core::Duration cap = config_.max_retransmit;
    if (lifetime != 0) cap = std::min<core::Duration>(cap, std::chrono::seconds(lifetime));
    return std::max(cap, config_.initial_retransmit);
}

std::optional<MobileNode::Transmit> MobileNode::send(core::TimePoint now, bool deregistration, bool fresh_timer, bool away) {
    RegistrationRequest r;
    const bool colocated = config_.colocated && !via_fa_;
    // `away`: deregistering only the binding of the current care-of address, sent the way a
    // registration from here goes (RFC 5944 §3.6.1.2); otherwise a deregistration is from home.
    const bool from_home = deregistration && !away;
    const bool reverse = reverse_tunnel_ && !deregistration;
    r.flags = static_cast<std::uint8_t>((colocated && !from_home ? RegistrationRequestView::flag_d : 0) |
                                        (reverse ? RegistrationRequestView::flag_t : 0));
    r.lifetime = deregistration ? 0 : std::min(lifetime_limit_, config_.lifetime);
    r.home_address = home_address_;
    r.home_agent = home_agent_;
    // RFC 5944 §3.6.1.2: deregistering every binding from home uses CoA = HoA.
    r.care_of_address = from_home ? home_address_ : care_of_;
    r.identification = next_identification(now);

    RequestExtensions ext;
    ext.nai = config_.nai;
    // RFC 3519 §3.1: only with a co-located CoA, and never in a deregistration.
    const bool udp = !deregistration && colocated && udp_allowed_;
    if (udp) ext.udp_tunnel = UdpTunnelRequest{config_.udp_tunnelling == UdpTunnelling::Forced, false, core::ip_protocol::ipip};

    Pending p;
    if (!fresh_timer && pending_) p = *pending_;
    p.identification = r.identification;
    p.lifetime = r.lifetime;
    p.deregistration = deregistration;
    p.udp_requested = udp;
    p.reverse_tunnel = reverse;
    p.sent = now;
    if (fresh_timer || !pending_) {
        p.first_sent = now;
        p.interval = config_.initial_retransmit;
        p.attempts = 1;
    } else {
        p.interval = std::min<core::Duration>(p.interval * 2, retransmit_cap(r.lifetime));
        ++p.attempts;
    }
    p.retransmit_at = now + p.interval;

    Transmit t;
    // IP source: the co-located CoA, else the home address (via an FA, or at home).
    t.source = colocated && !from_home ? care_of_ : home_address_;
    t.source_port = config_.source_port;
    t.destination = {via_fa_ && !from_home ? fa_address_ : home_agent_, registration_port};
    // RFC 3024 §4.1.1: a request with T set goes out with TTL 255.
    t.ttl = reverse ? 255 : 64;
    auto built = build_request(r, ext, config_.sa.auth_key());
    last_sent_to_ha_ = now;
    if (!built) {
        p.payload = {};
        pending_ = p;
        return std::nullopt;
    }
    t.payload = *built;
    p.payload = t.payload;
    p.transmit = t;
    pending_ = p;
    return t;
}

MobileNode::Output MobileNode::shutdown(core::TimePoint now) {
    Output out;
    const bool away = state_ == State::Registered || state_ == State::Registering;
    if (!away || care_of_.is_unspecified() || care_of_ == home_address_) return out;
    // Nobody will be here for the reply: one try, then the binding is gone or expires anyway.
    out.transmit = send(now, true, true, true);
    pending_.reset();
    retry_at_.reset();
    registration_.reset();
    state_ = State::Idle;
    return out;
}

MobileNode::Output MobileNode::start(core::TimePoint now, bool deregistration) {
    retry_at_.reset();
    pending_.reset();
    state_ = deregistration ? State::Deregistering : State::Registering;
    Output out;
    out.transmit = send(now, deregistration, true);
    return out;
}

MobileNode::Output MobileNode::care_of_address_changed(core::Ipv4Address care_of, core::TimePoint now) {
    if (care_of == home_address_ && !care_of.is_unspecified()) return returned_home(now);
    via_fa_ = false;
    care_of_ = care_of;
    if (care_of.is_unspecified()) {
        // No address: nothing can be sent; the registration (if any) runs out on its own.
        pending_.reset();
        retry_at_.reset();
        state_ = registration_ ? State::Registered : State::Idle;
        return {};
    }
    // A new network: forget per-network repairs and the learnt keepalive interval (RFC 3519 §3.6.2).
    keepalive_interval_ = config_.keepalive_default;
    udp_allowed_ = config_.udp_tunnelling != UdpTunnelling::Off;
    reverse_tunnel_ = config_.reverse_tunnel;
    lifetime_limit_ = config_.lifetime;
    repairs_ = 0;
    return start(now, false);
}

MobileNode::Output MobileNode::link_changed(core::TimePoint now) {
    if (care_of_.is_unspecified() || state_ == State::AtHome) return {};
    keepalive_interval_ = config_.keepalive_default;
    repairs_ = 0;
    return start(now, false);
}

MobileNode::Output MobileNode::agent_advertisement(const AgentAdvertisement& advert, core::Ipv4Address source,
                                                   core::TimePoint now) {
    if (advert.home_agent() && (source == home_agent_ || source == config_.home_agent)) {
        if (state_ == State::AtHome || state_ == State::Deregistering) return {};
        return returned_home(now);
    }
    // RFC 5944 §2.4.2: a sequence number that drops below 256 means the agent rebooted and
    // lost its visitor list; above 256 it is a rollover.
    bool rebooted = false;
    if (via_fa_ && source == fa_address_) {
        if (last_advert_sequence_ && advert.sequence_number < *last_advert_sequence_ && advert.sequence_number < 256)
            rebooted = true;
        last_advert_sequence_ = advert.sequence_number;
    }
    if (config_.colocated && !(config_.foreign_agents_when_no_address && (care_of_.is_unspecified() || via_fa_))) return {};
    if (!advert.foreign_agent() || advert.busy() || advert.care_of_count == 0) return {};
    const core::Ipv4Address coa = advert.care_of[0];
    if (via_fa_ && source == fa_address_ && coa == care_of_ && !rebooted && state_ != State::AtHome) return {};
    if (!(via_fa_ && source == fa_address_)) last_advert_sequence_ = advert.sequence_number;
    via_fa_ = true;
    fa_address_ = source;
    care_of_ = coa;
    reverse_tunnel_ = config_.reverse_tunnel;
    repairs_ = 0;
    // The FA's Registration Lifetime is the most it accepts (RFC 5944 §2.1.1).
    lifetime_limit_ = advert.registration_lifetime == 0 ? config_.lifetime
                                                        : std::min(config_.lifetime, advert.registration_lifetime);
    return start(now, false);
}

MobileNode::Output MobileNode::retry_now(core::TimePoint now) {
    if (!pending_) return {};
    pending_->retransmit_at = now;
    return poll(now);
}

MobileNode::Output MobileNode::returned_home(core::TimePoint now) {
    via_fa_ = false;
    care_of_ = home_address_;
    if (!registration_ && (state_ == State::Idle || state_ == State::AtHome)) {
        state_ = State::AtHome;
        pending_.reset();
        retry_at_.reset();
        return {};
    }
    return start(now, true);
}

MobileNode::Output MobileNode::deregister_at_home(core::TimePoint now) {
    via_fa_ = false;
    care_of_ = home_address_;
    return start(now, true);
}

MobileNode::Output MobileNode::lose_registration(core::TimePoint now) {
    Output out;
    out.changed = core::RegistrationChanged{home_address_, registration_->care_of_address, false};
    registration_.reset();
    renew_at_ = core::TimePoint::max();
    if (state_ == State::Registered && care_of_.is_unspecified()) {
        // No care-of address (it went away, or the layer above stopped us: RFC 5265 inside):
        // nothing to register again until one comes.
        state_ = State::Idle;
    } else if (state_ == State::Registered) {
        state_ = State::Registering;
        if (!pending_) out.transmit = send(now, false, true);
    }
    return out;
}

MobileNode::Output MobileNode::poll(core::TimePoint now) {
    Output out;
    if (registration_ && now >= registration_->expires) {
        out = lose_registration(now);
        if (out.transmit) return out;
    }
    if (pending_ && now >= pending_->retransmit_at) {
        if (pending_->deregistration && pending_->attempts >= config_.max_deregistration_attempts) {
            // The HA is unreachable from home; its binding will simply expire.
            pending_.reset();
            if (registration_) out.changed = core::RegistrationChanged{home_address_, registration_->care_of_address, false};
            registration_.reset();
            renew_at_ = core::TimePoint::max();
            state_ = State::AtHome;
            return out;
        }
        if (config_.sa.replay == ReplayProtection::Nonce && pending_->transmit.payload.len != 0) {
            // RFC 5944 §3.6.3: with nonces a retransmission is the identical request.
            Pending& p = *pending_;
            p.interval = std::min<core::Duration>(p.interval * 2, retransmit_cap(p.lifetime));
            ++p.attempts;
            p.sent = now;
            p.retransmit_at = now + p.interval;
            last_sent_to_ha_ = now;
            out.transmit = p.transmit;
        } else {
            out.transmit = send(now, pending_->deregistration, false);
        }
        return out;
    }
    if (retry_at_ && now >= *retry_at_) {
        retry_at_.reset();
        repairs_ = 0;
        if (state_ == State::Denied) state_ = State::Registering;
        out.transmit = send(now, false, true);
        return out;
    }
    // Without a care-of address the registration runs out on its own: a renewal (or a
    // keepalive) would leave from 0.0.0.0 with care-of address 0.0.0.0. (An i-MIP client
    // stopped inside the intranet, RFC 5265 §6, would send it through the dormant VPN in the
    // clear to its home agent.)
    const bool can_send = !care_of_.is_unspecified();
    if (registration_ && !pending_ && state_ == State::Registered && can_send && now >= renew_at_) {
        out.transmit = send(now, false, true);
        return out;
    }
    if (registration_ && registration_->mode == TunnelMode::Udp && state_ == State::Registered && can_send &&
        now >= last_sent_to_ha_ + keepalive_interval_) {
        if (keepalives_unanswered_ >= config_.keepalive_retries) {
            // RFC 3519 §5.2: the NAT mapping is probably gone; re-registering recreates it.
            keepalives_unanswered_ = 0;
            if (!pending_) out.transmit = send(now, false, true);
        } else {
            out.keepalive_due = true;
            ++keepalives_unanswered_;
            last_sent_to_ha_ = now;
        }
    }
    return out;
}

std::optional<core::TimePoint> MobileNode::next_deadline() const noexcept {
    std::optional<core::TimePoint> d;
    auto consider = [&](core::TimePoint t) {
        if (t != core::TimePoint::max() && (!d || t < *d)) d = t;
    };
    if (pending_) consider(pending_->retransmit_at);
    if (retry_at_) consider(*retry_at_);
    if (registration_) {
        consider(registration_->expires);
        const bool can_send = !care_of_.is_unspecified();
        if (!pending_ && state_ == State::Registered && can_send) consider(renew_at_);
        if (registration_->mode == TunnelMode::Udp && state_ == State::Registered && can_send)
            consider(last_sent_to_ha_ + keepalive_interval_);
    }
    return d;
}

MobileNode::Output MobileNode::on_reply(std::span<const std::uint8_t> payload, core::Endpoint, core::TimePoint now) {
    Output out;
    auto v = RegistrationReplyView::check(payload);
    if (!v || !pending_) return out;
    ScannedExtensions ext;
    if (scan_extensions(payload, RegistrationReplyView::header_len, MessageKind::Reply, ext)) return out;
    // RFC 5944 §3.6.2.1: match on home address and the low 32 bits of the latest request.
    if ((v->identification() & 0xFFFFFFFFu) != (pending_->identification & 0xFFFFFFFFu)) return out;
    if (!home_address_.is_unspecified() && v->home_address() != home_address_) return out;
    const std::uint8_t code = v->code();
    const bool authenticated = ext.mobile_home_auth_count == 1 && ext.mobile_home_auth->spi == config_.sa.spi &&
                               verify_authenticator(payload, *ext.mobile_home_auth, config_.sa.key.span());
    // Replies with an HA status MUST carry exactly one valid MHAE; FA denials cannot (no MN-FA
    // SA here) and are believed only while registering through an FA.
    if (is_fa_denial(code) ? !via_fa_ : !authenticated) return out;
    last_code_ = code;
    if (authenticated) {
        if (config_.sa.replay == ReplayProtection::Nonce) ha_nonce_ = static_cast<std::uint32_t>(v->identification() >> 32);
        if (home_address_.is_unspecified()) home_address_ = v->home_address();  // assigned via NAI (RFC 2794)
    }
    const Pending p = *pending_;

    if (is_accepted(code)) {
        last_accepted_identification_ = p.identification;
        pending_.reset();
        retry_at_.reset();
        repairs_ = 0;
        if (p.deregistration) {
            if (registration_) out.changed = core::RegistrationChanged{home_address_, registration_->care_of_address, false};
            registration_.reset();
            renew_at_ = core::TimePoint::max();
            state_ = State::AtHome;
            return out;
        }
        // §3.6.2.2: a granted lifetime above the requested one is read as the requested one.
        const std::uint16_t granted = std::min(v->lifetime(), p.lifetime);
        if (granted == 0) {
            state_ = State::Denied;
            retry_at_ = now + config_.denied_retry;
            return out;
        }
        const core::TimePoint clock_start = config_.sa.replay == ReplayProtection::Nonce ? p.first_sent : p.sent;
        Registration r;
        r.home_address = home_address_;
        r.home_agent = home_agent_;
        r.care_of_address = care_of_;
        r.reverse_tunnel = p.reverse_tunnel;
        r.via_foreign_agent = via_fa_;
        if (via_fa_) r.foreign_agent = fa_address_;
        r.lifetime = granted;
        r.source_port = config_.source_port;
        // RFC 3519 §3.2: UDP tunnelling only on an assenting Tunnel Reply to our own request.
        if (p.udp_requested && !ext.udp_tunnel_reply.empty()) {
            auto tr = UdpTunnelReplyView::check(ext.udp_tunnel_reply);
            if (tr && tr->assents()) {
                r.mode = TunnelMode::Udp;
                const std::chrono::seconds k(tr->keepalive_interval());
                keepalive_interval_ = tr->keepalive_interval() == 0 ? config_.keepalive_default
                                                                    : std::max(k, std::chrono::seconds(10));
                r.keepalive_interval = keepalive_interval_;
            }
        }
        if (granted == infinite_lifetime) {
            r.expires = core::TimePoint::max();
            renew_at_ = core::TimePoint::max();
        } else {
            r.expires = clock_start + std::chrono::seconds(granted);
            const auto lifetime = std::chrono::duration_cast<core::Duration>(std::chrono::seconds(granted));
            renew_at_ = clock_start + std::chrono::duration_cast<core::Duration>(lifetime * config_.renew_fraction);
        }
        const bool announce = !registration_ || registration_->care_of_address != r.care_of_address ||
                              registration_->mode != r.mode || state_ != State::Registered;
        registration_ = r;
        state_ = State::Registered;
        keepalives_unanswered_ = 0;
        last_sent_to_ha_ = p.sent;  // first keepalive no earlier than K after the request
        if (announce) out.changed = core::RegistrationChanged{home_address_, r.care_of_address, true};
        return out;
    }

    // Denied. Repairs resend at once (a bounded number of times in a row).
    bool repair = false;
    switch (code) {
    case reply_code::ha_identification_mismatch:
        // RFC 5944 §5.7: resynchronise from the authenticated reply. Timestamps: the HA's
        // seconds give the offset; nonces: the new nonce was taken above.
        if (config_.sa.replay == ReplayProtection::Timestamp) {
            const auto ha_seconds = static_cast<std::int64_t>(v->identification() >> 32);
            const auto our_seconds = static_cast<std::int64_t>(ntp_time(now, config_.ntp_offset) >> 32);
            clock_adjust_s_ = ha_seconds - our_seconds;
            // The HA compares with what it *accepted*; requests it rejected for being ahead
            // must not hold the next one ahead of its clock too.
            last_identification_ = last_accepted_identification_;
        }
        repair = true;
        break;
    case reply_code::fa_lifetime_too_long:
        if (v->lifetime() != 0 && v->lifetime() < p.lifetime) {
            lifetime_limit_ = v->lifetime();
            repair = true;
        }
        break;
    case reply_code::ha_unknown_home_agent:
        if (!v->home_agent().is_unspecified() && v->home_agent() != home_agent_) {
            home_agent_ = v->home_agent();
            repair = true;
        }
        break;
    case reply_code::ha_reverse_tunnel_unavailable:
        repair = reverse_tunnel_;
        reverse_tunnel_ = false;
        break;
    case reply_code::ha_poorly_formed:
    case reply_code::fa_poorly_formed:
        // RFC 3024 §4.2.2: with T set, 70/134 may mean "reverse tunnel not understood".
        if (p.reverse_tunnel) {
            reverse_tunnel_ = false;
            repair = true;
        }
        break;
    case reply_code::ha_reverse_tunnel_mandatory:
        repair = !reverse_tunnel_;
        reverse_tunnel_ = true;
        break;
    case reply_code::ha_udp_encapsulation_unavailable:
        repair = udp_allowed_;
        udp_allowed_ = false;
        break;
    default:
        break;
    }
    pending_.reset();
    if (repair && repairs_ < max_consecutive_repairs) {
        ++repairs_;
        out.transmit = send(now, p.deregistration, true);
        return out;
    }
    if (p.deregistration) {
        // The HA refused to deregister; the binding will expire at the HA anyway.
        if (registration_) out.changed = core::RegistrationChanged{home_address_, registration_->care_of_address, false};
        registration_.reset();
        renew_at_ = core::TimePoint::max();
        state_ = State::AtHome;
        return out;
    }
    if (!registration_) state_ = State::Denied;
    retry_at_ = now + config_.denied_retry;
    return out;
}

}  // namespace mipsec::mip
