// SPDX-License-Identifier: MIT
// Reads one TUN frame (virtio-net header + packet) from stdin and prints the packets
// tun::Segmenter makes of it, one hex line each, or "drop <reason>". For offload_scapy_test.py.
// Usage: offload_segment_dump <mtu>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <vector>

#include "core/buffer_pool.hpp"
#include "tun/offload.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: offload_segment_dump <mtu>\n";
        return 2;
    }
    std::cin >> std::noskipws;
    const std::vector<std::uint8_t> frame{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    mipsec::core::BufferPool pool(64, 2048);
    std::vector<mipsec::core::PacketBuf> bufs;
    for (int i = 0; i < 64; ++i) bufs.push_back(pool.acquire(0));
    mipsec::tun::Segmenter seg(std::strtoul(argv[1], nullptr, 10));
    const auto r = seg.segment(frame, bufs, 0);
    if (r.count == 0) {
        std::cout << "drop " << mipsec::core::to_string(r.reason) << "\n";
        return 0;
    }
    for (std::size_t i = 0; i < r.count; ++i) {
        for (std::uint8_t b : bufs[i].bytes()) std::printf("%02x", b);
        std::printf("\n");
    }
    return 0;
}
