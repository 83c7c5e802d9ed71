// SPDX-License-Identifier: MIT
// Arbitrary bytes as a TUN read with a virtio-net header for tun::Segmenter: never a crash,
// and whatever it writes is a set of well-formed packets that carry exactly the input's
// payload, also when it takes several calls of 64 buffers. Byte 0 picks the MTU and whether
// the header/lengths/checksums are made plausible first (so the fuzzer reaches the segmenting
// loop, not only the checks in front of it).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/checksum.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "tun/offload.hpp"

using namespace mipsec;

namespace {

bool l4_ok(std::span<const std::uint8_t> p) {
    const auto ip = core::Ipv4View::check(p);
    if (!ip || !ip->checksum_valid()) return false;
    const auto l4 = ip->payload();
    return core::checksum_finish(core::checksum_partial(
               l4, core::pseudo_header_sum(ip->source(), ip->destination(), ip->protocol(),
                                           static_cast<std::uint16_t>(l4.size())))) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1 + tun::VirtioNetHeader::len) return 0;
    static core::BufferPool pool(80, 2048);
    static std::vector<core::PacketBuf> bufs;
    if (bufs.empty())
        for (int i = 0; i < 64; ++i) bufs.push_back(pool.acquire(0));
    const std::uint8_t mode = data[0];
    std::vector<std::uint8_t> frame(data + 1, data + std::min<std::size_t>(size, 1 + 10 + 65535));
    const std::size_t mtu = 68 + ((std::size_t{mode} & 0x3F) * 29);
    std::span<std::uint8_t> pkt = std::span(frame).subspan(tun::VirtioNetHeader::len);
    if ((mode & 0x40) && pkt.size() >= 20) {
        // Plausible: IPv4, total length = bytes, header checksum right, vnet fields pointing
        // at the L4 header of the protocol the gso type names.
        pkt[0] = static_cast<std::uint8_t>(0x40 | std::max(5, pkt[0] & 0x0F));
        const std::size_t ihl = std::size_t{pkt[0] & 0x0Fu} * 4;
        core::store_be16(pkt.data() + 2, static_cast<std::uint16_t>(pkt.size()));
        pkt[6] &= 0x40;
        pkt[7] = 0;
        const bool tcp = frame[1] & 1;
        pkt[9] = tcp ? core::ip_protocol::tcp : core::ip_protocol::udp;
        if (ihl + 20 <= pkt.size()) {
            if (tcp) pkt[ihl + 12] = static_cast<std::uint8_t>(std::max(5, pkt[ihl + 12] >> 4) << 4);
            const std::size_t l4 = tcp ? (std::size_t{pkt[ihl + 12]} >> 4) * 4 : 8;
            tun::VirtioNetHeader vh = tun::VirtioNetHeader::parse(frame);
            vh.flags = tun::VirtioNetHeader::flag_needs_csum;
            vh.gso_type = tcp ? tun::VirtioNetHeader::gso_tcpv4 : tun::VirtioNetHeader::gso_udp_l4;
            vh.hdr_len = static_cast<std::uint16_t>(ihl + l4);
            vh.csum_start = static_cast<std::uint16_t>(ihl);
            vh.csum_offset = tcp ? 16 : 6;
            vh.gso_size = static_cast<std::uint16_t>(1 + vh.gso_size % 1500);
            vh.emit(frame);
        }
        core::store_be16(pkt.data() + 10, 0);
        core::store_be16(pkt.data() + 10, core::internet_checksum(pkt.first(ihl <= pkt.size() ? ihl : 20)));
    }
    tun::Segmenter seg(mtu);
    const auto vh = tun::VirtioNetHeader::parse(frame);
    const std::size_t headroom = mode & 0x80 ? 16 : 0;
    auto r = seg.segment(frame, bufs, headroom);
    if (r.count == 0) {
        if (r.reason == core::DropReason::None) std::abort();
        return 0;
    }
    if (vh.gso_type == tun::VirtioNetHeader::gso_none) {
        if (r.count != 1 || r.total != 1 || bufs[0].size() != pkt.size()) std::abort();
        return 0;
    }
    // Segmented, 64 buffers at a time: every piece within the MTU, checksums right, payload
    // carried exactly once and in order.
    const std::size_t ihl = std::size_t{pkt[0] & 0x0Fu} * 4;
    const std::size_t hl = vh.gso_type == tun::VirtioNetHeader::gso_tcpv4 ? ihl + ((std::size_t{pkt[ihl + 12]} >> 4) * 4) : ihl + 8;
    std::vector<std::uint8_t> payload;
    std::size_t first = 0;
    while (true) {
        if (r.count == 0 || r.reason != core::DropReason::None) std::abort();
        for (std::size_t i = 0; i < r.count; ++i) {
            const auto p = bufs[i].bytes();
            if (p.size() > mtu || p.size() < hl || !l4_ok(p)) std::abort();
            payload.insert(payload.end(), p.begin() + static_cast<std::ptrdiff_t>(hl), p.end());
        }
        first += r.count;
        if (first == r.total) break;
        r = seg.segment(frame, bufs, headroom, first);
    }
    if (payload.size() != pkt.size() - hl || !std::equal(payload.begin(), payload.end(), pkt.begin() + static_cast<std::ptrdiff_t>(hl)))
        std::abort();
    return 0;
}
