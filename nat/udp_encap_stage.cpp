// SPDX-License-Identifier: MIT
#include "nat/udp_encap_stage.hpp"

#include <cstring>

#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"

namespace mipsec::nat {

using core::DropReason;
using core::Verdict;

UdpEncapStage::UdpEncapStage(Config config) : config_(config), local_(config.local) {
    if (config_.remote) peer_ = core::Endpoint{*config_.remote, config_.remote_port};
}

std::optional<core::Endpoint> UdpEncapStage::peer() const noexcept { return peer_; }

core::Verdict UdpEncapStage::encapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    // RFC 5265 §4, §6: a direct registration with the internal home agent goes around us.
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
    // Only ESP whose SA asked for it (IKE's NAT detection, RFC 3947 §3, or the user's force)
    // is wrapped; plain ESP and everything else go by untouched.
    if (ip->protocol() != core::ip_protocol::esp || !packet.meta().esp_wants_udp) return Verdict::not_mine();
    packet.meta().esp_wants_udp = false;
    const std::size_t header_len = ip->header_len();
    const std::size_t total = ip->total_length();
    if (total + core::UdpHeader::len > 0xFFFF) return Verdict::drop(DropReason::TooBig);
    if (!local_) local_ = ip->source();
    if (!peer_) peer_ = core::Endpoint{ip->destination(), config_.remote_port};
    if (!packet.trim(packet.size() - total) || !packet.push(core::UdpHeader::len)) return Verdict::drop(DropReason::NoHeadroom);

    // Slide only the IP header forward into the headroom; the ESP payload does not move.
    std::memmove(packet.data(), packet.data() + core::UdpHeader::len, header_len);
    auto out = core::Ipv4MutView::check(packet.bytes());
    if (!out) return Verdict::drop(DropReason::Internal);
    const std::uint16_t udp_len = static_cast<std::uint16_t>(total - header_len + core::UdpHeader::len);
    out->set_total_length(static_cast<std::uint16_t>(total + core::UdpHeader::len));
    out->set_protocol(core::ip_protocol::udp);
    out->set_destination(peer_->address);
    out->update_checksum();
    core::UdpHeader{config_.local_port, peer_->port, udp_len, 0}.emit(packet.bytes().subspan(header_len));
    last_sent_ = ctx.now();
    active_ = true;
    return Verdict::pass();
}

core::Verdict UdpEncapStage::decapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    if (dormant_) {
        ++counters_.passed_dormant;
        return Verdict::not_mine();
    }
    auto ip = core::Ipv4View::check(packet.bytes());
    if (!ip) return Verdict::drop(core::ipv4_check_failure(packet));
    if (ip->protocol() != core::ip_protocol::udp) return Verdict::not_mine();
    // Another layer's UDP (or a higher layer's inner packet) is not ours to judge: look at the
    // destination port before validating anything else.
    auto l4 = ip->payload();
    if (l4.size() < 4 || core::load_be16(l4.data() + 2) != config_.local_port) return Verdict::not_mine();
    auto udp = core::UdpView::check(l4);
    if (!udp) return Verdict::drop(DropReason::Truncated);

    auto payload = udp->payload();
    if (payload.size() == 1) {
        if (payload[0] != keepalive_byte) return Verdict::drop(DropReason::Malformed);
        ++counters_.keepalives_received;
        return Verdict::consumed();
    }
    if (payload.size() < non_esp_marker_len) return Verdict::drop(DropReason::Truncated);
    if (payload[0] == 0 && payload[1] == 0 && payload[2] == 0 && payload[3] == 0) {
        // Non-ESP marker (RFC 3948 §2.2): IKE for the control plane above.
        ++counters_.ike_passed_up;
        return Verdict::pass();
    }
    // ESP needs at least SPI + sequence; anything shorter cannot be ESP.
    if (payload.size() < 8) return Verdict::drop(DropReason::Truncated);

    const std::size_t header_len = ip->header_len();
    const std::size_t esp_len = payload.size();
    core::Endpoint source{ip->source(), udp->source_port()};
    if (!packet.trim(packet.size() - (header_len + core::UdpHeader::len + esp_len))) return Verdict::drop(DropReason::Internal);
    std::memmove(packet.data() + core::UdpHeader::len, packet.data(), header_len);
    if (!packet.pull(core::UdpHeader::len)) return Verdict::drop(DropReason::Internal);
    // Total Length first: the view's check() validates it against the now shorter packet.
    core::store_be16(packet.data() + 2, static_cast<std::uint16_t>(header_len + esp_len));
    auto out = core::Ipv4MutView::check(packet.bytes());
    if (!out) return Verdict::drop(DropReason::Internal);
    out->set_protocol(core::ip_protocol::esp);
    out->update_checksum();
    // For the ESP layer directly above: it checks the source once the packet authenticated and
    // raises PeerFloated addressed to this local endpoint.
    if (!local_) local_ = out->destination();  // our end of this layer, for addressed events
    packet.meta().esp_in_udp = core::UdpOrigin{source, {out->destination(), config_.local_port}};
    if (!active_) {
        // The first keepalive waits a full idle interval from now.
        active_ = true;
        last_sent_ = ctx.now();
    }
    return Verdict::pass();
}

void UdpEncapStage::on_event(const core::RaisedEvent& event, core::StageContext& ctx) {
    if (const auto* access = std::get_if<core::AccessModeChanged>(&event.event)) {
        // Only a mobile node layer above us decides whether the VPN we serve is needed.
        if (event.origin == core::RaisedEvent::external || event.origin >= ctx.position()) return;
        const bool dormant = access->mode == core::AccessModeChanged::Mode::Inside;
        if (dormant == dormant_) return;
        dormant_ = dormant;
        // Awake again: the first keepalive waits a full idle interval.
        if (!dormant_) last_sent_ = ctx.now();
        ctx.log().info(dormant_ ? "inside the intranet: dormant" : "outside: UDP encapsulation awake");
        return;
    }
    if (const auto* moved = std::get_if<core::OuterAddressChanged>(&event.event)) {
        // Keepalives leave from our address: follow it when the layer below moved it, and only
        // when it is ours that moved (addressed by the old address).
        if (local_ && *local_ == moved->old_address && !moved->new_address.is_unspecified()) {
            ctx.log().info("local address ", local_->to_string(), " -> ", moved->new_address.to_string());
            local_ = moved->new_address;
        }
        return;
    }
    const auto* floated = std::get_if<core::PeerFloated>(&event.event);
    if (floated == nullptr || floated->new_peer.port == 0) return;
    // Another UDP layer's peer moved, not ours.
    if (floated->local.port != config_.local_port || (local_ && floated->local.address != *local_)) return;
    if (peer_ && *peer_ == floated->new_peer) return;
    ctx.log().info("peer moved from ", peer_ ? peer_->to_string() : "unknown", " to ", floated->new_peer.to_string(),
                   " (NAT rebinding seen on an authenticated packet)");
    peer_ = floated->new_peer;
    ++counters_.peer_floats;
}

std::optional<core::TimePoint> UdpEncapStage::poll(core::StageContext& ctx) {
    // Keepalives hold a NAT mapping open (RFC 3948 §2.2): only once UDP encapsulation is in
    // use, never for a peer reached with plain ESP.
    if (config_.keepalive == core::Duration::zero() || !peer_ || !local_ || !active_ || dormant_) return std::nullopt;
    auto now = ctx.now();
    auto due = last_sent_ + config_.keepalive;
    if (now < due) return due;
    auto buf = ctx.allocate();
    if (!buf.valid()) return now + std::chrono::seconds(1);  // pool dry: try again shortly
    constexpr std::size_t len = core::Ipv4Header::len + core::UdpHeader::len + 1;
    if (!buf.put(len)) return now + std::chrono::seconds(1);
    core::Ipv4Header ip;
    ip.total_length = len;
    ip.ttl = config_.ttl;
    ip.protocol = core::ip_protocol::udp;
    ip.source = *local_;
    ip.destination = peer_->address;
    ip.emit(buf.bytes());
    core::UdpHeader{config_.local_port, peer_->port, core::UdpHeader::len + 1, 0}.emit(buf.bytes().subspan(core::Ipv4Header::len));
    buf.data()[len - 1] = keepalive_byte;
    ctx.send_control(std::move(buf));
    ++counters_.keepalives_sent;
    last_sent_ = now;
    return now + config_.keepalive;
}

void UdpEncapStage::report(core::StatusSink& out) const {
    out.field("local_port", static_cast<std::uint64_t>(config_.local_port));
    out.field("peer", peer_ ? peer_->to_string() : std::string("unknown"));
    out.field("keepalive_s", static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(config_.keepalive).count()));
    out.field("keepalives_sent", counters_.keepalives_sent);
    out.field("keepalives_received", counters_.keepalives_received);
    out.field("ike_passed_up", counters_.ike_passed_up);
    out.field("peer_floats", counters_.peer_floats);
    out.field("dormant", dormant_);
    out.field("passed_direct", counters_.passed_direct);
    out.field("passed_dormant", counters_.passed_dormant);
}

}  // namespace mipsec::nat
