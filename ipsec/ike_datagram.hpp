// SPDX-License-Identifier: MIT
#pragma once
// IKE messages as whole IPv4/UDP packets, for the stages that carry an IKE control plane
// (ipsec.vpn_client, ipsec.vpn_gateway): port 500 plain, the NAT-T port with the 4-byte
// non-ESP marker (RFC 3948 §2.2).
#include <cstdint>
#include <optional>
#include <span>

#include "core/address.hpp"
#include "core/stage.hpp"
#include "ipsec/ike/session.hpp"

namespace mipsec::ipsec {

inline constexpr std::size_t non_esp_marker_len = 4;

/// Builds the IPv4/UDP packet for `d` in a buffer from ctx.allocate() (headroom for the
/// stages below) with a computed UDP checksum; an invalid buffer if the pool is dry.
core::PacketBuf build_ike_packet(const ike::OutgoingDatagram& d, std::uint8_t ttl, core::StageContext& ctx);
/// Builds and sends `d` outward with ctx.send_control(); false (logged, rate-limited) when no
/// buffer was free — IKE retransmits, so nothing else is needed.
bool send_ike_packet(const ike::OutgoingDatagram& d, std::uint8_t ttl, core::StageContext& ctx);

struct IkeDatagramIn {
    std::span<const std::uint8_t> message;  // the ISAKMP message, marker removed
    core::Endpoint local;
    core::Endpoint remote;
};

/// What an inbound UDP datagram on the IKE ports is.
enum class UdpKind : std::uint8_t { NotIke, Ike, Keepalive, Esp, Malformed };

/// Classifies a UDP datagram addressed to `ike_port` or `nat_t_port` (RFC 3948 §2.2 rules);
/// fills `out` for Ike. `payload` is the UDP payload.
UdpKind classify_udp(std::uint16_t destination_port, std::span<const std::uint8_t> payload, std::uint16_t ike_port,
                     std::uint16_t nat_t_port) noexcept;

}  // namespace mipsec::ipsec
