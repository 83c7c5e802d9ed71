// SPDX-License-Identifier: MIT
#include "core/address.hpp"

#include <charconv>

namespace mipsec::core {
namespace {
// Parses a decimal number in [0, max] that uses all of `text`; no sign, no leading '+'.
std::optional<std::uint32_t> parse_decimal(std::string_view text, std::uint32_t max) noexcept {
    if (text.empty() || text.size() > 10) return std::nullopt;
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size() || v > max) return std::nullopt;
    return v;
}
}  // namespace

std::optional<Ipv4Address> Ipv4Address::parse(std::string_view text) noexcept {
    std::uint32_t value = 0;
    for (int i = 0; i < 4; ++i) {
        auto dot = text.find('.');
        if ((i < 3) == (dot == std::string_view::npos)) return std::nullopt;
        auto part = text.substr(0, dot);
        if (part.size() > 3) return std::nullopt;
        auto octet = parse_decimal(part, 255);
        if (!octet) return std::nullopt;
        value = (value << 8) | *octet;
        text = i < 3 ? text.substr(dot + 1) : std::string_view{};
    }
    return Ipv4Address{value};
}

std::string Ipv4Address::to_string() const {
    return std::to_string(value >> 24) + '.' + std::to_string((value >> 16) & 0xFF) + '.' +
           std::to_string((value >> 8) & 0xFF) + '.' + std::to_string(value & 0xFF);
}

std::optional<Ipv4Prefix> Ipv4Prefix::parse(std::string_view text) noexcept {
    auto slash = text.find('/');
    auto address = Ipv4Address::parse(text.substr(0, slash));
    if (!address) return std::nullopt;
    if (slash == std::string_view::npos) return Ipv4Prefix{*address, 32};
    auto length = parse_decimal(text.substr(slash + 1), 32);
    if (!length) return std::nullopt;
    return Ipv4Prefix{*address, static_cast<std::uint8_t>(*length)};
}

std::string Ipv4Prefix::to_string() const { return address.to_string() + '/' + std::to_string(length); }

std::optional<Endpoint> Endpoint::parse(std::string_view text) noexcept {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    auto address = Ipv4Address::parse(text.substr(0, colon));
    auto port = parse_decimal(text.substr(colon + 1), 65535);
    if (!address || !port) return std::nullopt;
    return Endpoint{*address, static_cast<std::uint16_t>(*port)};
}

std::string Endpoint::to_string() const { return address.to_string() + ':' + std::to_string(port); }

}  // namespace mipsec::core
