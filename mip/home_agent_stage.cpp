// SPDX-License-Identifier: MIT
#include "mip/home_agent_stage.hpp"

#include <algorithm>
#include <functional>
#include <string>

#include "core/icmp.hpp"
#include "mip/tunnel_encap.hpp"

namespace mipsec::mip {

using core::DropReason;
using core::Verdict;

namespace {

using Failure = HomeAgentStage::RequestFailure;

std::optional<Failure> failure_of(HomeAgent::Discard d) noexcept {
    switch (d) {
        case HomeAgent::Discard::None: return std::nullopt;
        case HomeAgent::Discard::Malformed: return Failure::Malformed;
        case HomeAgent::Discard::UnknownExtension: return Failure::UnknownExtension;
        case HomeAgent::Discard::UnknownMobileNode: return Failure::UnknownHomeAddress;
        case HomeAgent::Discard::NoAuthExtension: return Failure::NoAuthExtension;
        case HomeAgent::Discard::UnknownSpi: return Failure::UnknownSpi;
        case HomeAgent::Discard::UnexpectedFhae: return Failure::UnexpectedFhae;
        case HomeAgent::Discard::CryptoFailure: return Failure::CryptoFailure;
        case HomeAgent::Discard::UntrustedSource: return Failure::UntrustedSource;
        case HomeAgent::Discard::AuthFailureUnanswered: return Failure::BadAuthenticatorUnanswered;
        case HomeAgent::Discard::IdentificationUnanswered: return Failure::IdentificationUnanswered;
    }
    return Failure::Malformed;
}

Failure failure_of_denial(std::uint8_t code) noexcept {
    switch (code) {
        case reply_code::ha_mn_auth_failed: return Failure::BadAuthenticator;
        case reply_code::ha_identification_mismatch: return Failure::IdentificationMismatch;
        case reply_code::ha_unknown_home_agent: return Failure::UnknownHomeAgent;
        case reply_code::ha_poorly_formed: return Failure::PoorlyFormed;
        case reply_code::ha_reverse_tunnel_unavailable:
        case reply_code::ha_reverse_tunnel_mandatory: return Failure::ReverseTunnel;
        case reply_code::ha_encapsulation_unavailable:
        case reply_code::ha_udp_encapsulation_unavailable: return Failure::Encapsulation;
        case reply_code::ha_prohibited: return Failure::Prohibited;
        case reply_code::ha_insufficient_resources: return Failure::InsufficientResources;
        default: return Failure::OtherDenial;
    }
}

/// What a user should read in the log for each reason.
std::string_view explanation(Failure f) noexcept {
    switch (f) {
        case Failure::BadUdpChecksum: return "UDP checksum does not verify";
        case Failure::Malformed: return "malformed request";
        case Failure::UnknownExtension: return "unknown non-skippable extension (type 0-127)";
        case Failure::UnknownHomeAddress: return "no mobile node configured with this home address or NAI";
        case Failure::NoAuthExtension: return "no mobile-home authentication extension";
        case Failure::UnknownSpi: return "SPI is not the one configured for this mobile node";
        case Failure::UnexpectedFhae: return "foreign-home authentication extension, but no foreign agent key";
        case Failure::UntrustedSource: return "source address is not in trusted_networks";
        case Failure::BadAuthenticatorUnanswered: return "authenticator does not verify; not answered (one 131 per node per interval)";
        case Failure::IdentificationUnanswered: return "identification unacceptable; discarded unauthenticated (one 133 per node per interval)";
        case Failure::CryptoFailure: return "HMAC unavailable";
        case Failure::BadAuthenticator: return "authenticator does not verify (wrong key?)";
        case Failure::IdentificationMismatch: return "identification too far from our clock, or replayed";
        case Failure::UnknownHomeAgent: return "sent to a broadcast address or to another home agent";
        case Failure::PoorlyFormed: return "poorly formed request";
        case Failure::ReverseTunnel: return "reverse tunnelling unavailable or required";
        case Failure::Encapsulation: return "requested encapsulation unavailable";
        case Failure::Prohibited: return "UDP tunnelling not allowed by configuration";
        case Failure::InsufficientResources: return "binding table full";
        case Failure::OtherDenial: return "denied";
        case Failure::Count_: break;
    }
    return "?";
}

/// One key per mobile node: its home address, else its NAI, else the sender's address.
std::uint64_t node_key(core::Ipv4Address home, std::string_view nai, core::Ipv4Address sender) noexcept {
    if (!home.is_unspecified()) return home.value;
    if (!nai.empty()) return (std::uint64_t{1} << 32) | (std::hash<std::string_view>{}(nai) & 0xFFFFFFFFu);
    return (std::uint64_t{2} << 32) | sender.value;
}

/// An RFC 3519 §3.6 keepalive: an ICMP echo request to the HA itself.
std::optional<core::IcmpView> keepalive_of(const core::Ipv4View& inner, core::Ipv4Address ha) noexcept {
    if (inner.protocol() != core::ip_protocol::icmp || inner.destination() != ha || inner.is_fragment()) return std::nullopt;
    auto icmp = core::IcmpView::check(inner.payload());
    if (!icmp || icmp->type() != core::icmp_type::echo_request || icmp->code() != 0 || !icmp->checksum_valid())
        return std::nullopt;
    return icmp;
}

}  // namespace

std::string_view HomeAgentStage::status_key(RequestFailure f) noexcept {
    switch (f) {
        case Failure::BadUdpChecksum: return "bad_udp_checksum";
        case Failure::Malformed: return "malformed";
        case Failure::UnknownExtension: return "unknown_extension";
        case Failure::UnknownHomeAddress: return "unknown_home_address";
        case Failure::NoAuthExtension: return "no_auth_extension";
        case Failure::UnknownSpi: return "unknown_spi";
        case Failure::UnexpectedFhae: return "unexpected_fhae";
        case Failure::UntrustedSource: return "untrusted_source";
        case Failure::BadAuthenticatorUnanswered: return "bad_authenticator_unanswered";
        case Failure::IdentificationUnanswered: return "identification_mismatch_unanswered";
        case Failure::CryptoFailure: return "crypto_failure";
        case Failure::BadAuthenticator: return "bad_authenticator";
        case Failure::IdentificationMismatch: return "identification_mismatch";
        case Failure::UnknownHomeAgent: return "unknown_home_agent";
        case Failure::PoorlyFormed: return "poorly_formed";
        case Failure::ReverseTunnel: return "reverse_tunnel";
        case Failure::Encapsulation: return "encapsulation_unavailable";
        case Failure::Prohibited: return "prohibited";
        case Failure::InsufficientResources: return "insufficient_resources";
        case Failure::OtherDenial: return "other";
        case Failure::Count_: break;
    }
    return "?";
}

bool HomeAgentStage::PerNodeLogLimit::admit(std::uint64_t node, core::TimePoint now, std::uint64_t& held_back) {
    if (capacity_ == 0) {
        held_back = 0;
        return true;
    }
    if (auto it = entries_.find(node); it != entries_.end()) {
        if (now - it->second.logged < interval_) {
            ++it->second.held_back;
            return false;
        }
        held_back = it->second.held_back;
        it->second = {now, 0};
        return true;
    }
    if (entries_.size() >= capacity_) {
        entries_.erase(order_.front());
        order_.pop_front();
    }
    entries_.emplace(node, Entry{now, 0});
    order_.push_back(node);
    held_back = 0;
    return true;
}

HomeAgentStage::HomeAgentStage(Config config, crypto::Random& random)
    : config_(std::move(config)),
      agent_(std::move(config_.agent), random),  // the SAs live only in the core
      failure_log_(config_.failure_log_nodes, config_.failure_log_interval) {}

void HomeAgentStage::count_and_log(const FailedRequest& f, core::StageContext& ctx) {
    ++counters_.failures[static_cast<std::size_t>(f.reason)];
    const bool discarded = is_discard(f.reason);
    ++(discarded ? counters_.requests_discarded : counters_.requests_rejected);
    std::uint64_t held_back = 0;
    if (!ctx.log().enabled(core::LogLevel::Warn) ||
        !failure_log_.admit(node_key(f.home_address, f.nai, f.from.address), ctx.now(), held_back))
        return;
    // Printable NAI only; a hostile one must not forge log lines.
    const bool nai_printable = std::all_of(f.nai.begin(), f.nai.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
    const std::string_view nai = f.nai.empty() ? "" : nai_printable ? f.nai : "<not printable>";
    ctx.log().limited(core::LogLevel::Warn, ctx.now(), "registration request for ",
                      f.home_address.is_unspecified() ? std::string("?") : f.home_address.to_string(),
                      nai.empty() ? "" : " (NAI ", nai, nai.empty() ? "" : ")", " from ", f.from.to_string(),
                      discarded ? " discarded: " : " rejected with code ",
                      discarded ? std::string() : std::to_string(f.code) + ": ", explanation(f.reason),
                      f.reason == Failure::UnknownSpi ? " (got " + std::to_string(f.spi) + ")" : std::string(),
                      held_back != 0 ? " (" + std::to_string(held_back) + " more from this node not logged)" : std::string());
}

std::size_t HomeAgentStage::headroom() const noexcept {
    return agent_.config().udp_tunnelling ? ip_in_udp_overhead : ip_in_ip_overhead;
}

bool HomeAgentStage::is_broadcast_to_us(core::Ipv4Address destination) const noexcept {
    const auto& net = agent_.config().home_network;
    const core::Ipv4Address directed{net.network().value | ~net.mask()};
    return destination.is_broadcast() || (net.length < 31 && destination == directed);
}

void HomeAgentStage::announce(const HomeAgent::BindingChange& change, core::StageContext& ctx) {
    const bool registered = change.kind != HomeAgent::ChangeKind::Removed;
    ctx.log().info(registered ? "binding " : "binding removed: ", change.binding.home_address.to_string(), " -> ",
                   change.binding.care_of_address.to_string(),
                   change.binding.mode == TunnelMode::Udp ? " (IP-in-UDP)" : " (IP-in-IP)");
    ctx.raise(core::RegistrationChanged{change.binding.home_address, change.binding.care_of_address, registered, {},
                                        config_.home_link_ifindex, core::RegistrationChanged::Kind::HomeBinding});
}

Verdict HomeAgentStage::registration(const core::Ipv4View& ip, const core::UdpView& udp, core::StageContext& ctx) {
    ++counters_.requests;
    const core::Endpoint sender{ip.source(), udp.source_port()};
    auto req = RegistrationRequestView::check(udp.payload());
    // RFC 5944 §3.8.2.1 check 1: a bad non-zero UDP checksum is discarded without a reply.
    if (!udp.checksum_valid(ip.source(), ip.destination())) {
        count_and_log({Failure::BadUdpChecksum, sender, req ? req->home_address() : core::Ipv4Address{}, {}, 0, 0}, ctx);
        return Verdict::drop(DropReason::Malformed);
    }
    // What the binding was before, so a renewal to the same place raises nothing.
    std::optional<HomeAgent::BindingInfo> before;
    std::optional<ReplayState> replay_before;
    if (req) {
        before = agent_.binding(req->home_address());
        if (store_) replay_before = agent_.replay_state(req->home_address());
    }

    const HomeAgent::Received rx{ip.source(), ip.destination(), udp.source_port(), udp.destination_port()};
    auto out = agent_.process(udp.payload(), rx, ctx.now());
    const auto& change = out.change;
    if (change.kind == HomeAgent::ChangeKind::Added || change.kind == HomeAgent::ChangeKind::Removed ||
        (change.kind == HomeAgent::ChangeKind::Updated &&
         (!before || before->care_of_address != change.binding.care_of_address || before->mode != change.binding.mode))) {
        announce(change, ctx);
    }
    if (store_) {
        // Queued for the group commit in poll(), which the shell calls after each receive
        // batch; the reply waits for it (below).
        if (change.kind == HomeAgent::ChangeKind::Removed) {
            unsynced_.push_back({StoreChange::EraseBinding{change.binding.home_address}});
        } else if (change.kind != HomeAgent::ChangeKind::None) {
            unsynced_.push_back(put_binding(change.binding));
        }
        // Only an authenticated request moves replay state (a 131 reply changes nothing).
        if (auto after = agent_.replay_state(out.home_address);
            after && out.reply && out.code != reply_code::ha_mn_auth_failed && after != replay_before) {
            unsynced_.push_back({StoreChange::PutReplay{{out.home_address, *after}}});
        }
    }
    const std::string_view nai(reinterpret_cast<const char*>(out.nai.data()), out.nai.size());
    if (!out.reply) {
        count_and_log({failure_of(out.discard).value_or(Failure::Malformed), sender, out.home_address, nai, out.spi, 0}, ctx);
        return Verdict::consumed();
    }
    if (!is_accepted(out.code)) count_and_log({failure_of_denial(out.code), sender, out.home_address, nai, out.spi, out.code}, ctx);
    // RFC 5944 §3.8.3.1: the reply comes from the request's destination, or from the HA's
    // unicast address when that was a broadcast.
    const core::Ipv4Address dst = ip.destination();
    const core::Ipv4Address source = is_broadcast_to_us(dst) || dst.is_multicast() ? agent_.config().address : dst;
    auto buf = ctx.allocate();
    if (!emit_udp_packet(buf, {source, udp.destination_port()}, out.reply_to, config_.reply_ttl, out.reply->bytes())) {
        ++counters_.no_buffer;
        return Verdict::consumed();
    }
    ++counters_.replies_sent;
    if (!unsynced_.empty()) {
        // Durable before the reply leaves: a mobile node told "accepted" keeps its binding
        // across a crash, and no request accepted before it can be replayed after it.
        held_replies_.push_back(std::move(buf));
        if (held_replies_.size() >= max_held_replies) sync_store(ctx);
        return Verdict::consumed();
    }
    ctx.send_control(std::move(buf));
    return Verdict::consumed();
}

void HomeAgentStage::answer_keepalive(const core::Ipv4View& inner, const HomeAgent::BindingInfo& b, core::StageContext& ctx) {
    auto request = core::IcmpView::check(inner.payload());
    auto buf = ctx.allocate();
    const std::size_t body_len = request->body().size();
    if (!buf.valid() || buf.headroom() + ip_in_udp_overhead > buf.capacity()) {
        ++counters_.no_buffer;
        return;
    }
    // Room in front for this stage's own tunnel headers.
    buf.reset(buf.headroom() + ip_in_udp_overhead);
    const core::Ipv4Address ha = agent_.config().address;
    if (!emit_echo_packet(buf, ha, inner.source(), core::icmp_type::echo_reply, request->echo_identifier(),
                          request->echo_sequence(), body_len)) {
        ++counters_.no_buffer;
        return;
    }
    auto reply = core::IcmpMutView::check(buf.bytes().subspan(core::Ipv4Header::len));
    std::copy(request->body().begin(), request->body().end(), reply->body().begin());
    reply->update_checksum();
    const OuterHeader outer{ha, b.udp_endpoint.address, config_.tunnel_ttl, config_.df_when_inner_clear, next_identification_++};
    if (!push_ip_in_udp(buf, outer, registration_port, b.udp_endpoint.port).passed()) return;
    ++counters_.keepalives_answered;
    ctx.send_control(std::move(buf));
}

Verdict HomeAgentStage::decapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    if (pending_restore_) restore_stored(ctx);
    const core::Ipv4Address ha = agent_.config().address;
    const auto now = ctx.now();
    last_now_ = now;

    if (auto udp = udp_of(*ip); udp && udp->destination_port() == registration_port &&
                                (ip->destination() == ha || is_broadcast_to_us(ip->destination()))) {
        const auto payload = udp->payload();
        // RFC 3519 §3.3: on port 434, Type 1 is a request and Type 4 tunnelled data.
        if (!payload.empty() && payload[0] == message_type::registration_request) return registration(*ip, *udp, ctx);
        if (payload.empty() || payload[0] != message_type::tunnel_data || ip->destination() != ha)
            return Verdict::drop(DropReason::UnknownMessage);
    }

    auto tunnel = peek_tunnel(*ip);
    if (!tunnel || tunnel->destination != ha ||
        (tunnel->kind == TunnelKind::Udp && tunnel->destination_port != registration_port)) {
        if (config_.drop_unrelated) return Verdict::drop(DropReason::UnexpectedProtocol);
        ++counters_.passed_unrelated;
        return Verdict::not_mine();
    }
    if (tunnel->fragment) return Verdict::drop(DropReason::Fragment);
    if (tunnel->kind == TunnelKind::Udp) {
        if (!tunnel->udp_checksum_ok) return Verdict::drop(DropReason::Malformed);
        // Only IP-in-UDP is negotiated (the core refuses other encapsulations with 142).
        if (tunnel->next_header != core::ip_protocol::ipip) return Verdict::drop(DropReason::BadNextHeader);
    }
    if (auto v = strip_tunnel(packet, *tunnel); !v.passed()) return v;
    auto inner = core::Ipv4View::check(packet.bytes());
    if (!inner) return Verdict::drop(DropReason::Internal);

    // RFC 3024 §4.3: a binding for the inner source, reached from its care-of address with the
    // negotiated encapsulation. A binding whose lifetime ran out is gone even before poll().
    const core::Ipv4Address home = inner->source();
    auto b = agent_.binding(home);
    if (!b || b->expires <= now) {
        ++counters_.dropped_no_binding;
        return Verdict::drop(DropReason::NoBinding);
    }
    const core::Endpoint outer_source{tunnel->source, tunnel->source_port};
    const auto keepalive = tunnel->kind == TunnelKind::Udp ? keepalive_of(*inner, ha) : std::nullopt;
    bool matches;
    if (tunnel->kind == TunnelKind::IpInIp) {
        matches = b->mode == TunnelMode::IpInIp && b->care_of_address == tunnel->source;
    } else if (b->mode != TunnelMode::Udp) {
        matches = false;
    } else if (b->half_bound) {
        // RFC 3519 §4.4: only a keepalive from the registration's source address completes it.
        matches = keepalive && agent_.complete_half_bound(home, outer_source);
        if (matches) {
            ++counters_.half_bound_completed;
            ctx.log().info("binding ", home.to_string(), " completed at ", outer_source.to_string());
            b = agent_.binding(home);
            if (store_) {
                if (const Binding* completed = agent_.bindings().find(home)) unsynced_.push_back(put_binding(*completed));
            }
        }
    } else {
        // RFC 3519 §5.1: the effective CoA is the NAT-observed address *and* port.
        matches = b->udp_endpoint == outer_source;
    }
    if (!matches) {
        ++counters_.dropped_binding_mismatch;
        ctx.log().limited(core::LogLevel::Debug, now, "reverse-tunnelled packet for ", home.to_string(), " from ",
                          outer_source.to_string(), " does not match its binding");
        return Verdict::drop(DropReason::BindingMismatch);
    }
    if (keepalive) {
        answer_keepalive(*inner, *b, ctx);
        return Verdict::consumed();
    }
    ++counters_.tunnelled_in;
    return Verdict::pass();
}

Verdict HomeAgentStage::encapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    if (pending_restore_) restore_stored(ctx);
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    auto b = agent_.binding(ip->destination());
    // A half-bound binding has no tunnel endpoint until its first keepalive (RFC 3519 §4.4).
    if (!b || b->expires <= ctx.now() || (b->mode == TunnelMode::Udp && b->half_bound)) {
        if (config_.pass_unbound) return Verdict::not_mine();
        ++counters_.dropped_no_binding;
        return Verdict::drop(DropReason::NoBinding);
    }
    // RFC 2003 §4: never send a packet back into the tunnel it came out of.
    if (ip->source() == b->care_of_address) return Verdict::drop(DropReason::Loop);
    const core::Ipv4Address ha = agent_.config().address;
    Verdict v;
    if (b->mode == TunnelMode::Udp) {
        const OuterHeader outer{ha, b->udp_endpoint.address, config_.tunnel_ttl, config_.df_when_inner_clear, next_identification_++};
        v = push_ip_in_udp(packet, outer, registration_port, b->udp_endpoint.port);
    } else {
        // RFC 5944 §4.2.3: the outer source is the address the HA put in its replies.
        const OuterHeader outer{ha, b->care_of_address, config_.tunnel_ttl, config_.df_when_inner_clear, next_identification_++};
        v = push_ip_in_ip(packet, outer);
    }
    if (v.passed()) ++counters_.tunnelled_out;
    return v;
}

std::optional<core::TimePoint> HomeAgentStage::poll(core::StageContext& ctx) {
    if (pending_restore_) restore_stored(ctx);
    last_now_ = ctx.now();
    for (const auto& b : removed_by_reload_) {
        ++counters_.bindings_removed_by_reload;
        ctx.log().info("binding removed: ", b.home_address.to_string(), " -> ", b.care_of_address.to_string(),
                       " (mobile node no longer configured)");
        ctx.raise(core::RegistrationChanged{b.home_address, b.care_of_address, false, {}, config_.home_link_ifindex,
                                            core::RegistrationChanged::Kind::HomeBinding});
    }
    removed_by_reload_.clear();
    expired_.clear();
    auto next = agent_.poll(ctx.now(), &expired_);
    if (store_) {
        for (const auto& b : expired_) unsynced_.push_back({StoreChange::EraseBinding{b.home_address}});
        sync_store(ctx);
    }
    for (const auto& b : expired_) {
        ++counters_.bindings_expired;
        ctx.log().info("binding expired: ", b.home_address.to_string(), " -> ", b.care_of_address.to_string());
        ctx.raise(core::RegistrationChanged{b.home_address, b.care_of_address, false, {}, config_.home_link_ifindex,
                                            core::RegistrationChanged::Kind::HomeBinding});
    }
    return next;
}

HomeAgent::Reconfigured HomeAgentStage::reconfigure(Config config) {
    auto changed = agent_.reconfigure(std::move(config.agent));
    removed_by_reload_.insert(removed_by_reload_.end(), changed.bindings_removed.begin(), changed.bindings_removed.end());
    config_.tunnel_ttl = config.tunnel_ttl;
    config_.reply_ttl = config.reply_ttl;
    config_.df_when_inner_clear = config.df_when_inner_clear;
    config_.pass_unbound = config.pass_unbound;
    config_.drop_unrelated = config.drop_unrelated;
    config_.report_limit = config.report_limit;
    return changed;
}

void HomeAgentStage::report(core::StatusSink& out) const {
    const auto& cfg = agent_.config();
    out.field("address", cfg.address.to_string());
    out.field("home_network", cfg.home_network.to_string());
    out.field("udp_tunnelling", cfg.udp_tunnelling);
    out.field("reverse_tunnel_required", cfg.reverse_tunnel_required);
    // RFC 5265 internal home agent: which sources are answered (with TNC); absent = all.
    if (!cfg.trusted_networks.empty()) {
        std::string list;
        for (const auto& p : cfg.trusted_networks) list += (list.empty() ? "" : " ") + p.to_string();
        out.field("trusted_networks", list);
    }
    out.field("mobile_nodes", static_cast<std::uint64_t>(agent_.mobile_node_count()));
    const auto& table = agent_.bindings();
    out.field("binding_count", static_cast<std::uint64_t>(table.size()));
    out.field("bindings_listed", static_cast<std::uint64_t>(std::min(table.size(), config_.report_limit)));
    out.begin_array("bindings");
    std::size_t listed = 0;
    table.for_each([&](const Binding& b) {
        if (listed++ >= config_.report_limit) return;
        out.begin_element();
        out.field("home_address", b.home_address.to_string());
        out.field("care_of_address", b.care_of_address.to_string());
        out.field("mode", b.mode == TunnelMode::Udp ? "ip_in_udp" : "ip_in_ip");
        if (b.mode == TunnelMode::Udp) {
            out.field("udp_endpoint", b.half_bound ? std::string("pending first keepalive") : b.udp_endpoint.to_string());
            out.field("half_bound", b.half_bound);
        }
        out.field("reverse_tunnel", b.reverse_tunnel);
        out.field("lifetime_granted_s", static_cast<std::uint64_t>(b.lifetime));
        if (b.expires != core::TimePoint::max()) {
            out.field("lifetime_left_s", static_cast<std::int64_t>(
                                             std::chrono::duration_cast<std::chrono::seconds>(b.expires - last_now_).count()));
        }
        out.end();
    });
    out.end();
    out.begin_object("counters");
    out.field("requests", counters_.requests);
    out.field("replies_sent", counters_.replies_sent);
    out.field("requests_discarded", counters_.requests_discarded);
    // Each reason that occurred, as the pipeline lists its drop reasons.
    auto reasons = [&](std::string_view key, bool discards) {
        out.begin_object(key);
        for (std::size_t i = 0; i < request_failure_count; ++i) {
            const auto f = static_cast<RequestFailure>(i);
            if (is_discard(f) == discards && counters_.failures[i] != 0) out.field(status_key(f), counters_.failures[i]);
        }
        out.end();
    };
    reasons("discarded", true);
    out.field("requests_rejected", counters_.requests_rejected);
    reasons("rejected", false);
    out.field("tunnelled_out", counters_.tunnelled_out);
    out.field("tunnelled_in", counters_.tunnelled_in);
    out.field("keepalives_answered", counters_.keepalives_answered);
    out.field("half_bound_completed", counters_.half_bound_completed);
    out.field("dropped_no_binding", counters_.dropped_no_binding);
    out.field("dropped_binding_mismatch", counters_.dropped_binding_mismatch);
    out.field("passed_unrelated", counters_.passed_unrelated);
    out.field("bindings_expired", counters_.bindings_expired);
    out.field("bindings_removed_by_reload", counters_.bindings_removed_by_reload);
    out.field("no_buffer", counters_.no_buffer);
    if (store_) {
        out.field("bindings_restored", counters_.bindings_restored);
        out.field("bindings_not_restored", counters_.bindings_not_restored);
        out.field("state_file_corrupt", counters_.state_file_corrupt);
        out.field("store_writes", counters_.store_writes);
        out.field("store_write_errors", counters_.store_write_errors);
    }
    out.end();
}

void HomeAgentStage::attach_store(std::unique_ptr<BindingStore> store, StoreOpening opening) {
    store_ = std::move(store);
    pending_restore_ = std::move(opening);
}

StoreChange HomeAgentStage::put_binding(const Binding& b) const {
    return {StoreChange::PutBinding{{b, wall_time_of(b.expires, agent_.config().ntp_offset)}}};
}

void HomeAgentStage::sync_store(core::StageContext& ctx) {
    store_write(unsynced_, ctx);
    unsynced_.clear();
    for (auto& reply : held_replies_) ctx.send_control(std::move(reply));
    held_replies_.clear();
}

void HomeAgentStage::store_write(std::span<const StoreChange> changes, core::StageContext& ctx) {
    if (changes.empty()) return;
    if (auto r = store_->write(changes); !r) {
        ++counters_.store_write_errors;
        ctx.log().limited(core::LogLevel::Error, ctx.now(), "cannot write the binding store: ", r.error().message(),
                          " (the binding works but will not survive a restart; see store_write_errors)");
        return;
    }
    ++counters_.store_writes;
}

void HomeAgentStage::restore_stored(core::StageContext& ctx) {
    StoreOpening opening = std::move(*pending_restore_);
    pending_restore_.reset();
    const auto now = ctx.now();
    if (opening.corruption) {
        ++counters_.state_file_corrupt;
        ctx.log().error("binding store ", opening.description, " was unreadable (", *opening.corruption,
                        "); starting with no bindings");
    }
    // Replay state first: a request recorded before the restart must not be accepted after it.
    for (const auto& r : opening.state.replay) (void)agent_.restore_replay_state(r.home_address, r.state);
    store_changes_.clear();
    const auto offset = agent_.config().ntp_offset;
    for (const auto& stored : opening.state.bindings) {
        Binding b = stored.binding;
        b.expires = time_point_of(stored.expires, offset);
        if (!agent_.restore_binding(b, now)) {
            ++counters_.bindings_not_restored;
            store_changes_.push_back({StoreChange::EraseBinding{b.home_address}});
            continue;
        }
        ++counters_.bindings_restored;
        // The shell treats it as a new registration: host route into the TUN, proxy ARP and a
        // gratuitous ARP on the home link (RFC 5944 §4.6), as before the restart.
        ctx.raise(core::RegistrationChanged{b.home_address, b.care_of_address, true, {}, config_.home_link_ifindex,
                                            core::RegistrationChanged::Kind::HomeBinding});
    }
    store_write(store_changes_, ctx);
    ctx.log().info("binding store ", opening.description, ": restored ", counters_.bindings_restored, " binding(s), ",
                   counters_.bindings_not_restored, " expired or no longer configured");
}

}  // namespace mipsec::mip
