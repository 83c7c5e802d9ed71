// SPDX-License-Identifier: MIT
#pragma once
// "45 00 00 54"_hex and to_hex() for tests: whitespace in hex literals is ignored.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mipsec::test {

using Bytes = std::vector<std::uint8_t>;
/// Parses hex digits, ignoring spaces, newlines and ':'; throws on anything else or odd length.
Bytes from_hex(std::string_view text);
std::string to_hex(std::span<const std::uint8_t> bytes);

inline namespace literals {
inline Bytes operator""_hex(const char* text, std::size_t len) { return from_hex({text, len}); }
}  // namespace literals

}  // namespace mipsec::test
