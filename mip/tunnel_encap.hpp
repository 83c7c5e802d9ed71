// SPDX-License-Identifier: MIT
#pragma once
// Tunnel encapsulation shared by every Mobile IP stage: IP-in-IP (RFC 2003 §3.1) and
// IP-in-UDP with the MIP Tunnel Data header (RFC 3519 §3.3), plus the whole IPv4/UDP control
// packets (registrations) the stages send.
//
//  * push_ip_in_ip / push_ip_in_udp wrap the inner IPv4 packet in `packet` in place: they
//    check it (valid header, TTL not 0: RFC 2003 §3.1 never encapsulates a TTL-0 datagram),
//    drop link padding after Total Length and push the new headers into the headroom. The
//    outer TOS is copied from the inner header, the outer DF is set whenever the inner DF is
//    (RFC 2003 §3.1 MUST), the outer TTL is the caller's (never copied), inner options are not
//    copied. The IP-in-UDP datagram carries a computed UDP checksum (RFC 3519 leaves it open;
//    a zero one may not pass every peer). Loop checks (RFC 2003 §4) are the caller's: only it knows which
//    sources are its own and which packets it forwards rather than originates.
//  * peek_tunnel classifies a received packet without changing it; strip_tunnel removes
//    the outer headers it found and validates the inner packet (RFC 2003 §3.1: a decapsulated
//    TTL of 0 is dropped; the inner TTL is otherwise untouched).
// The payload never moves; nothing allocates.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "core/address.hpp"
#include "core/ipv4.hpp"
#include "core/packet_buf.hpp"
#include "core/stage.hpp"
#include "core/udp.hpp"
#include "mip/registration_wire.hpp"

namespace mipsec::mip {

inline constexpr std::size_t ip_in_ip_overhead = core::Ipv4Header::len;
inline constexpr std::size_t ip_in_udp_overhead = core::Ipv4Header::len + core::UdpHeader::len + TunnelDataHeader::len;

/// The outer IPv4 header an encapsulator writes.
struct OuterHeader {
    core::Ipv4Address source;       // tunnel entry point
    core::Ipv4Address destination;  // tunnel exit point
    std::uint8_t ttl = 64;
    bool df_when_inner_clear = false;  // DF on the outer header even if the inner lacks it
    std::uint16_t identification = 0;
};

/// [inner] -> [IPv4 proto 4 | inner]. Drops: the IPv4 check failure, TtlExpired, TooBig,
/// NoHeadroom.
core::Verdict push_ip_in_ip(core::PacketBuf& packet, const OuterHeader& outer) noexcept;

/// [inner] -> [IPv4 proto 17 | UDP source_port -> destination_port | 4 Next Header 4 0 0 | inner].
core::Verdict push_ip_in_udp(core::PacketBuf& packet, const OuterHeader& outer, std::uint16_t source_port,
                             std::uint16_t destination_port) noexcept;

enum class TunnelKind : std::uint8_t { IpInIp, Udp };

/// What peek_tunnel found in front of an inner packet.
struct TunnelHeaders {
    TunnelKind kind = TunnelKind::IpInIp;
    core::Ipv4Address source;
    core::Ipv4Address destination;
    std::uint16_t source_port = 0;       // Udp only
    std::uint16_t destination_port = 0;  // Udp only
    std::uint8_t next_header = core::ip_protocol::ipip;  // Udp: the Tunnel Data Next Header
    std::size_t outer_len = 0;   // bytes strip_tunnel removes from the front
    std::size_t end = 0;         // where the tunnel payload ends: Total Length, or the UDP Length's end
    bool fragment = false;       // the outer packet is a fragment: its inner header is incomplete
    bool udp_checksum_ok = true;  // a non-zero UDP checksum verified (zero is accepted)
};

/// `packet` is a whole IPv4 packet (Ipv4View::check passed). Returns the headers of an
/// IP-in-IP packet (protocol 4) or of an RFC 3519 Tunnel Data message (UDP with either port
/// 434 and a payload starting with Type 4); nullopt for anything else. The UDP payload must
/// hold the 4-byte Tunnel Data header.
std::optional<TunnelHeaders> peek_tunnel(const core::Ipv4View& packet) noexcept;

/// Removes the bytes from `end` on (0: from the outer Total Length on) and the first
/// `outer_len`, then checks the inner packet: Malformed if it is not IPv4 or does not fit,
/// TtlExpired when its TTL is 0. Trims the inner packet to its Total Length.
core::Verdict strip_tunnel(core::PacketBuf& packet, std::size_t outer_len, std::size_t end = 0) noexcept;
inline core::Verdict strip_tunnel(core::PacketBuf& packet, const TunnelHeaders& t) noexcept {
    return strip_tunnel(packet, t.outer_len, t.end);
}

/// Writes a whole IPv4/UDP packet carrying `payload` into `buf` (which must be empty and have
/// the tailroom) with a computed UDP checksum. False if it does not fit.
bool emit_udp_packet(core::PacketBuf& buf, core::Endpoint source, core::Endpoint destination, std::uint8_t ttl,
                     std::span<const std::uint8_t> payload) noexcept;

/// Writes a whole IPv4 packet with an ICMP echo request or reply (RFC 792; the RFC 3519 §3.6
/// keepalive and its answer) and `body_len` zero bytes of data. False if it does not fit.
bool emit_echo_packet(core::PacketBuf& buf, core::Ipv4Address source, core::Ipv4Address destination,
                      std::uint8_t icmp_type, std::uint16_t identifier, std::uint16_t sequence,
                      std::size_t body_len = 0) noexcept;

/// The UDP view of a whole IPv4 packet whose protocol is UDP, or nullopt.
std::optional<core::UdpView> udp_of(const core::Ipv4View& packet) noexcept;

}  // namespace mipsec::mip
