// SPDX-License-Identifier: MIT
#pragma once
// IPv4 addresses and UDP endpoints as values. Host byte order inside; wire order only in views.
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace mipsec::core {

struct Ipv4Address {
    std::uint32_t value = 0;  // host order: 192.0.2.1 == 0xC0000201

    static constexpr Ipv4Address from_octets(std::uint8_t a, std::uint8_t b, std::uint8_t c,
                                             std::uint8_t d) noexcept {
        return {(std::uint32_t{a} << 24) | (std::uint32_t{b} << 16) | (std::uint32_t{c} << 8) | d};
    }
    /// Dotted quad, exactly four decimal octets; nullopt otherwise.
    static std::optional<Ipv4Address> parse(std::string_view text) noexcept;
    std::string to_string() const;
    constexpr bool is_unspecified() const noexcept { return value == 0; }
    constexpr bool is_multicast() const noexcept { return (value >> 28) == 0xE; }
    constexpr bool is_broadcast() const noexcept { return value == 0xFFFFFFFFu; }
    friend constexpr auto operator<=>(Ipv4Address, Ipv4Address) = default;
};

/// An address with a prefix length, e.g. 10.1.0.1/24.
struct Ipv4Prefix {
    Ipv4Address address;
    std::uint8_t length = 32;

    static std::optional<Ipv4Prefix> parse(std::string_view text) noexcept;
    std::string to_string() const;
    constexpr std::uint32_t mask() const noexcept {
        return length == 0 ? 0 : ~std::uint32_t{0} << (32 - length);
    }
    constexpr Ipv4Address network() const noexcept { return {address.value & mask()}; }
    constexpr bool contains(Ipv4Address a) const noexcept {
        return (a.value & mask()) == (address.value & mask());
    }
    friend constexpr auto operator<=>(const Ipv4Prefix&, const Ipv4Prefix&) = default;
};

struct Endpoint {
    Ipv4Address address;
    std::uint16_t port = 0;

    /// "a.b.c.d:port"; nullopt otherwise.
    static std::optional<Endpoint> parse(std::string_view text) noexcept;
    std::string to_string() const;
    friend constexpr auto operator<=>(const Endpoint&, const Endpoint&) = default;
};

}  // namespace mipsec::core

template <>
struct std::hash<mipsec::core::Ipv4Address> {
    std::size_t operator()(mipsec::core::Ipv4Address a) const noexcept {
        return std::hash<std::uint32_t>{}(a.value);
    }
};
template <>
struct std::hash<mipsec::core::Endpoint> {
    std::size_t operator()(const mipsec::core::Endpoint& e) const noexcept {
        return std::hash<std::uint64_t>{}((std::uint64_t{e.address.value} << 16) | e.port);
    }
};
