// SPDX-License-Identifier: MIT
#include "core/mtu_guard.hpp"

#include <algorithm>

#include "core/endian.hpp"
#include "core/icmp.hpp"
#include "core/ipv4.hpp"
#include "core/pipeline.hpp"

namespace mipsec::core {

namespace {

constexpr std::size_t quoted_payload_len = 8;  // RFC 792: the IP header plus 64 bits of data
constexpr std::uint8_t internetwork_control = 0xC0;  // RFC 791 precedence 6, as routers send ICMP errors
constexpr std::uint8_t answer_ttl = 64;

// RFC 1122 §3.2.2: no ICMP error about an ICMP error.
bool is_icmp_error(const Ipv4View& ip) noexcept {
    if (ip.protocol() != ip_protocol::icmp) return false;
    auto icmp = IcmpView::check(ip.payload());
    if (!icmp) return true;  // cannot tell: do not answer
    switch (icmp->type()) {
        case icmp_type::echo_reply:
        case icmp_type::echo_request:
        case icmp_type::router_advertisement:
        case icmp_type::router_solicitation:
        case 13: case 14:  // timestamp, timestamp reply
        case 15: case 16:  // information request, reply
        case 17: case 18:  // address mask request, reply
            return false;
        default: return true;
    }
}

}  // namespace

std::size_t active_overhead(const Pipeline& pipeline) noexcept {
    std::size_t sum = 0;
    for (std::size_t i = 0; i < pipeline.size(); ++i) sum += pipeline.stage(i).overhead();
    return sum;
}

std::size_t least_stack_overhead(const Pipeline& pipeline) noexcept {
    std::size_t sum = 0;
    for (std::size_t i = 0; i < pipeline.size(); ++i) {
        sum += pipeline.stage(i).least_overhead();
        if (pipeline.stage(i).may_idle_layers_below()) break;
    }
    return sum;
}

std::optional<QuotedHeader> QuotedHeader::of(std::span<const std::uint8_t> packet) noexcept {
    auto ip = Ipv4View::check(packet);
    if (!ip) return std::nullopt;
    QuotedHeader q;
    q.len = std::min<std::size_t>(ip->total_length(), ip->header_len() + quoted_payload_len);
    std::copy_n(packet.begin(), q.len, q.bytes.begin());
    const Ipv4Address source = ip->source();
    q.answerable = ip->fragment_offset() == 0 && !is_icmp_error(*ip) && !source.is_unspecified() && !source.is_multicast() &&
                   !source.is_broadcast();
    return q;
}

bool emit_fragmentation_needed(PacketBuf& out, const QuotedHeader& quote, std::uint16_t mtu) noexcept {
    constexpr std::size_t headers_len = Ipv4Header::len + IcmpView::header_len;
    const std::size_t answer_len = headers_len + quote.len;
    if (quote.len < Ipv4Header::len || !out.resize(answer_len)) return false;
    std::copy_n(quote.bytes.begin(), quote.len, out.data() + headers_len);
    Ipv4Header h;
    h.tos = internetwork_control;
    h.total_length = static_cast<std::uint16_t>(answer_len);
    h.ttl = answer_ttl;
    h.protocol = ip_protocol::icmp;
    h.source = Ipv4Address{load_be32(quote.bytes.data() + 16)};
    h.destination = Ipv4Address{load_be32(quote.bytes.data() + 12)};
    h.emit(out.bytes());
    auto icmp = IcmpMutView::check(out.bytes().subspan(Ipv4Header::len));
    if (!icmp) return false;  // cannot happen: answer_len covers the ICMP header
    icmp->set_type(icmp_type::destination_unreachable);
    icmp->set_code(icmp_code::fragmentation_needed);
    icmp->set_next_hop_mtu(mtu);
    icmp->update_checksum();
    out.meta() = PacketMeta{};
    return true;
}

bool make_fragmentation_needed(PacketBuf& packet, std::uint16_t mtu) noexcept {
    const auto quote = QuotedHeader::of(packet.bytes());
    return quote && emit_fragmentation_needed(packet, *quote, mtu);
}

MtuGuard::MtuGuard(Config config) noexcept
    : config_(config), outer_mtu_(config.outer_mtu),
      credit_(config.answers_per_second == 0 ? Duration::zero()
                                             : std::chrono::duration_cast<Duration>(std::chrono::seconds(1)) /
                                                   config.answers_per_second * config.answer_burst) {}

std::size_t MtuGuard::mtu() const noexcept {
    return std::max(min_mtu, outer_mtu_ > overhead_ ? outer_mtu_ - overhead_ : 0);
}

bool MtuGuard::take_token(TimePoint now) noexcept {
    if (config_.answers_per_second == 0) return false;
    const Duration cost = std::chrono::duration_cast<Duration>(std::chrono::seconds(1)) / config_.answers_per_second;
    const Duration depth = cost * config_.answer_burst;
    if (last_refill_ && now > *last_refill_) credit_ = std::min(depth, credit_ + (now - *last_refill_));
    if (!last_refill_ || now > *last_refill_) last_refill_ = now;
    if (credit_ < cost) return false;
    credit_ -= cost;
    return true;
}

std::optional<QuotedHeader> MtuGuard::too_big(const PacketBuf& inner) noexcept {
    const std::size_t limit = mtu();
    if (inner.size() <= limit) return std::nullopt;  // one comparison for nearly every packet
    auto ip = Ipv4View::check(inner.bytes());
    if (!ip || ip->total_length() <= limit) return std::nullopt;
    if (!ip->dont_fragment()) {
        ++counters_.sent_for_fragmentation;
        return std::nullopt;
    }
    return QuotedHeader::of(inner.bytes());
}

MtuGuard::Outcome MtuGuard::answer(PacketBuf& wrapped, const QuotedHeader& quote, TimePoint now) noexcept {
    ++counters_.dropped_too_big;
    if (!quote.answerable) {
        ++counters_.not_answerable;
        return Outcome::Dropped;
    }
    if (!take_token(now)) {
        ++counters_.icmp_rate_limited;
        return Outcome::Dropped;
    }
    if (!emit_fragmentation_needed(wrapped, quote, static_cast<std::uint16_t>(std::min<std::size_t>(mtu(), 0xFFFF)))) {
        ++counters_.not_answerable;
        return Outcome::Dropped;
    }
    ++counters_.icmp_frag_needed_sent;
    return Outcome::Answered;
}

}  // namespace mipsec::core
