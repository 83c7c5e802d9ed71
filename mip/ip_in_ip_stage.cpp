// SPDX-License-Identifier: MIT
#include "mip/ip_in_ip_stage.hpp"

namespace mipsec::mip {

using core::DropReason;
using core::Verdict;

core::Verdict IpInIpStage::encapsulate(core::PacketBuf& packet, core::StageContext&) {
    auto inner = core::Ipv4View::check(packet.bytes());
    if (!inner) return Verdict::drop(ipv4_check_failure(packet));
    // RFC 2003 §3.1: a datagram whose TTL is zero is never encapsulated.
    if (inner->ttl() == 0) return Verdict::drop(DropReason::TtlExpired);
    // §4: never tunnel a datagram that comes from one of the tunnel's own endpoints.
    if (inner->source() == config_.remote || inner->source() == config_.local) return Verdict::drop(DropReason::Loop);

    const std::size_t inner_len = inner->total_length();
    const std::uint8_t tos = inner->tos();
    const bool inner_df = inner->dont_fragment();
    if (inner_len + core::Ipv4Header::len > 0xFFFF) return Verdict::drop(DropReason::TooBig);
    if (!packet.trim(packet.size() - inner_len)) return Verdict::drop(DropReason::Internal);  // link padding
    if (!packet.push(core::Ipv4Header::len)) return Verdict::drop(DropReason::NoHeadroom);

    core::Ipv4Header outer;
    outer.tos = tos;
    outer.total_length = static_cast<std::uint16_t>(inner_len + core::Ipv4Header::len);
    outer.identification = next_identification_++;
    outer.flags_fragment = (inner_df || config_.df_when_inner_clear) ? core::Ipv4View::flag_df : 0;
    outer.ttl = config_.ttl;
    outer.protocol = core::ip_protocol::ipip;
    outer.source = config_.local;
    outer.destination = config_.remote;
    outer.emit(packet.bytes());
    return Verdict::pass();
}

core::Verdict IpInIpStage::decapsulate(core::PacketBuf& packet, core::StageContext&) {
    auto outer = core::Ipv4View::check(packet.bytes());
    if (!outer) return Verdict::drop(ipv4_check_failure(packet));
    if (outer->protocol() != core::ip_protocol::ipip) return Verdict::drop(DropReason::UnexpectedProtocol);
    if (outer->source() != config_.remote || outer->destination() != config_.local)
        return Verdict::drop(DropReason::NotForUs);
    // Kernels hand raw sockets reassembled datagrams; a fragment here means a lower stage
    // produced one, and its inner header would be incomplete.
    if (outer->is_fragment()) return Verdict::drop(DropReason::Fragment);

    const std::size_t outer_len = outer->total_length();
    const std::size_t header_len = outer->header_len();
    if (!packet.trim(packet.size() - outer_len) || !packet.pull(header_len)) return Verdict::drop(DropReason::Internal);
    auto inner = core::Ipv4View::check(packet.bytes());
    if (!inner) return Verdict::drop(DropReason::Malformed);
    // §3.1: the decapsulator does not change the inner TTL but must drop one that is zero.
    if (inner->ttl() == 0) return Verdict::drop(DropReason::TtlExpired);
    if (!packet.trim(packet.size() - inner->total_length())) return Verdict::drop(DropReason::Internal);
    return Verdict::pass();
}

}  // namespace mipsec::mip
