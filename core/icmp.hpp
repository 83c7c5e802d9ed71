// SPDX-License-Identifier: MIT
#pragma once
// ICMP header view (RFC 792): type, code, checksum and the 4-byte rest-of-header, which
// check() guarantees; the message body follows. Echo identifier/sequence live in that rest,
// and so does the next-hop MTU of "fragmentation needed" (RFC 1191 §4).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

#include "core/checksum.hpp"
#include "core/endian.hpp"

namespace mipsec::core {

namespace icmp_type {
inline constexpr std::uint8_t echo_reply = 0;
inline constexpr std::uint8_t destination_unreachable = 3;
inline constexpr std::uint8_t echo_request = 8;
inline constexpr std::uint8_t router_advertisement = 9;
inline constexpr std::uint8_t router_solicitation = 10;
inline constexpr std::uint8_t time_exceeded = 11;
}  // namespace icmp_type

namespace icmp_code {
/// Destination unreachable: the packet needed fragmenting and had DF set (RFC 792); the
/// sender's next-hop MTU goes in the low 16 bits of the rest-of-header (RFC 1191 §4).
inline constexpr std::uint8_t fragmentation_needed = 4;
}  // namespace icmp_code

template <class Byte>
class BasicIcmpView {
public:
    static constexpr std::size_t header_len = 8;

    static std::optional<BasicIcmpView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < header_len) return std::nullopt;
        return BasicIcmpView(bytes);
    }

    std::uint8_t type() const noexcept { return b_[0]; }
    std::uint8_t code() const noexcept { return b_[1]; }
    std::uint16_t checksum() const noexcept { return load_be16(b_.data() + 2); }
    std::span<Byte> rest_of_header() const noexcept { return b_.subspan(4, 4); }
    std::uint16_t echo_identifier() const noexcept { return load_be16(b_.data() + 4); }
    std::uint16_t echo_sequence() const noexcept { return load_be16(b_.data() + 6); }
    /// Destination unreachable, fragmentation needed: the MTU of the next hop (RFC 1191 §4).
    std::uint16_t next_hop_mtu() const noexcept { return load_be16(b_.data() + 6); }
    std::span<Byte> body() const noexcept { return b_.subspan(header_len); }
    std::span<Byte> message() const noexcept { return b_; }
    bool checksum_valid() const noexcept { return internet_checksum(b_) == 0; }

    void set_type(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[0] = v; }
    void set_code(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[1] = v; }
    void set_checksum(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 2, v); }
    void set_echo_identifier(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 4, v); }
    void set_echo_sequence(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 6, v); }
    /// Also zeroes the unused 16 bits before it (RFC 1191 §4).
    void set_next_hop_mtu(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) {
        store_be16(b_.data() + 4, 0);
        store_be16(b_.data() + 6, v);
    }
    void update_checksum() const noexcept requires(!std::is_const_v<Byte>) {
        set_checksum(0);
        set_checksum(internet_checksum(b_));
    }

private:
    explicit BasicIcmpView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using IcmpView = BasicIcmpView<const std::uint8_t>;
using IcmpMutView = BasicIcmpView<std::uint8_t>;

}  // namespace mipsec::core
