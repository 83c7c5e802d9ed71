// SPDX-License-Identifier: MIT
#include "ipsec/esp_tunnel_stage.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/udp.hpp"
#include "ipsec/esp_wire.hpp"

namespace mipsec::ipsec {

using core::DropReason;
using core::Verdict;

namespace {
constexpr std::uint8_t ecn_mask = 0x03;
constexpr std::uint8_t ecn_ce = 0x03;

std::string spi_hex(std::uint32_t spi) {
    char text[11];
    std::snprintf(text, sizeof text, "0x%08x", spi);
    return text;
}

void report_sa(core::StatusSink& out, const Sa& sa, LifetimeState state) {
    out.field("spi", spi_hex(sa.spi()));
    out.field("suite", to_string(sa.suite()));
    out.field("esn", sa.esn());
    out.field("sequence", sa.sequence());
    out.field("state", to_string(state));
    const auto& c = sa.counters();
    out.field("packets", c.packets);
    out.field("bytes", c.bytes);
    out.field("drops", c.drops);
    out.field("auth_failures", c.auth_failures);
    out.field("replay_drops", c.replay_drops);
}
}  // namespace

EspTunnelStage::EspTunnelStage(Config config) : config_(config), udp_encapsulation_(config.udp_encapsulation) {}

EspTunnelStage::Slot* EspTunnelStage::find_slot(std::uint32_t spi) noexcept {
    for (auto& s : inbound_)
        if (s.sa.spi() == spi) return &s;
    return nullptr;
}

const Sa* EspTunnelStage::find_inbound(std::uint32_t spi) const noexcept {
    for (const auto& s : inbound_)
        if (s.sa.spi() == spi) return &s.sa;
    return nullptr;
}

core::Result<void> EspTunnelStage::install_inbound(Sa sa, core::StageContext* ctx) {
    if (sa.direction() != Sa::Direction::Inbound) return core::Errc::InvalidArgument;
    if (find_slot(sa.spi()) != nullptr) return core::Errc::AlreadyExists;
    const auto spi = sa.spi();
    inbound_.push_back(Slot{std::move(sa)});
    if (ctx != nullptr) ctx->raise(core::SaInstalled{spi, 0});
    return {};
}

core::Result<void> EspTunnelStage::install_outbound(Sa sa, core::StageContext* ctx) {
    if (sa.direction() != Sa::Direction::Outbound) return core::Errc::InvalidArgument;
    const auto spi = sa.spi();
    replace_outbound(Slot{std::move(sa)});
    if (ctx != nullptr) ctx->raise(core::SaInstalled{0, spi});
    return {};
}

core::Result<void> EspTunnelStage::install(Sa inbound, Sa outbound, core::StageContext* ctx) {
    if (inbound.direction() != Sa::Direction::Inbound || outbound.direction() != Sa::Direction::Outbound)
        return core::Errc::InvalidArgument;
    if (find_slot(inbound.spi()) != nullptr) return core::Errc::AlreadyExists;
    const core::SaInstalled event{inbound.spi(), outbound.spi()};
    inbound_.push_back(Slot{std::move(inbound)});
    replace_outbound(Slot{std::move(outbound)});
    if (ctx != nullptr) ctx->raise(event);
    return {};
}

bool EspTunnelStage::remove_inbound(std::uint32_t spi) noexcept {
    auto it = std::find_if(inbound_.begin(), inbound_.end(), [&](const Slot& s) { return s.sa.spi() == spi; });
    if (it == inbound_.end()) return false;
    inbound_.erase(it);
    return true;
}

bool EspTunnelStage::retire_inbound(std::uint32_t spi, core::TimePoint until) noexcept {
    Slot* slot = find_slot(spi);
    if (slot == nullptr) return false;
    slot->retire_at = until;
    return true;
}

std::size_t EspTunnelStage::overhead() const noexcept {
    const std::size_t udp = udp_encapsulation_ ? core::UdpHeader::len : 0;
    if (!outbound_) return max_headroom + max_tailroom + udp;
    // Padding depends on the length modulo the cipher's alignment: take the worst of one block.
    const Sa& sa = outbound_->sa;
    std::size_t worst = 0;
    for (std::size_t len = 0; len < crypto::Cipher::block_len; ++len) worst = std::max(worst, sa.sealed_len(len) - len);
    return core::Ipv4Header::len + worst + udp;
}

core::Result<void> EspTunnelStage::install_outbound_when_confirmed(Sa sa, bool udp_encapsulation, std::uint32_t confirming_inbound_spi,
                                                                   core::TimePoint deadline, core::StageContext* ctx) {
    if (sa.direction() != Sa::Direction::Outbound) return core::Errc::InvalidArgument;
    if (!outbound_) {
        udp_encapsulation_ = udp_encapsulation;
        return install_outbound(std::move(sa), ctx);
    }
    pending_.emplace(PendingOutbound{Slot{std::move(sa)}, udp_encapsulation, confirming_inbound_spi, deadline});
    return {};
}

void EspTunnelStage::replace_outbound(Slot slot) noexcept {
    if (outbound_) previous_.emplace(PreviousOutbound{std::move(*outbound_), udp_encapsulation_});
    outbound_.emplace(std::move(slot));
}

void EspTunnelStage::promote_pending() noexcept {
    if (!pending_) return;
    replace_outbound(std::move(pending_->slot));
    udp_encapsulation_ = pending_->udp_encapsulation;
    pending_.reset();
}

bool EspTunnelStage::remove_outbound() noexcept {
    const bool had = outbound_.has_value() || pending_.has_value();
    outbound_.reset();
    previous_.reset();  // stop sending means stop: no fallback either
    promote_pending();
    return had;
}

bool EspTunnelStage::forget_outbound(std::uint32_t spi, core::TimePoint now) noexcept {
    if (pending_ && pending_->slot.sa.spi() == spi) {
        pending_.reset();
        return true;
    }
    if (previous_ && previous_->slot.sa.spi() == spi) {
        previous_.reset();
        return true;
    }
    if (!outbound_ || outbound_->sa.spi() != spi) return false;
    outbound_.reset();
    if (pending_) {
        promote_pending();
        previous_.reset();  // promote_pending() found no current SA to keep
        return true;
    }
    if (previous_ && previous_->slot.sa.lifetime_state(now) != LifetimeState::Hard) {
        outbound_.emplace(std::move(previous_->slot));
        udp_encapsulation_ = previous_->udp_encapsulation;
        ++counters_.outbound_fallbacks;
    }
    previous_.reset();
    return true;
}

void EspTunnelStage::check_lifetime(Slot& slot, core::StageContext& ctx) {
    const auto state = slot.sa.lifetime_state(ctx.now());
    if (state <= slot.reported) return;
    slot.reported = state;
    ctx.raise(core::SaExpired{slot.sa.spi(), state == LifetimeState::Hard});
}

core::Verdict EspTunnelStage::protect(core::PacketBuf& packet, std::uint8_t next_header, std::uint8_t tos, bool df, bool defer,
                                      core::StageContext& ctx) {
    if (!outbound_) return Verdict::drop(DropReason::NoSa);
    Sa& sa = outbound_->sa;
    const std::size_t esp_len = sa.sealed_len(packet.size());
    if (esp_len + core::Ipv4Header::len > 0xFFFF) return Verdict::drop(DropReason::TooBig);
    // Checked before sealing so a packet that cannot get its outer header burns no sequence number.
    if (packet.headroom() < core::Ipv4Header::len + sa.header_len()) return Verdict::drop(DropReason::NoHeadroom);
    auto v = sa.seal(packet, next_header, ctx.now(), defer);
    check_lifetime(*outbound_, ctx);
    if (!v.passed()) return v;
    if (!packet.push(core::Ipv4Header::len)) return Verdict::drop(DropReason::Internal);

    core::Ipv4Header outer;
    outer.tos = tos;
    outer.total_length = static_cast<std::uint16_t>(packet.size());
    outer.identification = next_identification_++;
    outer.flags_fragment = df ? core::Ipv4View::flag_df : 0;
    outer.ttl = config_.ttl;
    outer.protocol = core::ip_protocol::esp;
    outer.source = config_.local;
    outer.destination = config_.remote;
    outer.emit(packet.bytes());
    packet.meta().esp_wants_udp = udp_encapsulation_;
    return Verdict::pass();
}

core::Verdict EspTunnelStage::encapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    if (pending_ && ctx.now() >= pending_->deadline) promote_pending();
    if (!outbound_) return Verdict::drop(DropReason::NoSa);
    auto inner = core::Ipv4View::check(packet.bytes());
    if (!inner) return Verdict::drop(core::ipv4_check_failure(packet));
    const std::uint8_t tos = inner->tos();
    const bool df = inner->dont_fragment();
    // Link padding after Total Length is not part of the packet and must not be encrypted.
    if (!packet.trim(packet.size() - inner->total_length())) return Verdict::drop(DropReason::Internal);
    // RFC 4301 §5.1.2.1: the outer header copies DSCP/ECN (RFC 6040 normal mode) and DF.
    return protect(packet, core::ip_protocol::ipip, tos, df, ctx.may_defer_seal(), ctx);
}

core::Verdict EspTunnelStage::send_dummy(core::StageContext& ctx, std::size_t payload_len) {
    auto buf = ctx.allocate();
    if (!buf.valid()) return Verdict::drop(DropReason::NoBuffer);
    // allocate() leaves headroom for the stages below only; make room for our own headers.
    if (!buf.put(max_headroom + payload_len) || !buf.pull(max_headroom)) return Verdict::drop(DropReason::NoTailroom);
    std::fill(buf.data(), buf.data() + buf.size(), std::uint8_t{0});
    // Sent as control: sealed now, whatever the packet in hand may do.
    auto v = protect(buf, core::ip_protocol::no_next_header, 0, false, /*defer=*/false, ctx);
    if (!v.passed()) return v;
    ++counters_.dummies_sent;
    ctx.send_control(std::move(buf));
    return v;
}

core::Verdict EspTunnelStage::decapsulate(core::PacketBuf& packet, core::StageContext& ctx) {
    auto outer = core::Ipv4View::check(packet.bytes());
    if (!outer) return Verdict::drop(core::ipv4_check_failure(packet));
    if (outer->protocol() != core::ip_protocol::esp) return Verdict::drop(DropReason::UnexpectedProtocol);
    // After UDP decapsulation the source is whatever the NAT made of it; the SA's ICV is
    // what authenticates the peer then (RFC 3948 §3.1.2). Only the UDP layer directly below
    // says so; the note is ours alone and ends here.
    const auto udp_origin = std::exchange(packet.meta().esp_in_udp, std::nullopt);
    const bool udp_encapsulated = udp_origin.has_value();
    if (outer->destination() != config_.local || (!udp_encapsulated && outer->source() != config_.remote))
        return Verdict::drop(DropReason::NotForUs);
    if (outer->is_fragment()) return Verdict::drop(DropReason::Fragment);
    const bool outer_ce = (outer->tos() & ecn_mask) == ecn_ce;
    const std::size_t header_len = outer->header_len();
    if (!packet.trim(packet.size() - outer->total_length()) || !packet.pull(header_len))
        return Verdict::drop(DropReason::Internal);

    auto esp = EspView::check(packet.bytes());
    if (!esp) return Verdict::drop(DropReason::Truncated);
    Slot* slot = find_slot(esp->spi());
    if (slot == nullptr) return Verdict::drop(DropReason::UnknownSpi);
    std::uint8_t next_header = 0;
    const bool opened_early = packet.meta().esp_opened.has_value();
    auto v = slot->sa.open(packet, ctx.now(), next_header);
    check_lifetime(*slot, ctx);
    if (!v.passed()) return v;
    // This SA's packets arrive straight from the wire and authenticate: the data-path threads
    // may open the next ones before the stages run (core/aead_offload.hpp).
    if (!opened_early && !slot->published) {
        if (auto* offload = ctx.aead_offload()) {
            if (auto key = slot->sa.open_key(udp_encapsulated ? udp_origin->to.port : 0)) offload->publish(key);
            slot->published = true;
        }
    }

    // From here the packet is authenticated: the NAT mapping it came through is the peer's.
    // The peer sealed it with the SA pair of our rekey, so it has installed it: switch.
    if (pending_ && pending_->confirming_inbound_spi == slot->sa.spi()) promote_pending();
    if (udp_encapsulated && (!peer_ || *peer_ != udp_origin->from)) {
        ctx.raise(core::PeerFloated{peer_.value_or(core::Endpoint{}), udp_origin->from, udp_origin->to});
        peer_ = udp_origin->from;
        ++counters_.peer_floats;
    }
    // RFC 4303 §2.6: dummy packets are discarded silently once they have been processed.
    if (next_header == core::ip_protocol::no_next_header) return Verdict::drop(DropReason::DummyPacket);
    if (next_header != core::ip_protocol::ipip) return Verdict::drop(DropReason::BadNextHeader);
    auto inner = core::Ipv4MutView::check(packet.bytes());
    if (!inner) return Verdict::drop(DropReason::Malformed);
    // RFC 4301 §5.2 step 4: the inner addresses must match the SA's selectors.
    if (config_.allowed_inner_source && !config_.allowed_inner_source->contains(inner->source()))
        return Verdict::drop(DropReason::PolicyMismatch);
    // RFC 6040 §4.2: congestion marked on the outer header survives decapsulation when the
    // inner packet is ECN-capable.
    if (outer_ce && (inner->tos() & ecn_mask) != 0 && (inner->tos() & ecn_mask) != ecn_ce) {
        const std::uint16_t old_word = core::load_be16(inner->header().data());
        inner->set_tos(static_cast<std::uint8_t>(inner->tos() | ecn_ce));
        inner->set_checksum(core::checksum_update16(inner->checksum(), old_word, core::load_be16(inner->header().data())));
    }
    // Whatever follows the inner Total Length is TFC padding (RFC 4303 §2.7).
    if (!packet.trim(packet.size() - inner->total_length())) return Verdict::drop(DropReason::Internal);
    return Verdict::pass();
}

void EspTunnelStage::on_event(const core::RaisedEvent& event, core::StageContext& ctx) {
    // When the address our outer packets leave from changes (this stage is the lowest IP
    // layer, or the one below renumbered it), follow it; another layer's address is not ours.
    const auto* moved = std::get_if<core::OuterAddressChanged>(&event.event);
    if (moved == nullptr || moved->old_address != config_.local || moved->new_address.is_unspecified()) return;
    ctx.log().info("outer address ", config_.local.to_string(), " -> ", moved->new_address.to_string());
    config_.local = moved->new_address;
}

std::optional<core::TimePoint> EspTunnelStage::poll(core::StageContext& ctx) {
    const auto now = ctx.now();
    std::optional<core::TimePoint> next;
    auto visit = [&](Slot& slot) {
        check_lifetime(slot, ctx);
        auto at = slot.sa.next_lifetime_deadline(now);
        if (at && (!next || *at < *next)) next = at;
    };
    auto consider = [&](core::TimePoint at) {
        if (!next || at < *next) next = at;
    };
    if (pending_) {
        if (now >= pending_->deadline)
            promote_pending();
        else
            consider(pending_->deadline);
    }
    if (outbound_) visit(*outbound_);
    if (pending_) visit(pending_->slot);
    std::erase_if(inbound_, [&](const Slot& s) { return s.retire_at && now >= *s.retire_at; });
    for (auto& s : inbound_) {
        visit(s);
        if (s.retire_at) consider(*s.retire_at);
    }
    return next;
}

void EspTunnelStage::report(core::StatusSink& out) const {
    out.field("local", config_.local.to_string());
    out.field("remote", config_.remote.to_string());
    if (peer_) out.field("peer", peer_->to_string());
    out.field("dummies_sent", counters_.dummies_sent);
    out.field("outbound_fallbacks", counters_.outbound_fallbacks);
    // Status has no clock of its own; lifetime state is as of the SAs' last packet or poll.
    if (outbound_) {
        out.begin_object("outbound");
        report_sa(out, outbound_->sa, outbound_->reported);
        out.end();
    }
    if (pending_) {
        out.begin_object("outbound_pending");
        report_sa(out, pending_->slot.sa, pending_->slot.reported);
        out.field("confirming_inbound_spi", spi_hex(pending_->confirming_inbound_spi));
        out.end();
    }
    if (previous_) {
        out.begin_object("outbound_previous");
        report_sa(out, previous_->slot.sa, previous_->slot.reported);
        out.end();
    }
    out.begin_array("inbound");
    for (const auto& s : inbound_) {
        out.begin_element();
        report_sa(out, s.sa, s.reported);
        if (s.retire_at) out.field("retiring", true);
        out.end();
    }
    out.end();
}

}  // namespace mipsec::ipsec
