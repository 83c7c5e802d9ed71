// SPDX-License-Identifier: MIT
#include "core/mtu_guard.hpp"

#include <algorithm>
#include <cstring>

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

bool make_fragmentation_needed(PacketBuf& packet, std::uint16_t mtu) noexcept {
    auto ip = Ipv4View::check(packet.bytes());
    if (!ip) return false;
    const std::size_t quote_len = std::min<std::size_t>(ip->total_length(), ip->header_len() + quoted_payload_len);
    constexpr std::size_t headers_len = Ipv4Header::len + IcmpView::header_len;
    const std::size_t answer_len = headers_len + quote_len;
    const Ipv4Address original_source = ip->source();
    const Ipv4Address original_destination = ip->destination();
    // The quote moves behind the two new headers; the rest of the packet is cut off.
    if (!packet.resize(answer_len)) return false;
    std::memmove(packet.data() + headers_len, packet.data(), quote_len);

    Ipv4Header h;
    h.tos = internetwork_control;
    h.total_length = static_cast<std::uint16_t>(answer_len);
    h.ttl = answer_ttl;
    h.protocol = ip_protocol::icmp;
    h.source = original_destination;
    h.destination = original_source;
    h.emit(packet.bytes());
    auto icmp = IcmpMutView::check(packet.bytes().subspan(Ipv4Header::len));
    if (!icmp) return false;  // cannot happen: answer_len covers the ICMP header
    icmp->set_type(icmp_type::destination_unreachable);
    icmp->set_code(icmp_code::fragmentation_needed);
    icmp->set_next_hop_mtu(mtu);
    icmp->update_checksum();
    packet.meta() = PacketMeta{};
    return true;
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

MtuGuard::Outcome MtuGuard::check(PacketBuf& packet, TimePoint now) noexcept {
    const std::size_t limit = mtu();
    if (packet.size() <= limit) return Outcome::Fits;  // one comparison for nearly every packet
    auto ip = Ipv4View::check(packet.bytes());
    if (!ip || ip->total_length() <= limit) return Outcome::Fits;
    if (!ip->dont_fragment()) {
        ++counters_.sent_for_fragmentation;
        return Outcome::Fits;
    }
    ++counters_.dropped_too_big;
    const Ipv4Address source = ip->source();
    if (ip->fragment_offset() != 0 || is_icmp_error(*ip) || source.is_unspecified() || source.is_multicast() ||
        source.is_broadcast()) {
        ++counters_.not_answerable;
        return Outcome::Dropped;
    }
    if (!take_token(now)) {
        ++counters_.icmp_rate_limited;
        return Outcome::Dropped;
    }
    if (!make_fragmentation_needed(packet, static_cast<std::uint16_t>(std::min<std::size_t>(limit, 0xFFFF)))) {
        ++counters_.not_answerable;
        return Outcome::Dropped;
    }
    ++counters_.icmp_frag_needed_sent;
    return Outcome::Answered;
}

}  // namespace mipsec::core
