// SPDX-License-Identifier: MIT
#pragma once
// TCP/UDP over IPv4 packets and virtio-net frames built by hand for the offload tests: correct
// checksums, or the pseudo-header sum only (checksum-partial, as the kernel hands them over).
#include <algorithm>
#include <cstdint>
#include <span>

#include "core/checksum.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "tests/support/hex.hpp"
#include "tun/offload.hpp"

namespace mipsec::test::offload {

using tun::VirtioNetHeader;

inline constexpr std::uint8_t fin = 0x01, syn = 0x02, rst = 0x04, psh = 0x08, ack = 0x10, cwr = 0x80;

struct Tcp {
    Bytes ip_options;
    Bytes tcp_options;
    std::uint32_t seq = 1000;
    std::uint32_t ack_number = 77;
    std::uint8_t flags = ack;
    std::uint16_t id = 0x1234;
    std::uint8_t tos = 0;
    std::uint8_t ttl = 64;
    std::uint16_t frag = 0x4000;  // DF
    std::uint32_t src = 0x0A000001;
    std::uint32_t dst = 0x0A000002;
    std::uint16_t sport = 40000;
    std::uint16_t dport = 5201;
    Bytes payload;
};

inline Bytes pattern(std::size_t n, std::size_t start = 0) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>((start + i) * 7 + 3);
    return b;
}

inline std::uint32_t pseudo(std::span<const std::uint8_t> ip, std::uint8_t proto, std::size_t l4_len) {
    return core::pseudo_header_sum({core::load_be32(ip.data() + 12)}, {core::load_be32(ip.data() + 16)}, proto,
                                   static_cast<std::uint16_t>(l4_len));
}

inline Bytes ip_header(std::size_t ihl, std::size_t total, std::uint8_t proto, const Tcp& t) {
    Bytes b(ihl, 0);
    b[0] = static_cast<std::uint8_t>(0x40 | (ihl / 4));
    b[1] = t.tos;
    core::store_be16(b.data() + 2, static_cast<std::uint16_t>(total));
    core::store_be16(b.data() + 4, t.id);
    core::store_be16(b.data() + 6, t.frag);
    b[8] = t.ttl;
    b[9] = proto;
    core::store_be32(b.data() + 12, t.src);
    core::store_be32(b.data() + 16, t.dst);
    std::copy(t.ip_options.begin(), t.ip_options.end(), b.begin() + 20);
    core::store_be16(b.data() + 10, core::internet_checksum(b));
    return b;
}

/// A TCP/IPv4 packet with correct checksums, or with the TCP checksum field holding the
/// pseudo-header sum only (what the kernel hands over with NEEDS_CSUM) when `partial`.
inline Bytes tcp_packet(const Tcp& t, bool partial = false) {
    const std::size_t ihl = 20 + t.ip_options.size(), thl = 20 + t.tcp_options.size();
    Bytes b = ip_header(ihl, ihl + thl + t.payload.size(), core::ip_protocol::tcp, t);
    Bytes tcp(thl, 0);
    core::store_be16(tcp.data(), t.sport);
    core::store_be16(tcp.data() + 2, t.dport);
    core::store_be32(tcp.data() + 4, t.seq);
    core::store_be32(tcp.data() + 8, t.ack_number);
    tcp[12] = static_cast<std::uint8_t>((thl / 4) << 4);
    tcp[13] = t.flags;
    core::store_be16(tcp.data() + 14, 502);
    std::copy(t.tcp_options.begin(), t.tcp_options.end(), tcp.begin() + 20);
    b.insert(b.end(), tcp.begin(), tcp.end());
    b.insert(b.end(), t.payload.begin(), t.payload.end());
    const std::uint32_t ps = pseudo(b, core::ip_protocol::tcp, thl + t.payload.size());
    const std::uint16_t c = partial ? static_cast<std::uint16_t>(~core::checksum_finish(ps))
                                    : core::checksum_finish(core::checksum_partial(std::span(b).subspan(ihl), ps));
    core::store_be16(b.data() + ihl + 16, c);
    return b;
}

inline Bytes udp_packet(const Tcp& t, bool partial = false) {
    const std::size_t ihl = 20 + t.ip_options.size();
    Bytes b = ip_header(ihl, ihl + 8 + t.payload.size(), core::ip_protocol::udp, t);
    Bytes udp(8, 0);
    core::store_be16(udp.data(), t.sport);
    core::store_be16(udp.data() + 2, t.dport);
    core::store_be16(udp.data() + 4, static_cast<std::uint16_t>(8 + t.payload.size()));
    b.insert(b.end(), udp.begin(), udp.end());
    b.insert(b.end(), t.payload.begin(), t.payload.end());
    const std::uint32_t ps = pseudo(b, core::ip_protocol::udp, 8 + t.payload.size());
    const std::uint16_t c = partial ? static_cast<std::uint16_t>(~core::checksum_finish(ps))
                                    : core::checksum_finish(core::checksum_partial(std::span(b).subspan(ihl), ps));
    core::store_be16(b.data() + ihl + 6, c);
    return b;
}

inline Bytes frame_of(const VirtioNetHeader& vh, const Bytes& packet) {
    Bytes f(VirtioNetHeader::len);
    vh.emit(f);
    f.insert(f.end(), packet.begin(), packet.end());
    return f;
}

inline VirtioNetHeader tso(std::size_t ihl, std::size_t thl, std::uint16_t gso_size) {
    return {VirtioNetHeader::flag_needs_csum, VirtioNetHeader::gso_tcpv4, static_cast<std::uint16_t>(ihl + thl),
            gso_size, static_cast<std::uint16_t>(ihl), 16};
}

inline bool l4_checksum_ok(std::span<const std::uint8_t> p) {
    const auto ip = core::Ipv4View::check(p);
    if (!ip) return false;
    return core::checksum_finish(core::checksum_partial(ip->payload(), pseudo(p, ip->protocol(), ip->payload().size()))) == 0;
}

inline Bytes to_bytes(std::span<const std::uint8_t> s) { return {s.begin(), s.end()}; }

}  // namespace mipsec::test::offload
