// SPDX-License-Identifier: MIT
#include "mip/home_agent.hpp"

#include <algorithm>

#include "core/ipv4.hpp"

namespace mipsec::mip {

HomeAgent::HomeAgent(Config config, crypto::Random& random) : config_(std::move(config)), random_(random) {
    if (auto mac = crypto::Mac::create(crypto::MacAlgorithm::HmacMd5, {})) hmac_ = std::move(*mac);
    for (auto& mn : config_.mobile_nodes) {
        if (!mn.nai.empty()) nai_to_home_[mn.nai] = mn.home_address.value;
        MobileNodeState state;
        state.sa = std::move(mn.sa);
        mobile_nodes_[mn.home_address.value] = std::move(state);
    }
    // The keys now live only in mobile_nodes_; clear() would keep 80 B per MN of capacity.
    std::vector<MobileNodeConfig>().swap(config_.mobile_nodes);
}

HomeAgent::Reconfigured HomeAgent::reconfigure(Config config) {
    Reconfigured out;
    std::unordered_map<std::uint32_t, SecurityAssociation> next;
    std::unordered_map<std::string, std::uint32_t> next_nai;
    for (auto& mn : config.mobile_nodes) {
        if (!mn.nai.empty()) next_nai[mn.nai] = mn.home_address.value;
        next[mn.home_address.value] = std::move(mn.sa);
    }
    for (auto it = mobile_nodes_.begin(); it != mobile_nodes_.end();) {
        const core::Ipv4Address home{it->first};
        if (next.contains(it->first)) {
            ++it;
            continue;
        }
        out.removed.push_back(home);
        if (const Binding* b = bindings_.find(home)) {
            out.bindings_removed.push_back(*b);
            bindings_.erase(home);
        }
        it = mobile_nodes_.erase(it);
    }
    for (auto& [home, sa] : next) {
        auto it = mobile_nodes_.find(home);
        if (it == mobile_nodes_.end()) {
            out.added.push_back({home});
            MobileNodeState state;
            state.sa = std::move(sa);
            mobile_nodes_.emplace(home, std::move(state));
            continue;
        }
        auto& running = it->second.sa;
        const bool same_key = running.key.span().size() == sa.key.span().size() &&
                              std::equal(running.key.span().begin(), running.key.span().end(), sa.key.span().begin());
        if (running.spi == sa.spi && running.replay == sa.replay && same_key) continue;
        out.rekeyed.push_back({home});
        // The replay state stays: a timestamp must still exceed the last one accepted, and a
        // nonce handed out is still the one the next request must carry (RFC 5944 §5.7).
        running = std::move(sa);
    }
    nai_to_home_ = std::move(next_nai);
    config.address = config_.address;
    config.home_network = config_.home_network;
    config.udp_tunnelling = config_.udp_tunnelling;
    config.ntp_offset = config_.ntp_offset;
    std::vector<MobileNodeConfig>().swap(config.mobile_nodes);
    config_ = std::move(config);
    auto by_address = [](core::Ipv4Address a, core::Ipv4Address b) { return a.value < b.value; };
    std::sort(out.added.begin(), out.added.end(), by_address);
    std::sort(out.removed.begin(), out.removed.end(), by_address);
    std::sort(out.rekeyed.begin(), out.rekeyed.end(), by_address);
    return out;
}

bool HomeAgent::source_trusted(core::Ipv4Address source) const noexcept {
    if (config_.trusted_networks.empty()) return true;
    return std::any_of(config_.trusted_networks.begin(), config_.trusted_networks.end(),
                       [&](const core::Ipv4Prefix& p) { return p.contains(source); });
}

bool HomeAgent::identification_valid(const MobileNodeState& mn, std::uint64_t id, core::TimePoint now) const noexcept {
    if (mn.sa.replay == ReplayProtection::Nonce) {
        return mn.nonce_valid && static_cast<std::uint32_t>(id >> 32) == mn.nonce;
    }
    // RFC 5944 §5.7.1: close enough to our clock *and* greater than anything accepted before.
    const std::uint64_t ours = ntp_time(now, config_.ntp_offset);
    const std::uint64_t diff = id > ours ? id - ours : ours - id;
    const std::uint64_t tolerance = static_cast<std::uint64_t>(config_.timestamp_tolerance.count()) << 32;
    if (diff > tolerance) return false;
    return !mn.ever_accepted || id > mn.last_accepted_id;
}

HomeAgent::Outcome HomeAgent::reply(Outcome out, MobileNodeState& mn, core::Ipv4Address home, std::uint8_t code, std::uint16_t lifetime, std::uint64_t identification,
                                    const ScannedExtensions& ext, const std::optional<UdpTunnelReply>& tunnel_reply) {
    RegistrationReply r;
    r.code = code;
    r.lifetime = is_accepted(code) ? lifetime : 0;
    // RFC 2794 §2: an MN that registered with a NAI learns its home address from the reply.
    r.home_address = home;
    r.home_agent = config_.address;  // always the unicast address (RFC 5944 §3.4)
    r.identification = identification;
    ReplyExtensions re;
    if (ext.nai_present) re.nai = {reinterpret_cast<const char*>(ext.nai.data()), ext.nai.size()};
    re.udp_tunnel = tunnel_reply;
    // RFC 5265 §5: every reply to a trusted source (the only ones answered once a list is set).
    re.trusted_networks = !config_.trusted_networks.empty();
    AuthKey auth = mn.sa.auth_key();
    auth.context = hmac_.get();
    auto built = build_reply(r, re, auth);
    if (!built) {
        out.discard = Discard::CryptoFailure;
        out.change = {};
        return out;
    }
    out.reply = *built;
    out.code = code;
    return out;
}

HomeAgent::Outcome HomeAgent::process(std::span<const std::uint8_t> request, const Received& from, core::TimePoint now) {
    Outcome out;
    out.reply_from = {config_.address, from.udp_destination_port};
    out.reply_to = {from.ip_source, from.udp_source_port};

    auto req = RegistrationRequestView::check(request);
    if (req) out.home_address = req->home_address();
    // RFC 5265 §5: silently drop requests from untrusted sources, before any HMAC work, so
    // an outsider learns nothing (not even whether the home address exists).
    if (!source_trusted(from.ip_source)) {
        out.discard = Discard::UntrustedSource;
        return out;
    }
    if (!req) {
        out.discard = Discard::Malformed;
        return out;
    }
    ScannedExtensions ext;
    if (auto err = scan_extensions(request, RegistrationRequestView::header_len, MessageKind::Request, ext)) {
        out.discard = *err == ScanError::UnknownNonSkippable ? Discard::UnknownExtension : Discard::Malformed;
        return out;
    }

    // Check 2: an SA for this MN and an authorization-enabling extension, else silent discard.
    core::Ipv4Address home = req->home_address();
    if (ext.nai_present) out.nai = ext.nai;
    if (ext.mobile_home_auth) out.spi = ext.mobile_home_auth->spi;
    if (home.is_unspecified() && ext.nai_present && ext.nai_before_mhae) {
        auto n = nai_to_home_.find(std::string(reinterpret_cast<const char*>(ext.nai.data()), ext.nai.size()));
        if (n != nai_to_home_.end()) home = {n->second};
    }
    out.home_address = home;
    auto it = mobile_nodes_.find(home.value);
    if (it == mobile_nodes_.end()) {
        out.discard = Discard::UnknownMobileNode;
        return out;
    }
    MobileNodeState& mn = it->second;
    if (!ext.mobile_home_auth) {
        out.discard = Discard::NoAuthExtension;
        return out;
    }
    if (ext.mobile_home_auth->spi != mn.sa.spi) {
        out.discard = Discard::UnknownSpi;
        return out;
    }

    const std::uint64_t id = req->identification();
    const std::uint64_t low = id & 0xFFFFFFFFu;
    auto echo_id = [&](bool fresh_nonce) -> std::uint64_t {
        if (mn.sa.replay == ReplayProtection::Timestamp) return id;
        // RFC 5944 §5.7.2: every reply carries a fresh nonce in the high 32 bits.
        if (fresh_nonce) {
            mn.nonce = random_.next_u32();
            mn.nonce_valid = true;
        }
        return (std::uint64_t{mn.nonce} << 32) | low;
    };

    // A retransmission of the request that created the current binding (answered again below).
    const Binding* current = bindings_.find(home);
    const bool duplicate = current && mn.ever_accepted && current->identification == id &&
                           current->care_of_address == req->care_of_address();
    // Cheap before the HMAC: a request whose Identification cannot be accepted could only earn
    // a 133, and one was sent to this node within the interval: discard it unauthenticated.
    if (!duplicate && mn.last_mismatch_reply && now - *mn.last_mismatch_reply < config_.denial_reply_interval &&
        !identification_valid(mn, id, now)) {
        out.discard = Discard::IdentificationUnanswered;
        return out;
    }

    // Check 3: MHAE authenticator. The 131 reply is authenticated with the SA the MN holds,
    // and changes no state (the request may be forged).
    if (!verify_authenticator(request, *ext.mobile_home_auth, mn.sa.key.span(), hmac_.get())) {
        if (mn.last_auth_failure_reply && now - *mn.last_auth_failure_reply < config_.denial_reply_interval) {
            out.discard = Discard::AuthFailureUnanswered;
            return out;
        }
        mn.last_auth_failure_reply = now;
        return reply(std::move(out), mn, home, reply_code::ha_mn_auth_failed, 0, echo_id(false), ext, std::nullopt);
    }

    const std::uint8_t accept_code =
        req->simultaneous_bindings() ? reply_code::accepted_no_simultaneous : reply_code::accepted;

    // A retransmission of the request that created the current binding: answer again, do
    // not extend the lifetime (RFC 5944 §3.8.3 duplicate rule).
    if (const Binding* b = current; duplicate) {
        const auto remaining = b->expires == core::TimePoint::max()
                                   ? std::uint16_t{0xFFFF}
                                   : static_cast<std::uint16_t>(std::clamp<std::int64_t>(
                                         std::chrono::ceil<std::chrono::seconds>(b->expires - now).count(), 0, 0xFFFE));
        std::optional<UdpTunnelReply> tr;
        if (b->mode == TunnelMode::Udp) tr = UdpTunnelReply{UdpTunnelReply::code_assent, false, b->keepalive_interval};
        const std::uint64_t dup_id = mn.sa.replay == ReplayProtection::Timestamp ? id : (std::uint64_t{mn.nonce} << 32) | low;
        return reply(std::move(out), mn, home, accept_code, remaining, dup_id, ext, tr);
    }

    // Check 4: Identification. The 133 reply carries the resync value.
    if (!identification_valid(mn, id, now)) {
        std::uint64_t resync;
        if (mn.sa.replay == ReplayProtection::Timestamp) {
            resync = (ntp_time(now, config_.ntp_offset) & 0xFFFFFFFF00000000u) | low;
        } else {
            resync = echo_id(true);
        }
        mn.last_mismatch_reply = now;
        return reply(std::move(out), mn, home, reply_code::ha_identification_mismatch, 0, resync, ext, std::nullopt);
    }
    if (mn.sa.replay == ReplayProtection::Timestamp) {
        mn.last_accepted_id = id;
        mn.ever_accepted = true;
    }
    const std::uint64_t reply_id = echo_id(true);
    if (mn.sa.replay == ReplayProtection::Nonce) mn.ever_accepted = true;

    // Check 5: we hold no HA-FA SAs, so a Foreign-Home extension cannot be verified.
    if (ext.foreign_home_auth) {
        out.discard = Discard::UnexpectedFhae;
        return out;
    }

    auto deny = [&](std::uint8_t code, std::optional<UdpTunnelReply> tr = std::nullopt) {
        return reply(std::move(out), mn, home, code, 0, reply_id, ext, tr);
    };

    // Check 6: dynamic HA discovery via broadcast, or a request meant for another HA.
    const core::Ipv4Address directed_broadcast{config_.home_network.network().value | ~config_.home_network.mask()};
    const bool to_broadcast = from.ip_destination.is_broadcast() ||
                              (config_.home_network.length < 31 && from.ip_destination == directed_broadcast);
    if (to_broadcast || req->home_agent() != config_.address) return deny(reply_code::ha_unknown_home_agent);

    // Check 7: poorly formed.
    const bool deregistration = req->lifetime() == 0 || req->care_of_address() == home;
    std::optional<UdpTunnelRequest> tunnel;
    if (!ext.udp_tunnel_request.empty()) tunnel = UdpTunnelRequest::parse(*UdpTunnelRequestView::check(ext.udp_tunnel_request));
    if ((req->flags() & RegistrationRequestView::reserved_flags) != 0 || ext.mobile_home_auth_count != 1 ||
        (ext.nai_present && !ext.nai_before_mhae)) {
        return deny(reply_code::ha_poorly_formed);
    }
    // RFC 3519 §3.1: a Tunnel Request with non-zero Reserved 3 is not understood; HA SHOULD
    // answer 134. From the MN (before the MHAE) it needs D; from an FA (after) D must be clear.
    if (ext.udp_tunnel_request_ignored) return deny(reply_code::ha_poorly_formed);
    if (tunnel && !deregistration) {
        const bool from_mn = ext.udp_tunnel_request_before_mhae;
        if (from_mn != req->decapsulation_by_mn()) return deny(reply_code::ha_poorly_formed);
    }

    if (!deregistration) {
        // RFC 3024 §4.3: reverse tunnelling offered / mandated.
        if (req->reverse_tunnel() && !config_.reverse_tunnel_supported) return deny(reply_code::ha_reverse_tunnel_unavailable);
        if (!req->reverse_tunnel() && config_.reverse_tunnel_required) return deny(reply_code::ha_reverse_tunnel_mandatory);
        // Only IP-in-IP (and IP-in-UDP) are implemented.
        if (req->minimal_encapsulation() || req->gre()) return deny(reply_code::ha_encapsulation_unavailable);
    }

    // RFC 3519 §4.1-4.3: NAT detection = IP source differs from the Care-of Address.
    Binding nb;
    nb.home_address = home;
    nb.care_of_address = req->care_of_address();
    nb.identification = id;
    nb.reverse_tunnel = req->reverse_tunnel();
    nb.broadcast = req->broadcast();
    std::optional<UdpTunnelReply> tunnel_reply;
    if (tunnel && !deregistration) {
        const bool nat = from.ip_source != req->care_of_address();
        const bool want = nat || tunnel->force || tunnel->registered_via_fa;
        if ((nat || tunnel->registered_via_fa) && !config_.udp_tunnelling) {
            return deny(reply_code::ha_prohibited, UdpTunnelReply{UdpTunnelReply::code_declined, false, 0});
        }
        if (tunnel->force && !nat && !(config_.udp_tunnelling && config_.udp_forcing_allowed)) {
            return deny(reply_code::ha_prohibited, UdpTunnelReply{UdpTunnelReply::code_declined, false, 0});
        }
        if (tunnel->encapsulation != 0 && tunnel->encapsulation != core::ip_protocol::ipip) {
            return deny(reply_code::ha_udp_encapsulation_unavailable);
        }
        if (want) {
            tunnel_reply = UdpTunnelReply{UdpTunnelReply::code_assent, tunnel->force, config_.keepalive_interval};
            nb.mode = TunnelMode::Udp;
            nb.keepalive_interval = config_.keepalive_interval;
            nb.udp_endpoint = {from.ip_source, from.udp_source_port};
            if (tunnel->registered_via_fa) {
                nb.half_bound = true;
                nb.udp_endpoint.port = 0;
            }
        } else {
            // No NAT and no F: SHOULD decline, and the binding stays plain IP-in-IP.
            tunnel_reply = UdpTunnelReply{UdpTunnelReply::code_declined, false, 0};
        }
    }

    if (deregistration) {
        // RFC 5944 §3.8.2: CoA = HoA deletes all bindings, otherwise only the one for this CoA.
        const Binding* b = bindings_.find(home);
        if (b && (req->care_of_address() == home || b->care_of_address == req->care_of_address())) {
            out.change = {ChangeKind::Removed, *b};
            bindings_.erase(home);
        }
        return reply(std::move(out), mn, home, accept_code, 0, reply_id, ext, std::nullopt);
    }

    const Binding* existing = bindings_.find(home);
    if (!existing && bindings_.size() >= config_.max_bindings) return deny(reply_code::ha_insufficient_resources);

    // RFC 5944 §3.8.2: the HA may shorten but never lengthen the lifetime.
    std::uint16_t granted = std::min(req->lifetime(), config_.max_lifetime);
    if (nb.mode == TunnelMode::Udp && config_.udp_max_lifetime != 0) granted = std::min(granted, config_.udp_max_lifetime);
    nb.lifetime = granted;
    nb.expires = granted == 0xFFFF ? core::TimePoint::max() : now + std::chrono::seconds(granted);

    out.change = {existing ? ChangeKind::Updated : ChangeKind::Added, nb};
    bindings_.upsert(nb);
    return reply(std::move(out), mn, home, accept_code, granted, reply_id, ext, tunnel_reply);
}

std::optional<core::TimePoint> HomeAgent::poll(core::TimePoint now, std::vector<Binding>* expired) {
    // RFC 5944 §3.8.3: expired bindings are deleted silently; no reply is ever sent unprompted.
    bindings_.expire(now, [&](const Binding& b) {
        if (expired) expired->push_back(b);
    });
    return bindings_.next_expiry();
}

std::optional<HomeAgent::BindingInfo> HomeAgent::binding(core::Ipv4Address home_address) const noexcept {
    const Binding* b = bindings_.find(home_address);
    if (!b) return std::nullopt;
    return BindingInfo{b->care_of_address, b->mode, b->udp_endpoint, b->reverse_tunnel, b->half_bound, b->expires};
}

bool HomeAgent::complete_half_bound(core::Ipv4Address home_address, core::Endpoint keepalive_source) noexcept {
    Binding* b = bindings_.find(home_address);
    if (!b || !b->half_bound || b->udp_endpoint.address != keepalive_source.address) return false;
    b->udp_endpoint = keepalive_source;
    b->half_bound = false;
    return true;
}

std::optional<ReplayState> HomeAgent::replay_state(core::Ipv4Address home_address) const noexcept {
    auto it = mobile_nodes_.find(home_address.value);
    if (it == mobile_nodes_.end()) return std::nullopt;
    const MobileNodeState& mn = it->second;
    return ReplayState{mn.last_accepted_id, mn.nonce, mn.nonce_valid, mn.ever_accepted};
}

bool HomeAgent::restore_replay_state(core::Ipv4Address home_address, const ReplayState& state) noexcept {
    auto it = mobile_nodes_.find(home_address.value);
    if (it == mobile_nodes_.end()) return false;
    MobileNodeState& mn = it->second;
    mn.last_accepted_id = state.last_accepted_id;
    mn.nonce = state.nonce;
    mn.nonce_valid = state.nonce_valid;
    mn.ever_accepted = state.ever_accepted;
    return true;
}

bool HomeAgent::restore_binding(const Binding& binding, core::TimePoint now) {
    if (!mobile_nodes_.contains(binding.home_address.value)) return false;
    if (binding.expires <= now) return false;
    if (!bindings_.find(binding.home_address) && bindings_.size() >= config_.max_bindings) return false;
    // A shorter max_lifetime in today's configuration shortens what a restored binding keeps
    // (RFC 5944 §3.8.2: the HA may shorten a lifetime, never lengthen it).
    Binding b = binding;
    if (config_.max_lifetime != 0xFFFF) b.expires = std::min(b.expires, now + std::chrono::seconds(config_.max_lifetime));
    bindings_.upsert(b);
    return true;
}

}  // namespace mipsec::mip
