// SPDX-License-Identifier: MIT
// Arbitrary bytes as a batch of inner packets (each prefixed by a one-byte control and a
// two-byte length) for tun::Coalescer: never a crash, and every frame it builds is one the
// segmenter accepts and cuts back into as many segments as were merged. The control byte can
// make a packet a plausible TCP/IPv4 segment with right checksums (and contiguous sequence
// numbers), or a UDP/IPv4 datagram with a right or no checksum (and consecutive
// identifications), so merging is actually reached; UDP merging is on (a device with USO).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/checksum.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "tun/offload.hpp"

using namespace mipsec;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static core::BufferPool pool(80, 2048);
    static std::vector<core::PacketBuf> bufs;
    if (bufs.empty())
        for (int i = 0; i < 64; ++i) bufs.push_back(pool.acquire(0));
    std::vector<std::vector<std::uint8_t>> packets;
    std::uint32_t next_seq = 1;
    std::uint16_t next_id = 1;
    while (size >= 3 && packets.size() < 64) {
        const std::uint8_t control = data[0];
        std::size_t len = std::min<std::size_t>(core::load_be16(data + 1) % 1500, size - 3);
        std::vector<std::uint8_t> p(data + 3, data + 3 + len);
        data += 3 + len;
        size -= 3 + len;
        if ((control & 1) && (control & 16) && p.size() >= 28) {
            p[0] = 0x45;
            core::store_be16(p.data() + 2, static_cast<std::uint16_t>(p.size()));
            p[6] &= 0x40;
            p[7] = 0;
            p[9] = core::ip_protocol::udp;
            if (control & 2) {  // one flow: addresses, ports, TOS and TTL
                std::fill(p.begin() + 12, p.begin() + 24, std::uint8_t{0});
                p[1] = 0;
                p[8] = 64;
            }
            if (control & 4) core::store_be16(p.data() + 4, next_id++);
            core::store_be16(p.data() + 10, 0);
            core::store_be16(p.data() + 10, core::internet_checksum(std::span(p).first(20)));
            core::store_be16(p.data() + 24, static_cast<std::uint16_t>(p.size() - 20));
            core::store_be16(p.data() + 26, 0);
            if (!(control & 32)) {
                const std::uint16_t c = core::checksum_finish(core::checksum_partial(
                    std::span(p).subspan(20), core::pseudo_header_sum({core::load_be32(p.data() + 12)},
                                                                      {core::load_be32(p.data() + 16)}, 17,
                                                                      static_cast<std::uint16_t>(p.size() - 20))));
                core::store_be16(p.data() + 26, c == 0 ? 0xFFFF : c);
            }
        } else if ((control & 1) && p.size() >= 40) {
            p[0] = 0x45;
            core::store_be16(p.data() + 2, static_cast<std::uint16_t>(p.size()));
            p[6] &= 0x40;
            p[7] = 0;
            p[9] = core::ip_protocol::tcp;
            if (control & 2) std::fill(p.begin() + 12, p.begin() + 24, std::uint8_t{0});  // one flow
            p[20 + 12] = static_cast<std::uint8_t>(std::max(5, p[20 + 12] >> 4) << 4);
            const std::size_t thl = (std::size_t{p[32]} >> 4) * 4;
            if (20 + thl > p.size()) continue;
            if (control & 4) {
                core::store_be32(p.data() + 24, next_seq);
                next_seq += static_cast<std::uint32_t>(p.size() - 20 - thl);
            }
            if (control & 8) p[33] = 0x10;  // ACK only
            core::store_be16(p.data() + 10, 0);
            core::store_be16(p.data() + 10, core::internet_checksum(std::span(p).first(20)));
            core::store_be16(p.data() + 36, 0);
            core::store_be16(p.data() + 36, core::checksum_finish(core::checksum_partial(
                                                 std::span(p).subspan(20),
                                                 core::pseudo_header_sum({core::load_be32(p.data() + 12)},
                                                                         {core::load_be32(p.data() + 16)}, 6,
                                                                         static_cast<std::uint16_t>(p.size() - 20)))));
        }
        packets.push_back(std::move(p));
    }
    tun::Coalescer c(tun::Coalescer::max_super_len, true);
    for (const auto& p : packets) c.add(p);
    for (std::size_t i = 0; i < c.frame_count(); ++i) {
        const auto f = c.frame(i);
        const auto vh = tun::VirtioNetHeader::parse(f);
        if (c.frame_segments(i) == 1) {
            if (!(vh == tun::VirtioNetHeader{})) std::abort();
            continue;
        }
        tun::Segmenter seg(std::size_t{vh.hdr_len} + vh.gso_size);
        const auto r = seg.segment(f, bufs, 0);
        if (r.count != c.frame_segments(i) || r.total != r.count) std::abort();
    }
    return 0;
}
