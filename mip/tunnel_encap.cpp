// SPDX-License-Identifier: MIT
#include "mip/tunnel_encap.hpp"

#include <algorithm>

#include "core/icmp.hpp"

namespace mipsec::mip {

using core::DropReason;
using core::Verdict;

namespace {

struct InnerFacts {
    std::size_t len = 0;
    std::uint8_t tos = 0;
    bool df = false;
};

/// The inner packet checks common to both encapsulations; trims link padding.
Verdict prepare_inner(core::PacketBuf& packet, std::size_t overhead, InnerFacts& facts) noexcept {
    auto inner = core::Ipv4View::check(packet.bytes());
    if (!inner) return Verdict::drop(core::ipv4_check_failure(packet));
    // RFC 2003 §3.1: a datagram whose TTL is zero is never encapsulated.
    if (inner->ttl() == 0) return Verdict::drop(DropReason::TtlExpired);
    facts.len = inner->total_length();
    facts.tos = inner->tos();
    facts.df = inner->dont_fragment();
    if (facts.len + overhead > 0xFFFF) return Verdict::drop(DropReason::TooBig);
    if (!packet.trim(packet.size() - facts.len)) return Verdict::drop(DropReason::Internal);
    if (!packet.push(overhead)) return Verdict::drop(DropReason::NoHeadroom);
    return Verdict::pass();
}

void emit_outer(core::PacketBuf& packet, const OuterHeader& outer, const InnerFacts& facts, std::uint8_t protocol) noexcept {
    core::Ipv4Header h;
    h.tos = facts.tos;
    h.total_length = static_cast<std::uint16_t>(packet.size());
    h.identification = outer.identification;
    h.flags_fragment = (facts.df || outer.df_when_inner_clear) ? core::Ipv4View::flag_df : 0;
    h.ttl = outer.ttl;
    h.protocol = protocol;
    h.source = outer.source;
    h.destination = outer.destination;
    h.emit(packet.bytes());
}

}  // namespace

Verdict push_ip_in_ip(core::PacketBuf& packet, const OuterHeader& outer) noexcept {
    InnerFacts facts;
    if (auto v = prepare_inner(packet, ip_in_ip_overhead, facts); !v.passed()) return v;
    emit_outer(packet, outer, facts, core::ip_protocol::ipip);
    return Verdict::pass();
}

Verdict push_ip_in_udp(core::PacketBuf& packet, const OuterHeader& outer, std::uint16_t source_port,
                       std::uint16_t destination_port) noexcept {
    InnerFacts facts;
    if (auto v = prepare_inner(packet, ip_in_udp_overhead, facts); !v.passed()) return v;
    emit_outer(packet, outer, facts, core::ip_protocol::udp);
    auto udp_bytes = packet.bytes().subspan(core::Ipv4Header::len);
    const auto udp_len = static_cast<std::uint16_t>(udp_bytes.size());
    core::UdpHeader{source_port, destination_port, udp_len, 0}.emit(udp_bytes);
    // RFC 3519 §3.3: Type 4, Next Header = the encapsulated protocol (IP-in-UDP here).
    TunnelDataHeader{core::ip_protocol::ipip, 0}.emit(udp_bytes.subspan(core::UdpHeader::len));
    core::UdpMutView::check(udp_bytes)->update_checksum(outer.source, outer.destination);
    return Verdict::pass();
}

std::optional<core::UdpView> udp_of(const core::Ipv4View& packet) noexcept {
    if (packet.protocol() != core::ip_protocol::udp || packet.is_fragment()) return std::nullopt;
    return core::UdpView::check(packet.payload());
}

std::optional<TunnelHeaders> peek_tunnel(const core::Ipv4View& packet) noexcept {
    TunnelHeaders t;
    t.source = packet.source();
    t.destination = packet.destination();
    t.fragment = packet.is_fragment();
    if (packet.protocol() == core::ip_protocol::ipip) {
        t.kind = TunnelKind::IpInIp;
        t.outer_len = packet.header_len();
        t.end = packet.total_length();
        return t;
    }
    if (packet.protocol() != core::ip_protocol::udp) return std::nullopt;
    auto udp = core::UdpView::check(packet.payload());
    if (!udp) return std::nullopt;
    if (udp->source_port() != registration_port && udp->destination_port() != registration_port) return std::nullopt;
    auto data = TunnelDataView::check(udp->payload());
    if (!data) return std::nullopt;
    t.kind = TunnelKind::Udp;
    t.source_port = udp->source_port();
    t.destination_port = udp->destination_port();
    t.next_header = data->next_header();
    t.outer_len = packet.header_len() + core::UdpHeader::len + TunnelDataHeader::len;
    t.end = packet.header_len() + udp->length();
    t.udp_checksum_ok = udp->checksum_valid(packet.source(), packet.destination());
    return t;
}

Verdict strip_tunnel(core::PacketBuf& packet, std::size_t outer_len, std::size_t end) noexcept {
    auto outer = core::Ipv4View::check(packet.bytes());
    if (!outer) return Verdict::drop(DropReason::Internal);
    if (end == 0) end = outer->total_length();
    if (outer_len > end || end > outer->total_length()) return Verdict::drop(DropReason::Internal);
    if (!packet.trim(packet.size() - end) || !packet.pull(outer_len)) return Verdict::drop(DropReason::Internal);
    auto inner = core::Ipv4View::check(packet.bytes());
    if (!inner) return Verdict::drop(DropReason::Malformed);
    // RFC 2003 §3.1: the decapsulator leaves the inner TTL alone but drops a TTL of 0.
    if (inner->ttl() == 0) return Verdict::drop(DropReason::TtlExpired);
    if (!packet.trim(packet.size() - inner->total_length())) return Verdict::drop(DropReason::Internal);
    return Verdict::pass();
}

bool emit_udp_packet(core::PacketBuf& buf, core::Endpoint source, core::Endpoint destination, std::uint8_t ttl,
                     std::span<const std::uint8_t> payload) noexcept {
    const std::size_t len = core::Ipv4Header::len + core::UdpHeader::len + payload.size();
    if (!buf.valid() || len > 0xFFFF || !buf.put(len)) return false;
    core::Ipv4Header ip;
    ip.total_length = static_cast<std::uint16_t>(len);
    ip.ttl = ttl;
    ip.protocol = core::ip_protocol::udp;
    ip.source = source.address;
    ip.destination = destination.address;
    ip.emit(buf.bytes());
    auto udp_bytes = buf.bytes().subspan(core::Ipv4Header::len);
    core::UdpHeader{source.port, destination.port, static_cast<std::uint16_t>(udp_bytes.size()), 0}.emit(udp_bytes);
    std::copy(payload.begin(), payload.end(), udp_bytes.begin() + core::UdpHeader::len);
    core::UdpMutView::check(udp_bytes)->update_checksum(source.address, destination.address);
    return true;
}

bool emit_echo_packet(core::PacketBuf& buf, core::Ipv4Address source, core::Ipv4Address destination,
                      std::uint8_t icmp_type, std::uint16_t identifier, std::uint16_t sequence,
                      std::size_t body_len) noexcept {
    const std::size_t len = core::Ipv4Header::len + core::IcmpView::header_len + body_len;
    if (!buf.valid() || len > 0xFFFF || !buf.put(len)) return false;
    core::Ipv4Header ip;
    ip.total_length = static_cast<std::uint16_t>(len);
    ip.protocol = core::ip_protocol::icmp;
    ip.source = source;
    ip.destination = destination;
    ip.emit(buf.bytes());
    auto icmp_bytes = buf.bytes().subspan(core::Ipv4Header::len);
    std::fill(icmp_bytes.begin(), icmp_bytes.end(), std::uint8_t{0});
    auto icmp = core::IcmpMutView::check(icmp_bytes);
    icmp->set_type(icmp_type);
    icmp->set_code(0);
    icmp->set_echo_identifier(identifier);
    icmp->set_echo_sequence(sequence);
    icmp->update_checksum();
    return true;
}

}  // namespace mipsec::mip
