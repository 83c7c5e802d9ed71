// SPDX-License-Identifier: MIT
#pragma once
// The Internet checksum (RFC 1071) and its incremental update (RFC 1624, eqn. 3).
#include <cstdint>
#include <span>

namespace mipsec::core {

/// One's-complement sum of `bytes` (odd length padded with a zero byte) added to `initial`,
/// not folded and not complemented, so partial sums can be chained (pseudo-headers).
std::uint32_t checksum_partial(std::span<const std::uint8_t> bytes, std::uint32_t initial = 0) noexcept;
/// Folds a partial sum to 16 bits and complements it: the value to store in a header.
constexpr std::uint16_t checksum_finish(std::uint32_t sum) noexcept {
    while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
}
inline std::uint16_t internet_checksum(std::span<const std::uint8_t> bytes) noexcept {
    return checksum_finish(checksum_partial(bytes));
}
/// New checksum after a 16-bit field changed from old_value to new_value: HC' = ~(~HC + ~m + m').
constexpr std::uint16_t checksum_update16(std::uint16_t checksum, std::uint16_t old_value,
                                          std::uint16_t new_value) noexcept {
    std::uint32_t sum = std::uint32_t{static_cast<std::uint16_t>(~checksum)} +
                        static_cast<std::uint16_t>(~old_value) + new_value;
    return checksum_finish(sum);
}
constexpr std::uint16_t checksum_update32(std::uint16_t checksum, std::uint32_t old_value,
                                          std::uint32_t new_value) noexcept {
    checksum = checksum_update16(checksum, static_cast<std::uint16_t>(old_value >> 16),
                                 static_cast<std::uint16_t>(new_value >> 16));
    return checksum_update16(checksum, static_cast<std::uint16_t>(old_value),
                             static_cast<std::uint16_t>(new_value));
}

}  // namespace mipsec::core
