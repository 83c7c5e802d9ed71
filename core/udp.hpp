// SPDX-License-Identifier: MIT
#pragma once
// UDP header view (RFC 768). check() guarantees 8 header bytes and a Length field in
// [8, bytes.size()], so payload() is the datagram as the sender sized it.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

#include "core/endian.hpp"
#include "core/ipv4.hpp"

namespace mipsec::core {

template <class Byte>
class BasicUdpView {
public:
    static constexpr std::size_t header_len = 8;

    static std::optional<BasicUdpView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < header_len) return std::nullopt;
        std::size_t length = load_be16(bytes.data() + 4);
        if (length < header_len || length > bytes.size()) return std::nullopt;
        return BasicUdpView(bytes);
    }

    std::uint16_t source_port() const noexcept { return load_be16(b_.data()); }
    std::uint16_t destination_port() const noexcept { return load_be16(b_.data() + 2); }
    std::uint16_t length() const noexcept { return load_be16(b_.data() + 4); }
    std::uint16_t checksum() const noexcept { return load_be16(b_.data() + 6); }
    std::span<Byte> payload() const noexcept { return b_.subspan(header_len, length() - header_len); }
    std::span<Byte> datagram() const noexcept { return b_.first(length()); }
    /// True when the checksum is zero (not computed) or verifies against the pseudo-header.
    bool checksum_valid(Ipv4Address src, Ipv4Address dst) const noexcept {
        if (checksum() == 0) return true;
        return checksum_finish(checksum_partial(datagram(), pseudo_header_sum(src, dst, ip_protocol::udp, length()))) == 0;
    }

    void set_source_port(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data(), v); }
    void set_destination_port(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 2, v); }
    void set_length(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 4, v); }
    void set_checksum(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 6, v); }
    /// Computes the checksum over pseudo-header and datagram; 0 is sent as 0xFFFF (RFC 768).
    void update_checksum(Ipv4Address src, Ipv4Address dst) const noexcept requires(!std::is_const_v<Byte>) {
        set_checksum(0);
        std::uint16_t c = checksum_finish(checksum_partial(datagram(), pseudo_header_sum(src, dst, ip_protocol::udp, length())));
        set_checksum(c == 0 ? 0xFFFF : c);
    }

private:
    explicit BasicUdpView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using UdpView = BasicUdpView<const std::uint8_t>;
using UdpMutView = BasicUdpView<std::uint8_t>;

struct UdpHeader {
    static constexpr std::size_t len = 8;
    std::uint16_t source_port = 0;
    std::uint16_t destination_port = 0;
    std::uint16_t length = 0;
    std::uint16_t checksum = 0;

    static UdpHeader parse(const UdpView& v) noexcept {
        return {v.source_port(), v.destination_port(), v.length(), v.checksum()};
    }
    void emit(std::span<std::uint8_t> out) const noexcept {
        store_be16(out.data(), source_port);
        store_be16(out.data() + 2, destination_port);
        store_be16(out.data() + 4, length);
        store_be16(out.data() + 6, checksum);
    }
};

}  // namespace mipsec::core
