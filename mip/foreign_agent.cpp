// SPDX-License-Identifier: MIT
#include "mip/foreign_agent.hpp"

#include <algorithm>

#include "core/ipv4.hpp"

namespace mipsec::mip {

namespace {

constexpr std::uint16_t infinite_lifetime = 0xFFFF;

/// Where the authorization-enabling extension ends, and what follows it for the FA.
struct FaExtensions {
    std::size_t mhae_end = 0;  // offset from the start of the message; 0: no MHAE
    bool encapsulating_delivery = false;
    bool unknown_non_skippable = false;
    bool truncated = false;
};

FaExtensions walk(std::span<const std::uint8_t> message, std::size_t header_len) noexcept {
    FaExtensions out;
    ExtensionReader reader(message.subspan(header_len));
    while (auto e = reader.next()) {
        if (out.mhae_end == 0) {
            // Everything before the MHAE is for the home agent, which is the one to judge it.
            if (e->type == extension_type::mobile_home_auth) out.mhae_end = header_len + e->offset + e->bytes.size();
            continue;
        }
        if (e->type == extension_type::encapsulating_delivery) {
            out.encapsulating_delivery = true;
        } else if (e->type != extension_type::pad && e->type != extension_type::mobile_foreign_auth &&
                   e->type != extension_type::foreign_home_auth && !is_skippable(e->type)) {
            out.unknown_non_skippable = true;
        }
    }
    out.truncated = reader.truncated();
    return out;
}

bool is_group(core::Ipv4Address a) noexcept { return a.is_multicast() || a.is_broadcast(); }

/// The first well-formed UDP Tunnel Reply in a reply's extension list, before or after the MHAE
/// (RFC 3519 §3.2: the HA answers an FA's request; where it puts the answer varies).
std::optional<UdpTunnelReply> tunnel_reply_of(std::span<const std::uint8_t> message) noexcept {
    ExtensionReader reader(message.subspan(RegistrationReplyView::header_len));
    while (auto e = reader.next()) {
        if (e->type != extension_type::udp_tunnel_reply) continue;
        if (auto v = UdpTunnelReplyView::check(e->bytes)) return UdpTunnelReply::parse(*v);
        return std::nullopt;  // type 44 is not skippable: a malformed one is no assent
    }
    return std::nullopt;
}

constexpr std::chrono::seconds min_keepalive_interval{10};  // RFC 3519 §3.6.2: never below 10 s

}  // namespace

ForeignAgent::ForeignAgent(Config config, crypto::Random& random) : config_(std::move(config)), random_(random) {
    if (config_.care_of_addresses.empty()) config_.care_of_addresses.push_back(config_.link_address);
    // RFC 5944 §2.3.2: advertise at least three times per advertisement lifetime.
    const core::Duration max_interval = std::chrono::seconds(config_.advertisement_lifetime) / 3;
    if (config_.advertisement_interval > max_interval) config_.advertisement_interval = max_interval;
    if (config_.advertisement_interval < std::chrono::seconds(1)) config_.advertisement_interval = std::chrono::seconds(1);
    config_.advertisement_jitter = std::clamp(config_.advertisement_jitter, 0.0, 0.5);
    config_.keepalive_default = std::max(config_.keepalive_default, min_keepalive_interval);
    pending_.reserve(config_.max_pending);
}

bool ForeignAgent::is_care_of_address(core::Ipv4Address a) const noexcept {
    return std::find(config_.care_of_addresses.begin(), config_.care_of_addresses.end(), a) != config_.care_of_addresses.end();
}

const ForeignAgent::Visitor* ForeignAgent::visitor(core::Ipv4Address home_address) const noexcept {
    auto it = visitors_.find(home_address.value);
    return it == visitors_.end() ? nullptr : &it->second;
}

ForeignAgent::Datagram ForeignAgent::to_link(core::Ipv4Address source, core::Endpoint mn) const noexcept {
    Datagram d;
    d.toward = Toward::Link;
    d.source = {source.is_unspecified() || is_group(source) ? config_.link_address : source, registration_port};
    // A node without an address yet can only be reached by broadcast on the link.
    d.destination = {mn.address.is_unspecified() ? core::Ipv4Address{0xFFFFFFFFu} : mn.address, mn.port};
    return d;
}

ForeignAgent::Output ForeignAgent::deny(std::uint8_t code, const RegistrationRequestView& req, const RequestInfo& from,
                                        std::uint16_t lifetime) const {
    Output out;
    Datagram d = to_link(from.ip_destination, {from.ip_source, from.udp_source_port});
    RegistrationReply r;
    r.code = code;
    r.lifetime = lifetime;
    r.home_address = req.home_address();
    r.home_agent = req.home_agent();
    r.identification = req.identification();
    r.emit(d.storage);
    d.len = RegistrationReply::len;
    out.datagram = d;
    out.denied = code;
    return out;
}

ForeignAgent::Output ForeignAgent::on_request(std::span<const std::uint8_t> payload, const RequestInfo& from,
                                              core::TimePoint now) {
    Output out;
    auto req = RegistrationRequestView::check(payload);
    if (!req) {
        out.discard = Discard::Malformed;
        return out;
    }
    if (payload.size() > max_relay_len) {
        out.discard = Discard::TooLong;
        return out;
    }
    const FaExtensions ext = walk(payload, RegistrationRequestView::header_len);
    if (ext.unknown_non_skippable) {
        out.discard = Discard::UnknownExtension;
        return out;
    }
    if (ext.truncated || ext.mhae_end == 0 || (req->flags() & RegistrationRequestView::reserved_flags) != 0)
        return deny(fa_reply_code::poorly_formed_request, *req, from, 0);
    const bool reverse = req->reverse_tunnel();
    // RFC 3024 §3.3: a reverse-tunnel request must come from the link itself (TTL 255).
    if (reverse && from.ttl != 255) {
        if (last_too_distant_ && now - *last_too_distant_ < std::chrono::seconds(1)) {
            out.discard = Discard::RateLimited;
            return out;
        }
        last_too_distant_ = now;
        return deny(fa_reply_code::mobile_node_too_distant, *req, from, 0);
    }
    if (reverse && !config_.reverse_tunnel) return deny(fa_reply_code::reverse_tunnel_unavailable, *req, from, 0);
    if (!reverse && config_.reverse_tunnel_required) return deny(fa_reply_code::reverse_tunnel_mandatory, *req, from, 0);
    if (ext.encapsulating_delivery) return deny(fa_reply_code::delivery_style_unsupported, *req, from, 0);
    if (req->minimal_encapsulation() || req->gre()) return deny(fa_reply_code::encapsulation_unavailable, *req, from, 0);
    const bool colocated = req->decapsulation_by_mn();
    if (!colocated && !is_care_of_address(req->care_of_address()))
        return deny(fa_reply_code::invalid_care_of_address, *req, from, 0);
    // RFC 5944 §3.7.2.1: a lifetime above our maximum is denied with the maximum in the reply.
    if (config_.registration_lifetime != infinite_lifetime && req->lifetime() > config_.registration_lifetime)
        return deny(fa_reply_code::lifetime_too_long, *req, from, config_.registration_lifetime);
    if (req->home_agent().is_unspecified()) return deny(fa_reply_code::missing_home_agent, *req, from, 0);
    if (is_group(req->home_agent())) return deny(fa_reply_code::invalid_home_agent, *req, from, 0);

    // RFC 3519 §3.1: an FA behind a NAT asks for UDP tunnelling itself, for its own care-of
    // address only (a co-located MN, D set, asks for its own tunnel) and not to deregister.
    const bool request_udp =
        config_.home_agent_udp_tunnelling != UdpTunnelling::Off && !colocated && req->lifetime() != 0;
    if (request_udp && ext.mhae_end + UdpTunnelRequest::len > max_relay_len) {
        out.discard = Discard::TooLong;
        return out;
    }

    const std::uint32_t low = static_cast<std::uint32_t>(req->identification());
    auto same = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) {
        return p.home_address == req->home_address() && static_cast<std::uint32_t>(p.identification) == low;
    });
    if (same == pending_.end()) {
        const bool known = visitor(req->home_address()) != nullptr;
        if (pending_.size() >= config_.max_pending || (!known && visitors_.size() + pending_.size() >= config_.max_visitors))
            return deny(fa_reply_code::insufficient_resources, *req, from, 0);
        pending_.emplace_back();
        same = pending_.end() - 1;
    }
    Pending& p = *same;
    p.home_address = req->home_address();
    p.home_agent = req->home_agent();
    p.care_of_address = colocated ? config_.care_of_addresses.front() : req->care_of_address();
    p.identification = req->identification();
    p.link = {from.ip_source, from.udp_source_port};
    p.link_destination = from.ip_destination;
    p.lifetime = req->lifetime();
    p.reverse_tunnel = reverse;
    p.colocated = colocated;
    p.udp_requested = request_udp;
    p.relayed_at = now;
    p.expires = now + config_.pending_timeout;

    // RFC 5944 §3.7.2.2: relay everything through the MHAE unchanged, from the care-of address.
    Datagram d;
    d.toward = Toward::HomeAgent;
    d.source = {p.care_of_address, config_.relay_port};
    d.destination = {p.home_agent, registration_port};
    std::copy_n(payload.begin(), ext.mhae_end, d.storage.begin());
    d.len = ext.mhae_end;
    if (request_udp) {
        // After the MHAE, where RFC 3519 §3.1 puts an FA's extension (the MN's authenticator
        // does not cover it; with no FA-HA SA there is no FHAE to put it before).
        UdpTunnelRequest tr;
        tr.force = config_.home_agent_udp_tunnelling == UdpTunnelling::Forced;
        tr.encapsulation = core::ip_protocol::ipip;
        tr.emit(std::span(d.storage).subspan(d.len, UdpTunnelRequest::len));
        d.len += UdpTunnelRequest::len;
    }
    out.datagram = d;
    return out;
}

ForeignAgent::Output ForeignAgent::on_reply(std::span<const std::uint8_t> payload, core::Endpoint from, core::TimePoint now) {
    Output out;
    auto reply = RegistrationReplyView::check(payload);
    if (!reply) {
        out.discard = Discard::Malformed;
        return out;
    }
    if (payload.size() > max_relay_len) {
        out.discard = Discard::TooLong;
        return out;
    }
    // RFC 5944 §3.7.3.1: match on home address and the low-order 32 bits of Identification.
    const std::uint32_t low = static_cast<std::uint32_t>(reply->identification());
    auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) {
        return static_cast<std::uint32_t>(p.identification) == low &&
               (p.home_address == reply->home_address() || p.home_address.is_unspecified());
    });
    if (it == pending_.end()) {
        out.discard = Discard::NoPending;
        return out;
    }
    if (from.address != it->home_agent) {
        out.discard = Discard::NotFromHomeAgent;
        return out;
    }
    const Pending p = *it;
    pending_.erase(it);

    const FaExtensions ext = walk(payload, RegistrationReplyView::header_len);
    const std::size_t relay_len = ext.mhae_end != 0 ? ext.mhae_end : payload.size();
    Datagram d = to_link(p.link_destination, p.link);
    std::copy_n(payload.begin(), relay_len, d.storage.begin());
    d.len = relay_len;
    out.datagram = d;

    const core::Ipv4Address home = reply->home_address();  // assigned by the HA for a NAI request
    if (is_accepted(reply->code())) {
        const std::uint16_t granted = std::min(reply->lifetime(), p.lifetime);
        if (granted == 0) {
            auto v = visitors_.find(home.value);
            if (v != visitors_.end()) {
                out.change = VisitorChange{false, v->second};
                visitors_.erase(v);
            }
        } else {
            Visitor v;
            v.home_address = home;
            v.home_agent = p.home_agent;
            v.care_of_address = p.care_of_address;
            v.link = {p.link.address.is_unspecified() ? home : p.link.address, p.link.port};
            v.lifetime = granted;
            // Counted from when we relayed the request, as the MN counts from sending it.
            v.expires = granted == infinite_lifetime ? core::TimePoint::max() : p.relayed_at + std::chrono::seconds(granted);
            v.reverse_tunnel = p.reverse_tunnel;
            v.colocated = p.colocated;
            // RFC 3519 §3.2: UDP only on an assenting Tunnel Reply to our own Tunnel Request.
            if (auto tr = p.udp_requested ? tunnel_reply_of(payload) : std::nullopt; tr && tr->assents()) {
                v.mode = TunnelMode::Udp;
                const std::chrono::seconds k(tr->keepalive_interval);
                v.keepalive_interval = tr->keepalive_interval == 0 ? config_.keepalive_default : std::max(k, min_keepalive_interval);
                // RFC 3519 §3.6: the first keepalive no earlier than K after the request.
                v.last_sent_to_home_agent = p.relayed_at;
            }
            if (auto old = visitors_.find(home.value); old != visitors_.end()) {
                // A renewal: a late answer to the last keepalive still counts as ours.
                v.keepalive_sequence = old->second.keepalive_sequence;
            }
            visitors_[home.value] = v;
            out.change = VisitorChange{true, v};
        }
    }
    (void)now;
    return out;
}

ForeignAgent::Advertisement ForeignAgent::advertise(core::Ipv4Address destination) {
    Advertisement a;
    a.source = config_.link_address;
    a.destination = destination;
    auto& ad = a.advert;
    ad.code = config_.routes_common_traffic ? 0 : AgentAdvertisementView::code_not_routing;
    ad.lifetime = config_.advertisement_lifetime;
    ad.sequence_number = sequence_;
    // RFC 5944 §2.3.1: after 0xFFFF comes 256, so 0-255 always means "rebooted".
    sequence_ = sequence_ == 0xFFFF ? 256 : static_cast<std::uint16_t>(sequence_ + 1);
    ad.registration_lifetime = config_.registration_lifetime;
    using F = MobilityAgentExtView;
    // F is always set (this is a foreign agent); B and R imply F anyway (RFC 5944 §2.1.1).
    ad.flags = static_cast<std::uint8_t>(F::flag_f | (config_.reverse_tunnel ? F::flag_t : 0) |
                                         (config_.registration_required ? F::flag_r : 0) | (config_.busy ? F::flag_b : 0) |
                                         (config_.also_home_agent ? F::flag_h : 0));
    ad.flags2 = config_.udp_tunnelling ? F::flag2_u : 0;
    ad.care_of_count = std::min(config_.care_of_addresses.size(), AgentAdvertisement::max_care_of);
    std::copy_n(config_.care_of_addresses.begin(), ad.care_of_count, ad.care_of.begin());
    return a;
}

core::Duration ForeignAgent::jittered_interval() noexcept {
    const double r = static_cast<double>(random_.next_u32()) / 4294967295.0 * 2.0 - 1.0;  // [-1, 1]
    const auto base = config_.advertisement_interval;
    return std::chrono::duration_cast<core::Duration>(base * (1.0 + config_.advertisement_jitter * r));
}

ForeignAgent::Output ForeignAgent::on_solicitation(core::Ipv4Address source, core::TimePoint now) {
    Output out;
    if (last_solicited_ && now - *last_solicited_ < config_.solicited_min_interval) {
        // RFC 1256 §4.3, RFC 5944 §2.4: solicited advertisements are rate-limited, so a
        // flood of solicitations is never amplified. Whoever was held back (a flooder's spoofed
        // source or a real visitor) hears one multicast advertisement when the interval ends.
        solicitation_held_back_ = true;
        out.discard = Discard::RateLimited;
        return out;
    }
    last_solicited_ = now;
    // RFC 5944 §2.3: answer the solicitor directly when it has an address, else the link.
    out.advertisement = advertise(source.is_unspecified() || is_group(source) ? all_systems_multicast : source);
    return out;
}

ForeignAgent::Output ForeignAgent::poll(core::TimePoint now) {
    Output out;
    if (!next_advertisement_ || now >= *next_advertisement_) {
        out.advertisement = advertise(all_systems_multicast);
        next_advertisement_ = now + jittered_interval();
        solicitation_held_back_ = false;  // the multicast one answers them too
        return out;
    }
    if (solicitation_held_back_ && last_solicited_ && now - *last_solicited_ >= config_.solicited_min_interval) {
        out.advertisement = advertise(all_systems_multicast);
        last_solicited_ = now;
        solicitation_held_back_ = false;
        return out;
    }
    auto late = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.expires <= now; });
    if (late != pending_.end()) {
        // RFC 5944 §3.7.3: the home agent never answered; tell the MN (code 78).
        Datagram d = to_link(late->link_destination, late->link);
        RegistrationReply r;
        r.code = fa_reply_code::registration_timeout;
        r.home_address = late->home_address;
        r.home_agent = late->home_agent;
        r.identification = late->identification;
        r.emit(d.storage);
        d.len = RegistrationReply::len;
        out.datagram = d;
        out.denied = r.code;
        pending_.erase(late);
        return out;
    }
    for (auto it = visitors_.begin(); it != visitors_.end(); ++it) {
        if (it->second.expires <= now) {
            out.change = VisitorChange{false, it->second};
            visitors_.erase(it);
            return out;
        }
    }
    for (auto& [key, v] : visitors_) {
        if (v.mode != TunnelMode::Udp || now < v.last_sent_to_home_agent + v.keepalive_interval) continue;
        // RFC 3519 §3.6: nothing went to the HA for K seconds; keep the NAT mapping alive.
        v.last_sent_to_home_agent = now;
        ++v.keepalive_sequence;
        ++v.keepalives_unanswered;
        out.keepalive = Keepalive{v.home_address, v.home_agent, v.care_of_address, v.keepalive_sequence};
        return out;
    }
    return out;
}

void ForeignAgent::note_sent_to_home_agent(core::Ipv4Address home_address, core::TimePoint now) noexcept {
    auto it = visitors_.find(home_address.value);
    if (it != visitors_.end()) it->second.last_sent_to_home_agent = now;
}

bool ForeignAgent::on_keepalive_reply(core::Ipv4Address home_address, std::uint16_t sequence) noexcept {
    auto it = visitors_.find(home_address.value);
    if (it == visitors_.end() || it->second.mode != TunnelMode::Udp || it->second.keepalive_sequence != sequence) return false;
    it->second.keepalives_unanswered = 0;
    return true;
}

std::optional<core::TimePoint> ForeignAgent::next_deadline() const noexcept {
    std::optional<core::TimePoint> d = next_advertisement_;
    auto consider = [&](core::TimePoint t) {
        if (t != core::TimePoint::max() && (!d || t < *d)) d = t;
    };
    if (solicitation_held_back_ && last_solicited_) consider(*last_solicited_ + config_.solicited_min_interval);
    for (const auto& p : pending_) consider(p.expires);
    for (const auto& [key, v] : visitors_) {
        consider(v.expires);
        if (v.mode == TunnelMode::Udp) consider(v.last_sent_to_home_agent + v.keepalive_interval);
    }
    return d;
}

}  // namespace mipsec::mip
