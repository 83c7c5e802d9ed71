// SPDX-License-Identifier: MIT
#pragma once
// Agent discovery (RFC 5944 §2): the Agent Advertisement is an ICMP Router Advertisement
// (RFC 1256, type 9) followed by the Mobility Agent Advertisement Extension (type 16) and
// optionally Prefix-Lengths (type 19) and one-byte padding (type 0); the Agent Solicitation is
// an ICMP Router Solicitation (type 10). All views start at the ICMP header.
//
// AgentAdvertisementView::check() guarantees the 8-byte ICMP header, type 9, an address
// entry size of at least 2 words and that the router address entries fit; find_mobility_ext()
// then walks the trailing extensions (a Length running past the end stops the walk). The MN
// recognises an advertisement by the presence of the type-16 extension (RFC 5944 §2.1).
// Stateless; no allocation.
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

#include "core/address.hpp"
#include "core/endian.hpp"

namespace mipsec::mip {

namespace discovery_extension {
inline constexpr std::uint8_t pad = 0;
inline constexpr std::uint8_t mobility_agent = 16;
inline constexpr std::uint8_t prefix_lengths = 19;
}  // namespace discovery_extension

inline constexpr core::Ipv4Address all_mobility_agents = core::Ipv4Address::from_octets(224, 0, 0, 11);

/// Mobility Agent Advertisement Extension (RFC 5944 §2.1.1): 8 + 4K bytes.
template <class Byte>
class BasicMobilityAgentExtView {
public:
    static constexpr std::size_t fixed_len = 8;
    static constexpr std::uint8_t flag_r = 0x80, flag_b = 0x40, flag_h = 0x20, flag_f = 0x10,
                                  flag_m = 0x08, flag_g = 0x04, flag_reserved = 0x02, flag_t = 0x01;
    static constexpr std::uint8_t flag2_u = 0x80, flag2_x = 0x40, flag2_i = 0x20;

    /// Type 16, Length >= 6 and 6 + 4K, whole extension present.
    static std::optional<BasicMobilityAgentExtView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < fixed_len || bytes[0] != discovery_extension::mobility_agent) return std::nullopt;
        const std::size_t length = bytes[1];
        if (length < 6 || (length - 6) % 4 != 0 || length + 2 > bytes.size()) return std::nullopt;
        return BasicMobilityAgentExtView(bytes.first(length + 2));
    }
    std::uint8_t length() const noexcept { return b_[1]; }
    std::uint16_t sequence_number() const noexcept { return core::load_be16(b_.data() + 2); }
    std::uint16_t registration_lifetime() const noexcept { return core::load_be16(b_.data() + 4); }
    std::uint8_t flags() const noexcept { return b_[6]; }
    std::uint8_t flags2() const noexcept { return b_[7]; }
    bool registration_required() const noexcept { return b_[6] & flag_r; }
    bool busy() const noexcept { return b_[6] & flag_b; }
    bool home_agent() const noexcept { return b_[6] & flag_h; }
    bool foreign_agent() const noexcept { return b_[6] & flag_f; }
    bool minimal_encapsulation() const noexcept { return b_[6] & flag_m; }
    bool gre() const noexcept { return b_[6] & flag_g; }
    bool reverse_tunnel() const noexcept { return b_[6] & flag_t; }
    bool udp_tunnelling() const noexcept { return b_[7] & flag2_u; }
    bool revocation() const noexcept { return b_[7] & flag2_x; }
    bool regional() const noexcept { return b_[7] & flag2_i; }
    std::size_t care_of_count() const noexcept { return (b_[1] - 6u) / 4; }
    /// i < care_of_count().
    core::Ipv4Address care_of_address(std::size_t i) const noexcept { return {core::load_be32(b_.data() + fixed_len + 4 * i)}; }
    std::span<Byte> bytes() const noexcept { return b_; }

    void set_sequence_number(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 2, v); }
    void set_registration_lifetime(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 4, v); }
    void set_flags(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[6] = v; }
    void set_flags2(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[7] = v; }

private:
    explicit BasicMobilityAgentExtView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using MobilityAgentExtView = BasicMobilityAgentExtView<const std::uint8_t>;
using MobilityAgentExtMutView = BasicMobilityAgentExtView<std::uint8_t>;

/// ICMP Router Advertisement carrying mobility extensions.
template <class Byte>
class BasicAgentAdvertisementView {
public:
    static constexpr std::size_t header_len = 8;
    static constexpr std::uint8_t icmp_type = 9;
    static constexpr std::uint8_t code_not_routing = 16;

    static std::optional<BasicAgentAdvertisementView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < header_len || bytes[0] != icmp_type) return std::nullopt;
        if (bytes[5] < 2) return std::nullopt;  // address entry size in 32-bit words
        const std::size_t entries = std::size_t{bytes[4]} * bytes[5] * 4;
        if (header_len + entries > bytes.size()) return std::nullopt;
        return BasicAgentAdvertisementView(bytes);
    }
    std::uint8_t type() const noexcept { return b_[0]; }
    std::uint8_t code() const noexcept { return b_[1]; }
    std::uint16_t checksum() const noexcept { return core::load_be16(b_.data() + 2); }
    std::uint8_t num_addrs() const noexcept { return b_[4]; }
    std::uint8_t addr_entry_size() const noexcept { return b_[5]; }
    std::uint16_t lifetime() const noexcept { return core::load_be16(b_.data() + 6); }
    core::Ipv4Address router_address(std::size_t i) const noexcept { return {core::load_be32(entry(i))}; }
    std::int32_t preference(std::size_t i) const noexcept { return static_cast<std::int32_t>(core::load_be32(entry(i) + 4)); }
    std::span<Byte> extensions() const noexcept { return b_.subspan(header_len + std::size_t{b_[4]} * b_[5] * 4); }
    std::span<Byte> message() const noexcept { return b_; }

    /// The first well-formed type-16 extension, if any; nullopt if the list is broken first.
    std::optional<BasicMobilityAgentExtView<Byte>> mobility_extension() const noexcept {
        auto ext = find(discovery_extension::mobility_agent);
        if (ext.empty()) return std::nullopt;
        return BasicMobilityAgentExtView<Byte>::check(ext);
    }
    /// Prefix-Lengths extension data (one byte per router address); empty if absent.
    std::span<Byte> prefix_lengths() const noexcept {
        auto ext = find(discovery_extension::prefix_lengths);
        return ext.empty() ? ext : ext.subspan(2);
    }

    void set_lifetime(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 6, v); }
    void set_checksum(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 2, v); }

private:
    explicit BasicAgentAdvertisementView(std::span<Byte> b) noexcept : b_(b) {}
    Byte* entry(std::size_t i) const noexcept { return b_.data() + header_len + i * b_[5] * 4; }
    std::span<Byte> find(std::uint8_t type) const noexcept {
        auto list = extensions();
        std::size_t pos = 0;
        while (pos < list.size()) {
            if (list[pos] == discovery_extension::pad) {
                ++pos;
                continue;
            }
            if (pos + 2 > list.size()) return {};
            const std::size_t total = 2 + std::size_t{list[pos + 1]};
            if (pos + total > list.size()) return {};
            if (list[pos] == type) return list.subspan(pos, total);
            pos += total;
        }
        return {};
    }
    std::span<Byte> b_;
};
using AgentAdvertisementView = BasicAgentAdvertisementView<const std::uint8_t>;
using AgentAdvertisementMutView = BasicAgentAdvertisementView<std::uint8_t>;

/// Value form of an Agent Advertisement: the ICMP fields, the MAAE and up to
/// `max_care_of` care-of addresses (more are counted but not stored).
struct AgentAdvertisement {
    static constexpr std::size_t max_care_of = 8;
    std::uint8_t code = 0;
    std::uint16_t lifetime = 1800;
    std::uint16_t sequence_number = 0;
    std::uint16_t registration_lifetime = 0;
    std::uint8_t flags = 0;
    std::uint8_t flags2 = 0;
    std::array<core::Ipv4Address, max_care_of> care_of{};
    std::size_t care_of_count = 0;  // as advertised
    std::optional<std::uint8_t> prefix_length;  // of the first router address, if advertised

    bool registration_required() const noexcept { return flags & MobilityAgentExtView::flag_r; }
    bool busy() const noexcept { return flags & MobilityAgentExtView::flag_b; }
    bool home_agent() const noexcept { return flags & MobilityAgentExtView::flag_h; }
    bool foreign_agent() const noexcept { return flags & MobilityAgentExtView::flag_f; }
    bool reverse_tunnel() const noexcept { return flags & MobilityAgentExtView::flag_t; }
    bool udp_tunnelling() const noexcept { return flags2 & MobilityAgentExtView::flag2_u; }

    /// nullopt if the message is not an advertisement with a mobility extension.
    static std::optional<AgentAdvertisement> parse(const AgentAdvertisementView& v) noexcept;
    /// Emits ICMP header (no router addresses), MAAE with min(care_of_count, max_care_of)
    /// addresses, and the ICMP checksum. Returns the length written, 0 if `out` is too small.
    std::size_t emit(std::span<std::uint8_t> out) const noexcept;
    std::size_t emitted_len() const noexcept;
};

/// Agent Solicitation = ICMP Router Solicitation (RFC 5944 §2.2, RFC 1256): 8 bytes.
template <class Byte>
class BasicAgentSolicitationView {
public:
    static constexpr std::size_t len = 8;
    static constexpr std::uint8_t icmp_type = 10;

    static std::optional<BasicAgentSolicitationView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < len || bytes[0] != icmp_type || bytes[1] != 0) return std::nullopt;
        return BasicAgentSolicitationView(bytes);
    }
    std::uint8_t type() const noexcept { return b_[0]; }
    std::uint8_t code() const noexcept { return b_[1]; }
    std::uint16_t checksum() const noexcept { return core::load_be16(b_.data() + 2); }
    std::uint32_t reserved() const noexcept { return core::load_be32(b_.data() + 4); }

private:
    explicit BasicAgentSolicitationView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using AgentSolicitationView = BasicAgentSolicitationView<const std::uint8_t>;

/// Writes an 8-byte Agent Solicitation with a valid checksum; out.size() >= 8.
void emit_agent_solicitation(std::span<std::uint8_t> out) noexcept;

}  // namespace mipsec::mip
