// SPDX-License-Identifier: MIT
#include "ipsec/ike_datagram.hpp"

#include <algorithm>

#include "core/ipv4.hpp"
#include "core/udp.hpp"

namespace mipsec::ipsec {

core::PacketBuf build_ike_packet(const ike::OutgoingDatagram& d, std::uint8_t ttl, core::StageContext& ctx) {
    auto buf = ctx.allocate();
    const std::size_t marker = d.non_esp_marker ? non_esp_marker_len : 0;
    const std::size_t len = core::Ipv4Header::len + core::UdpHeader::len + marker + d.payload.size();
    if (!buf.valid() || len > 0xFFFF || !buf.put(len)) return {};
    core::Ipv4Header ip;
    ip.total_length = static_cast<std::uint16_t>(len);
    ip.ttl = ttl;
    ip.protocol = core::ip_protocol::udp;
    ip.source = d.local.address;
    ip.destination = d.remote.address;
    ip.emit(buf.bytes());
    auto udp_bytes = buf.bytes().subspan(core::Ipv4Header::len);
    core::UdpHeader{d.local.port, d.remote.port, static_cast<std::uint16_t>(len - core::Ipv4Header::len), 0}.emit(udp_bytes);
    std::fill_n(udp_bytes.data() + core::UdpHeader::len, marker, std::uint8_t{0});
    std::copy(d.payload.begin(), d.payload.end(), udp_bytes.data() + core::UdpHeader::len + marker);
    core::UdpMutView::check(udp_bytes)->update_checksum(ip.source, ip.destination);
    return buf;
}

bool send_ike_packet(const ike::OutgoingDatagram& d, std::uint8_t ttl, core::StageContext& ctx) {
    auto buf = build_ike_packet(d, ttl, ctx);
    if (!buf.valid()) {
        ctx.log().limited(core::LogLevel::Warn, ctx.now(), "no buffer for an IKE message; it will be retransmitted");
        return false;
    }
    ctx.send_control(std::move(buf));
    return true;
}

UdpKind classify_udp(std::uint16_t destination_port, std::span<const std::uint8_t> payload, std::uint16_t ike_port,
                     std::uint16_t nat_t_port) noexcept {
    if (destination_port == ike_port) return UdpKind::Ike;  // no marker on the IKE port
    if (destination_port != nat_t_port) return UdpKind::NotIke;
    if (payload.size() == 1) return payload[0] == 0xFF ? UdpKind::Keepalive : UdpKind::Malformed;
    if (payload.size() < non_esp_marker_len) return UdpKind::Malformed;
    if (payload[0] == 0 && payload[1] == 0 && payload[2] == 0 && payload[3] == 0) return UdpKind::Ike;
    return payload.size() >= 8 ? UdpKind::Esp : UdpKind::Malformed;
}

}  // namespace mipsec::ipsec
