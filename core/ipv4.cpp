// SPDX-License-Identifier: MIT
#include "core/ipv4.hpp"

#include <cassert>

namespace mipsec::core {

void Ipv4Header::emit(std::span<std::uint8_t> out) const noexcept {
    assert(out.size() >= len);
    out[0] = 0x45;
    out[1] = tos;
    store_be16(out.data() + 2, total_length);
    store_be16(out.data() + 4, identification);
    store_be16(out.data() + 6, flags_fragment);
    out[8] = ttl;
    out[9] = protocol;
    store_be16(out.data() + 10, 0);
    store_be32(out.data() + 12, source.value);
    store_be32(out.data() + 16, destination.value);
    store_be16(out.data() + 10, internet_checksum(out.first(len)));
}

DropReason ipv4_check_failure(std::span<const std::uint8_t> bytes) noexcept {
    if (bytes.empty()) return DropReason::Truncated;
    if ((bytes[0] >> 4) != 4) return DropReason::UnexpectedProtocol;
    if (bytes.size() < Ipv4Header::len) return DropReason::Truncated;
    return DropReason::Malformed;
}

std::uint32_t pseudo_header_sum(Ipv4Address src, Ipv4Address dst, std::uint8_t protocol,
                                std::uint16_t length) noexcept {
    std::uint32_t sum = (src.value >> 16) + (src.value & 0xFFFF) + (dst.value >> 16) +
                        (dst.value & 0xFFFF) + protocol + length;
    return sum;
}

}  // namespace mipsec::core
