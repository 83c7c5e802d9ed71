// SPDX-License-Identifier: MIT
#include "mip/ip_in_ip_stage.hpp"

#include "mip/tunnel_encap.hpp"

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
    return push_ip_in_ip(packet, {config_.local, config_.remote, config_.ttl, config_.df_when_inner_clear, next_identification_++});
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
    return strip_tunnel(packet, outer->header_len());
}

}  // namespace mipsec::mip
