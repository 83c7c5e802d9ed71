// SPDX-License-Identifier: MIT
#pragma once
// IPv4 header view (RFC 791). check() validates once that the version is 4, the IHL is at
// least 5, and header and Total Length fit inside the bytes, so every accessor after it is
// in bounds. Bytes past Total Length (link padding) are not part of payload().
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

#include "core/address.hpp"
#include "core/checksum.hpp"
#include "core/drop_reason.hpp"
#include "core/packet_buf.hpp"
#include "core/endian.hpp"

namespace mipsec::core {

namespace ip_protocol {
inline constexpr std::uint8_t icmp = 1;
inline constexpr std::uint8_t ipip = 4;
inline constexpr std::uint8_t tcp = 6;
inline constexpr std::uint8_t udp = 17;
inline constexpr std::uint8_t gre = 47;
inline constexpr std::uint8_t esp = 50;
inline constexpr std::uint8_t minimal_encap = 55;
inline constexpr std::uint8_t no_next_header = 59;
}  // namespace ip_protocol

template <class Byte>
class BasicIpv4View {
public:
    static constexpr std::size_t min_header_len = 20;
    static constexpr std::uint16_t flag_df = 0x4000;
    static constexpr std::uint16_t flag_mf = 0x2000;

    static std::optional<BasicIpv4View> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < min_header_len) return std::nullopt;
        if ((bytes[0] >> 4) != 4) return std::nullopt;
        std::size_t header_len = std::size_t{bytes[0] & 0x0Fu} * 4;
        if (header_len < min_header_len || header_len > bytes.size()) return std::nullopt;
        std::size_t total = load_be16(bytes.data() + 2);
        if (total < header_len || total > bytes.size()) return std::nullopt;
        return BasicIpv4View(bytes);
    }

    std::uint8_t version() const noexcept { return b_[0] >> 4; }
    std::size_t header_len() const noexcept { return std::size_t{b_[0] & 0x0Fu} * 4; }
    std::uint8_t tos() const noexcept { return b_[1]; }
    std::uint16_t total_length() const noexcept { return load_be16(b_.data() + 2); }
    std::uint16_t identification() const noexcept { return load_be16(b_.data() + 4); }
    std::uint16_t flags_fragment() const noexcept { return load_be16(b_.data() + 6); }
    bool dont_fragment() const noexcept { return flags_fragment() & flag_df; }
    bool more_fragments() const noexcept { return flags_fragment() & flag_mf; }
    std::uint16_t fragment_offset() const noexcept { return flags_fragment() & 0x1FFF; }
    bool is_fragment() const noexcept { return more_fragments() || fragment_offset() != 0; }
    std::uint8_t ttl() const noexcept { return b_[8]; }
    std::uint8_t protocol() const noexcept { return b_[9]; }
    std::uint16_t checksum() const noexcept { return load_be16(b_.data() + 10); }
    Ipv4Address source() const noexcept { return {load_be32(b_.data() + 12)}; }
    Ipv4Address destination() const noexcept { return {load_be32(b_.data() + 16)}; }
    std::span<Byte> header() const noexcept { return b_.first(header_len()); }
    std::span<Byte> options() const noexcept { return b_.subspan(min_header_len, header_len() - min_header_len); }
    std::span<Byte> payload() const noexcept { return b_.subspan(header_len(), total_length() - header_len()); }
    /// The whole packet: header and payload up to Total Length.
    std::span<Byte> packet() const noexcept { return b_.first(total_length()); }
    bool checksum_valid() const noexcept { return internet_checksum(header()) == 0; }

    void set_tos(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[1] = v; }
    void set_total_length(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 2, v); }
    void set_identification(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 4, v); }
    void set_flags_fragment(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 6, v); }
    void set_ttl(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[8] = v; }
    void set_protocol(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[9] = v; }
    void set_checksum(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { store_be16(b_.data() + 10, v); }
    void set_source(Ipv4Address a) const noexcept requires(!std::is_const_v<Byte>) { store_be32(b_.data() + 12, a.value); }
    void set_destination(Ipv4Address a) const noexcept requires(!std::is_const_v<Byte>) { store_be32(b_.data() + 16, a.value); }
    void update_checksum() const noexcept requires(!std::is_const_v<Byte>) {
        set_checksum(0);
        set_checksum(internet_checksum(header()));
    }
    /// Decrements TTL and patches the checksum incrementally (RFC 1624).
    void decrement_ttl() const noexcept requires(!std::is_const_v<Byte>) {
        std::uint16_t old_word = load_be16(b_.data() + 8);
        b_[8] = static_cast<std::uint8_t>(b_[8] - 1);
        set_checksum(checksum_update16(checksum(), old_word, load_be16(b_.data() + 8)));
    }

private:
    explicit BasicIpv4View(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using Ipv4View = BasicIpv4View<const std::uint8_t>;
using Ipv4MutView = BasicIpv4View<std::uint8_t>;

/// Value form of an option-less IPv4 header, for building outer headers.
struct Ipv4Header {
    static constexpr std::size_t len = 20;
    std::uint8_t tos = 0;
    std::uint16_t total_length = 0;
    std::uint16_t identification = 0;
    std::uint16_t flags_fragment = 0;
    std::uint8_t ttl = 64;
    std::uint8_t protocol = 0;
    Ipv4Address source;
    Ipv4Address destination;

    static Ipv4Header parse(const Ipv4View& v) noexcept {
        return {v.tos(), v.total_length(), v.identification(), v.flags_fragment(), v.ttl(),
                v.protocol(), v.source(), v.destination()};
    }
    /// Writes 20 bytes with a correct header checksum; out must hold at least `len` bytes.
    void emit(std::span<std::uint8_t> out) const noexcept;
};

/// Why Ipv4View::check refused these bytes: Truncated when shorter than a header,
/// UnexpectedProtocol for another IP version (IPv6 from a TUN), Malformed otherwise.
DropReason ipv4_check_failure(std::span<const std::uint8_t> bytes) noexcept;
inline DropReason ipv4_check_failure(const PacketBuf& packet) noexcept { return ipv4_check_failure(packet.bytes()); }

/// Pseudo-header partial sum for UDP/TCP checksums (RFC 768).
std::uint32_t pseudo_header_sum(Ipv4Address src, Ipv4Address dst, std::uint8_t protocol,
                                std::uint16_t length) noexcept;

}  // namespace mipsec::core
