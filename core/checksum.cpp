// SPDX-License-Identifier: MIT
#include "core/checksum.hpp"

namespace mipsec::core {

std::uint32_t checksum_partial(std::span<const std::uint8_t> bytes, std::uint32_t initial) noexcept {
    // 64-bit accumulator: folding is needed only once at the end, whatever the length.
    std::uint64_t sum = initial;
    std::size_t i = 0;
    for (; i + 1 < bytes.size(); i += 2) sum += (std::uint32_t{bytes[i]} << 8) | bytes[i + 1];
    if (i < bytes.size()) sum += std::uint32_t{bytes[i]} << 8;
    while (sum >> 32) sum = (sum & 0xFFFFFFFFu) + (sum >> 32);
    // Keep the partial in 32 bits with room for further additions.
    std::uint32_t s = static_cast<std::uint32_t>(sum);
    s = (s & 0xFFFF) + (s >> 16);
    return s;
}

}  // namespace mipsec::core
