// SPDX-License-Identifier: MIT
#include "mip/network_detection.hpp"

#include <algorithm>

namespace mipsec::mip {

namespace {
constexpr std::uint32_t low32(std::uint64_t id) noexcept { return static_cast<std::uint32_t>(id & 0xFFFFFFFFu); }
}  // namespace

void NetworkDetection::Outstanding::add(std::uint32_t id) noexcept {
    // Oldest first; a full list forgets the oldest request (its reply then proves nothing).
    if (size_ == capacity) {
        std::copy(ids_.begin() + 1, ids_.end(), ids_.begin());
        --size_;
    }
    ids_[size_++] = id;
}

bool NetworkDetection::Outstanding::take(std::uint32_t id) noexcept {
    auto end = ids_.begin() + static_cast<std::ptrdiff_t>(size_);
    auto it = std::find(ids_.begin(), end, id);
    if (it == end) return false;
    std::copy(it + 1, end, it);
    --size_;
    return true;
}

NetworkDetection::NetworkDetection(Config config) : config_(std::move(config)) {
    // Re-registration must be due before T_MONITOR runs out.
    if (config_.monitor_margin >= config_.t_monitor) config_.monitor_margin = config_.t_monitor / 2;
    interfaces_.reserve(config_.max_interfaces);
}

NetworkDetection::Interface* NetworkDetection::find(std::uint32_t ifindex) noexcept {
    auto it = std::find_if(interfaces_.begin(), interfaces_.end(), [&](const Interface& i) { return i.ifindex == ifindex; });
    return it == interfaces_.end() ? nullptr : &*it;
}

const NetworkDetection::Interface* NetworkDetection::find(std::uint32_t ifindex) const noexcept {
    auto it = std::find_if(interfaces_.begin(), interfaces_.end(), [&](const Interface& i) { return i.ifindex == ifindex; });
    return it == interfaces_.end() ? nullptr : &*it;
}

NetworkDetection::Mode NetworkDetection::inside_mode(const Interface& i) const noexcept {
    return i.attachment == Attachment::ForeignAgent ? Mode::InsideForeignAgent : Mode::InsideCoLocated;
}

NetworkDetection::Mode NetworkDetection::outside_mode(const Interface& i) const noexcept {
    return i.attachment == Attachment::ForeignAgent ? Mode::OutsideForeignAgent : Mode::OutsideCoLocated;
}

bool NetworkDetection::is_inside(const Interface& i) const noexcept {
    return i.mode == Mode::InsideCoLocated || i.mode == Mode::InsideForeignAgent;
}

bool NetworkDetection::is_outside(const Interface& i) const noexcept {
    return i.mode == Mode::OutsideCoLocated || i.mode == Mode::OutsideForeignAgent;
}

bool NetworkDetection::monitor_expired(const Interface& i, core::TimePoint now) const noexcept {
    return !i.last_internal_success || now >= *i.last_internal_success + config_.t_monitor;
}

bool NetworkDetection::wants_internal(const Interface& i, core::TimePoint now) const noexcept {
    if (i.attachment == Attachment::Detached || detection_disabled()) return false;
    if (is_inside(i)) return i.reregistration_due || now >= *i.last_internal_success + config_.t_monitor - config_.monitor_margin;
    if (is_outside(i))
        return !i.internal_retry_over && i.external_answered && now < *i.external_answered + config_.internal_retry_window;
    return true;  // Detecting, NoService
}

bool NetworkDetection::wants_external(const Interface& i, core::TimePoint now) const noexcept {
    if (i.attachment == Attachment::Detached || is_inside(i) || is_outside(i)) return false;
    if (i.mode == Mode::Detecting) return i.external_started || now >= i.detection_started + config_.plain_internal_wait;
    return true;
}

bool NetworkDetection::allows_data(const Interface& i, core::TimePoint now) const noexcept {
    if (i.attachment == Attachment::Detached) return false;
    // RFC 5265 §6: past T_MONITOR without a successful re-registration, user data stops even
    // if nobody has called poll() yet.
    if (is_inside(i)) return !monitor_expired(i, now);
    return is_outside(i);  // through the VPN layer
}

std::optional<core::TimePoint> NetworkDetection::deadline_of(const Interface& i) const noexcept {
    if (i.attachment == Attachment::Detached) return std::nullopt;
    switch (i.mode) {
    case Mode::Detecting: {
        core::TimePoint d = i.detection_started + config_.detection_timeout;
        if (!i.external_started) d = std::min(d, i.detection_started + config_.plain_internal_wait);
        return d;
    }
    case Mode::InsideCoLocated:
    case Mode::InsideForeignAgent: {
        const core::TimePoint expiry = *i.last_internal_success + config_.t_monitor;
        if (i.reregistration_due) return expiry;
        return expiry - config_.monitor_margin;
    }
    case Mode::OutsideCoLocated:
    case Mode::OutsideForeignAgent:
        // Until the i-HA retry window closes; later i-HA answers still count, but nothing is due.
        if (!i.internal_retry_over && i.external_answered) return *i.external_answered + config_.internal_retry_window;
        return std::nullopt;
    case Mode::NoService:
        return std::nullopt;
    }
    return std::nullopt;
}

void NetworkDetection::restart_detection(Interface& i, core::TimePoint now) noexcept {
    i.mode = Mode::Detecting;
    i.detection_started = now;
    i.external_answered.reset();
    // §3.3 asks both HAs in parallel; the 2002 profile asks the i-HA alone first. With equal
    // HA addresses there is nothing to detect: only the x-HA is asked.
    i.external_started = config_.profile == Profile::Rfc5265 || detection_disabled();
    i.internal_retry_over = detection_disabled();
    i.reregistration_due = false;
}

bool NetworkDetection::add_interface(std::uint32_t ifindex) {
    if (find(ifindex)) return true;
    if (interfaces_.size() >= config_.max_interfaces) return false;
    interfaces_.push_back({});
    interfaces_.back().ifindex = ifindex;
    interfaces_.back().decided_by = {Decision::Cause::Detached, {}, 0};
    return true;
}

bool NetworkDetection::attachment_changed(std::uint32_t ifindex, Attachment attachment, core::TimePoint now,
                                          core::Ipv4Address foreign_agent) {
    // Through an agent, the agent's address is what the i-HA's relayed reply must come from
    // (RFC 5944 §3.7.3); without it nothing could be verified. Still a status change: whatever
    // was learnt before it is void, so the interface is treated as detached.
    const bool agent_missing = attachment == Attachment::ForeignAgent && foreign_agent.is_unspecified();
    if (agent_missing) attachment = Attachment::Detached;
    Interface* i = find(ifindex);
    if (!i) {
        if (attachment == Attachment::Detached) return true;
        if (interfaces_.size() >= config_.max_interfaces) return false;
        interfaces_.push_back({});
        i = &interfaces_.back();
        i->ifindex = ifindex;
    }
    // RFC 5265 §6: a status change invalidates everything learnt on this interface; replies
    // to requests sent before it prove nothing about the new network.
    i->attachment = attachment;
    i->foreign_agent = attachment == Attachment::ForeignAgent ? foreign_agent : core::Ipv4Address{};
    i->internal_requests.clear();
    i->external_requests.clear();
    if (attachment == Attachment::Detached) {
        i->mode = Mode::NoService;
        i->external_answered.reset();
        i->decided_by = {Decision::Cause::Detached, now, 0};
        return !agent_missing;
    }
    restart_detection(*i, now);
    i->decided_by = {Decision::Cause::None, now, 0};
    return true;
}

void NetworkDetection::request_sent(std::uint32_t ifindex, Target to, std::uint64_t identification, core::TimePoint) {
    Interface* i = find(ifindex);
    if (!i || i->attachment == Attachment::Detached) return;
    (to == Target::Internal ? i->internal_requests : i->external_requests).add(low32(identification));
}

NetworkDetection::ReplyResult NetworkDetection::counted(ReplyResult r) noexcept {
    ++counts_[static_cast<std::size_t>(r)];
    return r;
}

NetworkDetection::ReplyResult NetworkDetection::internal_reply(std::uint32_t ifindex, Path path, core::Endpoint from,
                                                               std::span<const std::uint8_t> reply, core::TimePoint now) {
    if (detection_disabled()) return counted(ReplyResult::DetectionDisabled);
    Interface* i = find(ifindex);
    if (!i || i->attachment == Attachment::Detached) return counted(ReplyResult::UnknownInterface);
    // The i-HA answers the VPN's inner addresses too (they must be trusted for cvc/fvc), so a
    // TNC that came out of the tunnel says nothing about the network this interface is on.
    if (path == Path::Tunnel) return counted(ReplyResult::ViaTunnel);
    const core::Ipv4Address sender =
        i->attachment == Attachment::ForeignAgent ? i->foreign_agent : config_.internal_home_agent;
    if (from.address != sender || from.port != registration_port) return counted(ReplyResult::WrongSource);

    auto view = RegistrationReplyView::check(reply);
    if (!view) return counted(ReplyResult::Malformed);
    ScannedExtensions ext;
    if (scan_extensions(reply, RegistrationReplyView::header_len, MessageKind::Reply, ext)) return counted(ReplyResult::Malformed);
    if (!ext.mobile_home_auth || ext.mobile_home_auth_count != 1 || ext.mobile_home_auth->spi != config_.internal_sa.spi)
        return counted(ReplyResult::NoAuthentication);
    if (!verify_authenticator(reply, *ext.mobile_home_auth, config_.internal_sa.key.span()))
        return counted(ReplyResult::BadAuthenticator);
    if ((!config_.internal_home_address.is_unspecified() && view->home_address() != config_.internal_home_address) ||
        view->home_agent() != config_.internal_home_agent)
        return counted(ReplyResult::WrongHomeAddress);
    // RFC 5944 §5.7 matches a reply on the low-order 32 bits only. With timestamps those are
    // the fraction of a second of our request, not a secret: a coarse clock repeats them, so a
    // genuine reply captured earlier could match a fresh request. Its high-order 32 bits are
    // the i-HA's clock, which only moves forward: a reply older than one already accepted (or
    // that very reply again) is a replay, whatever its low bits. Checked before the request is
    // consumed, so the genuine answer still counts. (If the i-HA's clock went back, its direct
    // replies are refused until it catches up: the node stays outside, the safe side.)
    const std::uint64_t id = view->identification();
    if (config_.internal_sa.replay == ReplayProtection::Timestamp && newest_internal_reply_ &&
        (id == *newest_internal_reply_ || (id >> 32) < (*newest_internal_reply_ >> 32)))
        return counted(ReplyResult::Replayed);
    // RFC 5944 §5.7: the low-order 32 bits echo the request's. Only a request sent on this
    // interface since its last attachment change counts; the entry is consumed, so a replayed
    // copy of the same reply matches nothing.
    if (!i->internal_requests.take(low32(id))) return counted(ReplyResult::UnknownIdentification);
    if (!is_accepted(view->code())) return counted(ReplyResult::Denied);
    const bool tnc = ext.trusted_networks_authenticated();
    if (config_.profile == Profile::Rfc5265 && !tnc) return counted(ReplyResult::NoTrustedNetworks);

    if (!newest_internal_reply_ || (id >> 32) > (*newest_internal_reply_ >> 32) ||
        ((id >> 32) == (*newest_internal_reply_ >> 32) && id != *newest_internal_reply_))
        newest_internal_reply_ = id;
    i->last_internal_success = now;
    i->reregistration_due = false;
    if (is_inside(*i)) return counted(ReplyResult::Refreshed);
    // §3.3: even if the x-HA answered first and IPsec setup began, a direct i-HA answer wins.
    i->mode = inside_mode(*i);
    i->decided_by = {tnc ? Decision::Cause::InternalTnc : Decision::Cause::InternalPlain, now, view->identification()};
    return counted(ReplyResult::MadeInside);
}

NetworkDetection::ReplyResult NetworkDetection::external_registered(std::uint32_t ifindex, std::uint64_t identification,
                                                                    core::TimePoint now) {
    Interface* i = find(ifindex);
    if (!i || i->attachment == Attachment::Detached) return counted(ReplyResult::UnknownInterface);
    if (!i->external_requests.take(low32(identification))) return counted(ReplyResult::UnknownIdentification);
    if (is_inside(*i) || is_outside(*i)) return counted(ReplyResult::NoChange);
    // Tentatively outside: data may flow through the VPN while the i-HA is still retried.
    i->mode = outside_mode(*i);
    i->external_answered = now;
    i->decided_by = {Decision::Cause::ExternalReply, now, identification};
    return counted(ReplyResult::MadeOutside);
}

std::optional<core::TimePoint> NetworkDetection::poll(core::TimePoint now) {
    for (auto& i : interfaces_) {
        if (i.attachment == Attachment::Detached) continue;
        if (i.mode == Mode::Detecting) {
            if (!i.external_started && now >= i.detection_started + config_.plain_internal_wait) i.external_started = true;
            if (now >= i.detection_started + config_.detection_timeout) {
                i.mode = Mode::NoService;  // both HAs keep being asked
                i.external_started = true;
                i.decided_by = {Decision::Cause::DetectionTimeout, now, 0};
            }
        } else if (is_inside(i)) {
            if (monitor_expired(i, now)) {
                // RFC 5265 §6: stop user data and detect again. No attachment change happened,
                // so an answer to the re-registration still in flight remains valid.
                restart_detection(i, now);
                i.decided_by = {Decision::Cause::MonitorExpired, now, 0};
            } else if (now >= *i.last_internal_success + config_.t_monitor - config_.monitor_margin) {
                i.reregistration_due = true;
            }
        } else if (is_outside(i)) {
            if (i.external_answered && now >= *i.external_answered + config_.internal_retry_window) i.internal_retry_over = true;
        }
    }
    return next_deadline();
}

std::optional<core::TimePoint> NetworkDetection::next_deadline() const noexcept {
    std::optional<core::TimePoint> next;
    for (const auto& i : interfaces_) {
        auto d = deadline_of(i);
        if (d && (!next || *d < *next)) next = d;
    }
    return next;
}

NetworkDetection::InterfaceStatus NetworkDetection::status_of(const Interface& i, core::TimePoint now) const {
    InterfaceStatus s;
    s.ifindex = i.ifindex;
    s.attachment = i.attachment;
    s.mode = i.mode;
    s.data_allowed = allows_data(i, now);
    s.register_internal = wants_internal(i, now);
    s.register_external = wants_external(i, now);
    // Between T_MONITOR expiry and the poll() that applies it, report what poll() will decide.
    if (is_inside(i) && monitor_expired(i, now)) {
        s.mode = Mode::Detecting;
        s.register_external = true;
    }
    s.last_internal_success = i.last_internal_success;
    s.decided_by = i.decided_by;
    return s;
}

std::optional<NetworkDetection::InterfaceStatus> NetworkDetection::status(std::uint32_t ifindex, core::TimePoint now) const {
    const Interface* i = find(ifindex);
    if (!i) return std::nullopt;
    return status_of(*i, now);
}

std::vector<NetworkDetection::InterfaceStatus> NetworkDetection::statuses(core::TimePoint now) const {
    std::vector<InterfaceStatus> out;
    out.reserve(interfaces_.size());
    for (const auto& i : interfaces_) out.push_back(status_of(i, now));
    return out;
}

bool NetworkDetection::data_allowed(std::uint32_t ifindex, core::TimePoint now) const {
    const Interface* i = find(ifindex);
    return i && allows_data(*i, now);
}

std::optional<std::uint32_t> NetworkDetection::preferred_interface(core::TimePoint now) const {
    for (const auto& i : interfaces_)
        if (is_inside(i) && allows_data(i, now)) return i.ifindex;
    for (const auto& i : interfaces_)
        if (is_outside(i) && allows_data(i, now)) return i.ifindex;
    return std::nullopt;
}

std::string_view NetworkDetection::mode_name(Mode m) noexcept {
    switch (m) {
    case Mode::Detecting: return "detecting";
    case Mode::InsideCoLocated: return "c";
    case Mode::InsideForeignAgent: return "f";
    case Mode::OutsideCoLocated: return "cvc";
    case Mode::OutsideForeignAgent: return "fvc";
    case Mode::NoService: return "no service";
    }
    return "?";
}

std::string_view NetworkDetection::cause_name(Decision::Cause c) noexcept {
    switch (c) {
    case Decision::Cause::None: return "none";
    case Decision::Cause::InternalTnc: return "internal_ha_tnc_reply";
    case Decision::Cause::InternalPlain: return "internal_ha_plain_reply";
    case Decision::Cause::ExternalReply: return "external_ha_reply";
    case Decision::Cause::DetectionTimeout: return "detection_timeout";
    case Decision::Cause::MonitorExpired: return "t_monitor_expired";
    case Decision::Cause::Detached: return "detached";
    }
    return "?";
}

std::string_view NetworkDetection::result_name(ReplyResult r) noexcept {
    switch (r) {
    case ReplyResult::MadeInside: return "made_inside";
    case ReplyResult::Refreshed: return "refreshed";
    case ReplyResult::MadeOutside: return "made_outside";
    case ReplyResult::NoChange: return "no_change";
    case ReplyResult::UnknownInterface: return "unknown_interface";
    case ReplyResult::WrongSource: return "wrong_source";
    case ReplyResult::Malformed: return "malformed";
    case ReplyResult::NoAuthentication: return "no_authentication";
    case ReplyResult::BadAuthenticator: return "bad_authenticator";
    case ReplyResult::WrongHomeAddress: return "wrong_home_address";
    case ReplyResult::UnknownIdentification: return "unknown_identification";
    case ReplyResult::Replayed: return "replayed";
    case ReplyResult::Denied: return "denied";
    case ReplyResult::NoTrustedNetworks: return "no_trusted_networks";
    case ReplyResult::ViaTunnel: return "via_tunnel";
    case ReplyResult::DetectionDisabled: return "detection_disabled";
    case ReplyResult::Count_: break;
    }
    return "?";
}

}  // namespace mipsec::mip
