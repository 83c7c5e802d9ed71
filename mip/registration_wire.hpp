// SPDX-License-Identifier: MIT
#pragma once
// Mobile IPv4 registration messages on UDP port 434 (RFC 5944 §3.3-3.5, RFC 3519 §3, RFC 2794).
//
// Views over the UDP payload: check() validates the fixed header length and
// the Type byte once, after which every accessor is in bounds. Extensions are walked by
// ExtensionReader, which dispatches on the type *before* reading a length because three
// encodings share one list (RFC 5944 §1.9-§1.11): one-byte pad (type 0), long (types 36 and 38: 16-bit
// Length at offset 2) and the simple/short TLV (Length at offset 1). The list ends at the end of
// the UDP payload. scan_extensions() applies the RFC 5944 §3.6.1.3/§3.8.3.1 skipping rule for one
// message type: an unrecognised type 0-127 rejects the whole message, 128-255 is skipped.
//
// Authentication extensions (32/33/34) cover the payload from its first byte through the
// extension's own Type, Length and SPI (RFC 5944 §3.5.1); authenticated_bytes() returns exactly
// that span. Builders emit a request/reply with the HA-visible extensions first and the MHAE
// last (RFC 5944 §3.6.1.3 order), HMAC-MD5 keyed with the mobility security association.
// Views, structs and builders hold no state and never allocate (the HMAC object aside).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>

#include "core/address.hpp"
#include "core/endian.hpp"
#include "core/result.hpp"

namespace mipsec::crypto {
class Mac;
}

namespace mipsec::mip {

inline constexpr std::uint16_t registration_port = 434;

namespace message_type {
inline constexpr std::uint8_t registration_request = 1;
inline constexpr std::uint8_t registration_reply = 3;
inline constexpr std::uint8_t tunnel_data = 4;  // RFC 3519 §3.3
}  // namespace message_type

namespace extension_type {
inline constexpr std::uint8_t pad = 0;
inline constexpr std::uint8_t mobile_home_auth = 32;
inline constexpr std::uint8_t mobile_foreign_auth = 33;
inline constexpr std::uint8_t foreign_home_auth = 34;
inline constexpr std::uint8_t generalized_auth = 36;  // RFC 3012, long encoding
inline constexpr std::uint8_t cvse = 38;              // RFC 3115, long encoding
inline constexpr std::uint8_t udp_tunnel_reply = 44;  // RFC 3519 §3.2
inline constexpr std::uint8_t encapsulating_delivery = 130;  // RFC 3024 §5
inline constexpr std::uint8_t mn_nai = 131;            // RFC 2794 §2
inline constexpr std::uint8_t udp_tunnel_request = 144;  // RFC 3519 §3.1
inline constexpr std::uint8_t trusted_networks = 149;    // RFC 5265 §5
}  // namespace extension_type

/// Registration Reply codes used here (RFC 5944 §3.4, RFC 3024 §3.4, RFC 3519 §3.2).
namespace reply_code {
inline constexpr std::uint8_t accepted = 0;
inline constexpr std::uint8_t accepted_no_simultaneous = 1;
inline constexpr std::uint8_t fa_lifetime_too_long = 69;
inline constexpr std::uint8_t fa_poorly_formed = 70;
inline constexpr std::uint8_t ha_unspecified = 128;
inline constexpr std::uint8_t ha_prohibited = 129;
inline constexpr std::uint8_t ha_insufficient_resources = 130;
inline constexpr std::uint8_t ha_mn_auth_failed = 131;
inline constexpr std::uint8_t ha_fa_auth_failed = 132;
inline constexpr std::uint8_t ha_identification_mismatch = 133;
inline constexpr std::uint8_t ha_poorly_formed = 134;
inline constexpr std::uint8_t ha_too_many_bindings = 135;
inline constexpr std::uint8_t ha_unknown_home_agent = 136;
inline constexpr std::uint8_t ha_reverse_tunnel_unavailable = 137;
inline constexpr std::uint8_t ha_reverse_tunnel_mandatory = 138;
inline constexpr std::uint8_t ha_encapsulation_unavailable = 139;
inline constexpr std::uint8_t ha_udp_encapsulation_unavailable = 142;
}  // namespace reply_code

constexpr bool is_accepted(std::uint8_t code) noexcept { return code < 64; }
constexpr bool is_fa_denial(std::uint8_t code) noexcept { return code >= 64 && code < 128; }

// ---------------------------------------------------------------------------------------------
// Registration Request (type 1), RFC 5944 §3.3

template <class Byte>
class BasicRegistrationRequestView {
public:
    static constexpr std::size_t header_len = 24;
    static constexpr std::uint8_t flag_s = 0x80;  // simultaneous bindings
    static constexpr std::uint8_t flag_b = 0x40;  // broadcast datagrams
    static constexpr std::uint8_t flag_d = 0x20;  // decapsulation by MN (co-located CoA)
    static constexpr std::uint8_t flag_m = 0x10;  // minimal encapsulation
    static constexpr std::uint8_t flag_g = 0x08;  // GRE
    static constexpr std::uint8_t flag_r = 0x04;  // reserved, sent as 0
    static constexpr std::uint8_t flag_t = 0x02;  // reverse tunnelling (RFC 3024)
    static constexpr std::uint8_t flag_x = 0x01;  // reserved, sent as 0
    static constexpr std::uint8_t reserved_flags = flag_r | flag_x;

    /// The payload must hold the 24-byte fixed part and start with Type 1.
    static std::optional<BasicRegistrationRequestView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < header_len || bytes[0] != message_type::registration_request) return std::nullopt;
        return BasicRegistrationRequestView(bytes);
    }

    std::uint8_t type() const noexcept { return b_[0]; }
    std::uint8_t flags() const noexcept { return b_[1]; }
    bool simultaneous_bindings() const noexcept { return b_[1] & flag_s; }
    bool broadcast() const noexcept { return b_[1] & flag_b; }
    bool decapsulation_by_mn() const noexcept { return b_[1] & flag_d; }
    bool minimal_encapsulation() const noexcept { return b_[1] & flag_m; }
    bool gre() const noexcept { return b_[1] & flag_g; }
    bool reverse_tunnel() const noexcept { return b_[1] & flag_t; }
    std::uint16_t lifetime() const noexcept { return core::load_be16(b_.data() + 2); }
    core::Ipv4Address home_address() const noexcept { return {core::load_be32(b_.data() + 4)}; }
    core::Ipv4Address home_agent() const noexcept { return {core::load_be32(b_.data() + 8)}; }
    core::Ipv4Address care_of_address() const noexcept { return {core::load_be32(b_.data() + 12)}; }
    std::uint64_t identification() const noexcept { return core::load_be64(b_.data() + 16); }
    std::span<Byte> extensions() const noexcept { return b_.subspan(header_len); }
    std::span<Byte> message() const noexcept { return b_; }

    void set_type(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[0] = v; }
    void set_flags(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[1] = v; }
    void set_lifetime(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 2, v); }
    void set_home_address(core::Ipv4Address a) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data() + 4, a.value); }
    void set_home_agent(core::Ipv4Address a) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data() + 8, a.value); }
    void set_care_of_address(core::Ipv4Address a) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data() + 12, a.value); }
    void set_identification(std::uint64_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be64(b_.data() + 16, v); }

private:
    explicit BasicRegistrationRequestView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using RegistrationRequestView = BasicRegistrationRequestView<const std::uint8_t>;
using RegistrationRequestMutView = BasicRegistrationRequestView<std::uint8_t>;

/// Value form of the fixed part of a Registration Request.
struct RegistrationRequest {
    static constexpr std::size_t len = RegistrationRequestView::header_len;
    std::uint8_t flags = 0;
    std::uint16_t lifetime = 0;
    core::Ipv4Address home_address;
    core::Ipv4Address home_agent;
    core::Ipv4Address care_of_address;
    std::uint64_t identification = 0;

    static RegistrationRequest parse(const RegistrationRequestView& v) noexcept {
        return {v.flags(), v.lifetime(), v.home_address(), v.home_agent(), v.care_of_address(), v.identification()};
    }
    /// Writes the 24-byte fixed part; out must hold at least `len` bytes.
    void emit(std::span<std::uint8_t> out) const noexcept;
    friend bool operator==(const RegistrationRequest&, const RegistrationRequest&) = default;
};

// ---------------------------------------------------------------------------------------------
// Registration Reply (type 3), RFC 5944 §3.4

template <class Byte>
class BasicRegistrationReplyView {
public:
    static constexpr std::size_t header_len = 20;

    static std::optional<BasicRegistrationReplyView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < header_len || bytes[0] != message_type::registration_reply) return std::nullopt;
        return BasicRegistrationReplyView(bytes);
    }

    std::uint8_t type() const noexcept { return b_[0]; }
    std::uint8_t code() const noexcept { return b_[1]; }
    std::uint16_t lifetime() const noexcept { return core::load_be16(b_.data() + 2); }
    core::Ipv4Address home_address() const noexcept { return {core::load_be32(b_.data() + 4)}; }
    core::Ipv4Address home_agent() const noexcept { return {core::load_be32(b_.data() + 8)}; }
    std::uint64_t identification() const noexcept { return core::load_be64(b_.data() + 12); }
    std::span<Byte> extensions() const noexcept { return b_.subspan(header_len); }
    std::span<Byte> message() const noexcept { return b_; }

    void set_type(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[0] = v; }
    void set_code(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[1] = v; }
    void set_lifetime(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 2, v); }
    void set_home_address(core::Ipv4Address a) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data() + 4, a.value); }
    void set_home_agent(core::Ipv4Address a) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data() + 8, a.value); }
    void set_identification(std::uint64_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be64(b_.data() + 12, v); }

private:
    explicit BasicRegistrationReplyView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using RegistrationReplyView = BasicRegistrationReplyView<const std::uint8_t>;
using RegistrationReplyMutView = BasicRegistrationReplyView<std::uint8_t>;

struct RegistrationReply {
    static constexpr std::size_t len = RegistrationReplyView::header_len;
    std::uint8_t code = 0;
    std::uint16_t lifetime = 0;
    core::Ipv4Address home_address;
    core::Ipv4Address home_agent;
    std::uint64_t identification = 0;

    static RegistrationReply parse(const RegistrationReplyView& v) noexcept {
        return {v.code(), v.lifetime(), v.home_address(), v.home_agent(), v.identification()};
    }
    void emit(std::span<std::uint8_t> out) const noexcept;
    friend bool operator==(const RegistrationReply&, const RegistrationReply&) = default;
};

// ---------------------------------------------------------------------------------------------
// Extensions

enum class ExtensionEncoding : std::uint8_t { Pad, Simple, Long };

/// The layout a type uses; the reader needs it before it can find the Length field.
constexpr ExtensionEncoding encoding_of(std::uint8_t type) noexcept {
    if (type == extension_type::pad) return ExtensionEncoding::Pad;
    if (type == extension_type::generalized_auth || type == extension_type::cvse) return ExtensionEncoding::Long;
    return ExtensionEncoding::Simple;
}
/// RFC 5944 §1.9: types 128-255 may be skipped by a receiver that does not know them.
constexpr bool is_skippable(std::uint8_t type) noexcept { return type >= 128; }

/// One extension inside a message. `offset` is from the start of the span the reader walks
/// (the extension list); `bytes` is the whole extension, `data` the part after the Length
/// field (for the long encoding: after Sub-Type and the 16-bit Length).
struct Extension {
    std::uint8_t type = 0;
    ExtensionEncoding encoding = ExtensionEncoding::Simple;
    std::uint8_t sub_type = 0;  // long encoding only
    std::size_t offset = 0;
    std::span<const std::uint8_t> bytes;
    std::span<const std::uint8_t> data;
};

/// Walks an extension list. next() yields each extension in order (pads included) until the
/// end; a length running past the end stops the walk with truncated() set.
class ExtensionReader {
public:
    explicit ExtensionReader(std::span<const std::uint8_t> list) noexcept : list_(list) {}
    std::optional<Extension> next() noexcept;
    bool truncated() const noexcept { return truncated_; }
    bool at_end() const noexcept { return pos_ >= list_.size(); }

private:
    std::span<const std::uint8_t> list_;
    std::size_t pos_ = 0;
    bool truncated_ = false;
};

/// Authentication extension 32/33/34 (RFC 5944 §3.5.2-3.5.4): Type, Length = 4 + n, SPI,
/// Authenticator. check() guarantees Length >= 4 and that the bytes hold the whole extension.
template <class Byte>
class BasicAuthExtensionView {
public:
    static constexpr std::size_t fixed_len = 6;  // Type, Length, SPI

    static std::optional<BasicAuthExtensionView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < fixed_len) return std::nullopt;
        if (bytes[1] < 4 || std::size_t{bytes[1]} + 2 > bytes.size()) return std::nullopt;
        return BasicAuthExtensionView(bytes.first(std::size_t{bytes[1]} + 2));
    }
    std::uint8_t type() const noexcept { return b_[0]; }
    std::uint8_t length() const noexcept { return b_[1]; }
    std::uint32_t spi() const noexcept { return core::load_be32(b_.data() + 2); }
    std::span<Byte> authenticator() const noexcept { return b_.subspan(fixed_len); }
    std::span<Byte> bytes() const noexcept { return b_; }

    void set_spi(std::uint32_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data() + 2, v); }

private:
    explicit BasicAuthExtensionView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using AuthExtensionView = BasicAuthExtensionView<const std::uint8_t>;
using AuthExtensionMutView = BasicAuthExtensionView<std::uint8_t>;

/// UDP Tunnel Request extension (type 144, RFC 3519 §3.1), 8 bytes.
template <class Byte>
class BasicUdpTunnelRequestView {
public:
    static constexpr std::size_t len = 8;
    static constexpr std::uint8_t length_value = 6;
    static constexpr std::uint8_t flag_f = 0x80;  // force UDP tunnelling
    static constexpr std::uint8_t flag_r = 0x40;  // registered through an FA that set R

    /// Type 144, Length 6 and 8 bytes; Reserved 3 is *not* checked here (see reserved3_valid).
    static std::optional<BasicUdpTunnelRequestView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < len || bytes[0] != extension_type::udp_tunnel_request || bytes[1] != length_value)
            return std::nullopt;
        return BasicUdpTunnelRequestView(bytes.first(len));
    }
    std::uint8_t sub_type() const noexcept { return b_[2]; }
    std::uint8_t reserved1() const noexcept { return b_[3]; }
    std::uint8_t flags() const noexcept { return b_[4]; }
    bool force() const noexcept { return b_[4] & flag_f; }
    bool registered_via_fa() const noexcept { return b_[4] & flag_r; }
    std::uint8_t encapsulation() const noexcept { return b_[5]; }
    std::uint16_t reserved3() const noexcept { return core::load_be16(b_.data() + 6); }
    /// RFC 3519 §3.1: a non-zero Reserved 3 means "treat the extension as not understood".
    bool reserved3_valid() const noexcept { return reserved3() == 0; }

    void set_flags(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[4] = v; }
    void set_encapsulation(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[5] = v; }
    void set_reserved3(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 6, v); }

private:
    explicit BasicUdpTunnelRequestView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using UdpTunnelRequestView = BasicUdpTunnelRequestView<const std::uint8_t>;
using UdpTunnelRequestMutView = BasicUdpTunnelRequestView<std::uint8_t>;

struct UdpTunnelRequest {
    static constexpr std::size_t len = UdpTunnelRequestView::len;
    bool force = false;
    bool registered_via_fa = false;
    std::uint8_t encapsulation = 4;  // 0 = from M/G bits, 4 IP-in-UDP, 47 GRE, 55 minimal

    static UdpTunnelRequest parse(const UdpTunnelRequestView& v) noexcept {
        return {v.force(), v.registered_via_fa(), v.encapsulation()};
    }
    void emit(std::span<std::uint8_t> out) const noexcept;
    friend bool operator==(const UdpTunnelRequest&, const UdpTunnelRequest&) = default;
};

/// UDP Tunnel Reply extension (type 44, RFC 3519 §3.2), 8 bytes.
template <class Byte>
class BasicUdpTunnelReplyView {
public:
    static constexpr std::size_t len = 8;
    static constexpr std::uint8_t length_value = 6;
    static constexpr std::uint16_t flag_f = 0x8000;

    static std::optional<BasicUdpTunnelReplyView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < len || bytes[0] != extension_type::udp_tunnel_reply || bytes[1] != length_value)
            return std::nullopt;
        return BasicUdpTunnelReplyView(bytes.first(len));
    }
    std::uint8_t sub_type() const noexcept { return b_[2]; }
    std::uint8_t reply_code() const noexcept { return b_[3]; }
    /// Reply codes 0-63 assent, 64-255 decline.
    bool assents() const noexcept { return b_[3] < 64; }
    bool forced() const noexcept { return core::load_be16(b_.data() + 4) & flag_f; }
    std::uint16_t keepalive_interval() const noexcept { return core::load_be16(b_.data() + 6); }

    void set_reply_code(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[3] = v; }
    void set_keepalive_interval(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 6, v); }

private:
    explicit BasicUdpTunnelReplyView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using UdpTunnelReplyView = BasicUdpTunnelReplyView<const std::uint8_t>;
using UdpTunnelReplyMutView = BasicUdpTunnelReplyView<std::uint8_t>;

struct UdpTunnelReply {
    static constexpr std::size_t len = UdpTunnelReplyView::len;
    static constexpr std::uint8_t code_assent = 0;
    static constexpr std::uint8_t code_declined = 64;
    std::uint8_t reply_code = 0;
    bool forced = false;
    std::uint16_t keepalive_interval = 0;

    static UdpTunnelReply parse(const UdpTunnelReplyView& v) noexcept {
        return {v.reply_code(), v.forced(), v.keepalive_interval()};
    }
    bool assents() const noexcept { return reply_code < 64; }
    void emit(std::span<std::uint8_t> out) const noexcept;
    friend bool operator==(const UdpTunnelReply&, const UdpTunnelReply&) = default;
};

/// Trusted Networks Configured extension (type 149, RFC 5265 §5), 4 bytes: Type, Length = 2,
/// Sub-Type = 0, Reserved (sent 0, ignored on receipt). An internal home agent puts it in every
/// reply to a request from one of its trusted networks; it proves "inside" only when the MHAE
/// covers it, i.e. it comes before the MHAE (RFC 5944 §3.5.1).
template <class Byte>
class BasicTrustedNetworksView {
public:
    static constexpr std::size_t len = 4;
    static constexpr std::uint8_t length_value = 2;
    static constexpr std::uint8_t sub_type_value = 0;

    /// Type 149, Length 2 and 4 bytes; the Sub-Type is *not* checked here (see known_sub_type).
    static std::optional<BasicTrustedNetworksView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < len || bytes[0] != extension_type::trusted_networks || bytes[1] != length_value)
            return std::nullopt;
        return BasicTrustedNetworksView(bytes.first(len));
    }
    std::uint8_t sub_type() const noexcept { return b_[2]; }
    std::uint8_t reserved() const noexcept { return b_[3]; }
    /// RFC 5265 §5 defines Sub-Type 0 only; another one is an extension we do not understand.
    bool known_sub_type() const noexcept { return b_[2] == sub_type_value; }

    void set_sub_type(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[2] = v; }
    void set_reserved(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[3] = v; }

private:
    explicit BasicTrustedNetworksView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using TrustedNetworksView = BasicTrustedNetworksView<const std::uint8_t>;
using TrustedNetworksMutView = BasicTrustedNetworksView<std::uint8_t>;

/// Value form of the TNC extension: it carries no data, so parse() is a validity check.
struct TrustedNetworks {
    static constexpr std::size_t len = TrustedNetworksView::len;
    static std::optional<TrustedNetworks> parse(const TrustedNetworksView& v) noexcept {
        if (!v.known_sub_type()) return std::nullopt;
        return TrustedNetworks{};
    }
    /// Writes Type 149, Length 2, Sub-Type 0, Reserved 0; out must hold `len` bytes.
    void emit(std::span<std::uint8_t> out) const noexcept;
    friend bool operator==(const TrustedNetworks&, const TrustedNetworks&) = default;
};

/// MIP Tunnel Data header (type 4, RFC 3519 §3.3): Type, Next Header, Reserved (2).
template <class Byte>
class BasicTunnelDataView {
public:
    static constexpr std::size_t header_len = 4;

    static std::optional<BasicTunnelDataView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < header_len || bytes[0] != message_type::tunnel_data) return std::nullopt;
        return BasicTunnelDataView(bytes);
    }
    std::uint8_t type() const noexcept { return b_[0]; }
    std::uint8_t next_header() const noexcept { return b_[1]; }
    std::uint16_t reserved() const noexcept { return core::load_be16(b_.data() + 2); }
    std::span<Byte> payload() const noexcept { return b_.subspan(header_len); }

    void set_type(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[0] = v; }
    void set_next_header(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[1] = v; }
    void set_reserved(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 2, v); }

private:
    explicit BasicTunnelDataView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using TunnelDataView = BasicTunnelDataView<const std::uint8_t>;
using TunnelDataMutView = BasicTunnelDataView<std::uint8_t>;

struct TunnelDataHeader {
    static constexpr std::size_t len = TunnelDataView::header_len;
    std::uint8_t next_header = 4;
    std::uint16_t reserved = 0;
    static TunnelDataHeader parse(const TunnelDataView& v) noexcept { return {v.next_header(), v.reserved()}; }
    void emit(std::span<std::uint8_t> out) const noexcept {
        out[0] = message_type::tunnel_data;
        out[1] = next_header;
        core::store_be16(out.data() + 2, reserved);
    }
    friend bool operator==(const TunnelDataHeader&, const TunnelDataHeader&) = default;
};

// ---------------------------------------------------------------------------------------------
// Scanning a whole message's extension list

enum class MessageKind : std::uint8_t { Request, Reply };

/// Where an authentication extension sits: `offset` from the start of the message.
struct AuthLocation {
    std::size_t offset = 0;
    std::uint32_t spi = 0;
    std::span<const std::uint8_t> authenticator;
};

/// The extensions of one registration message that this implementation understands.
/// Extensions "before the MHAE" are the ones the MHAE authenticates (RFC 5944 §3.5.1).
struct ScannedExtensions {
    std::optional<AuthLocation> mobile_home_auth;  // the first type-32 extension
    std::uint8_t mobile_home_auth_count = 0;
    std::optional<AuthLocation> mobile_foreign_auth;
    std::optional<AuthLocation> foreign_home_auth;
    std::span<const std::uint8_t> nai;                // 131 data; empty if absent
    bool nai_present = false;
    bool nai_before_mhae = false;
    std::span<const std::uint8_t> udp_tunnel_request;  // whole 144 extension (8 bytes); empty if absent
    bool udp_tunnel_request_before_mhae = false;
    bool udp_tunnel_request_ignored = false;          // present but Reserved 3 != 0 or bad length
    std::span<const std::uint8_t> udp_tunnel_reply;    // whole 44 extension; empty if absent
    bool trusted_networks = false;                    // a well-formed 149 (RFC 5265 §5) is present
    bool trusted_networks_before_mhae = false;        // ... and the MHAE covers it
    bool trusted_networks_ignored = false;            // a 149 with a wrong Length or unknown Sub-Type, skipped

    /// RFC 5265 §5, §6: only a TNC the mobile-home authenticator covers says anything; one
    /// after the MHAE may have been added by anyone on the path (an FA, an attacker).
    bool trusted_networks_authenticated() const noexcept { return trusted_networks && trusted_networks_before_mhae; }
};

enum class ScanError : std::uint8_t {
    Truncated,            // a length runs past the end of the message
    UnknownNonSkippable,  // unrecognised type 0-127: discard the whole message
    Malformed,            // a recognised extension with an impossible length
};

/// Applies the skip-or-reject rule for `kind` to the list after the fixed header of
/// `message`; offsets in the result are relative to `message`.
std::optional<ScanError> scan_extensions(std::span<const std::uint8_t> message, std::size_t header_len,
                                         MessageKind kind, ScannedExtensions& out) noexcept;

// ---------------------------------------------------------------------------------------------
// Authentication and builders

/// A mobility security association's key material as used on the wire: SPI + HMAC-MD5 key.
/// `context`, if set, is an HMAC-MD5 context re-keyed for this message instead of a new one
/// built (an agent answering many mobile nodes keeps one).
struct AuthKey {
    std::uint32_t spi = 0;
    std::span<const std::uint8_t> key;
    crypto::Mac* context = nullptr;
};

inline constexpr std::size_t hmac_md5_len = 16;
inline constexpr std::size_t mhae_len = 2 + 4 + hmac_md5_len;  // 22

/// RFC 5944 §3.5.1: everything from the first byte of the message through the SPI of the
/// authentication extension at `auth_offset`.
std::span<const std::uint8_t> authenticated_bytes(std::span<const std::uint8_t> message, std::size_t auth_offset) noexcept;

/// HMAC-MD5(key, covered) into out (16 bytes). False if the MAC could not be created. With
/// `context` (an HMAC-MD5 Mac), that context is re-keyed and used instead of a new one.
bool compute_authenticator(std::span<const std::uint8_t> key, std::span<const std::uint8_t> covered,
                           std::span<std::uint8_t, hmac_md5_len> out, crypto::Mac* context = nullptr) noexcept;

/// Verifies the authentication extension at `auth` inside `message` with HMAC-MD5 in
/// constant time; a wrong length authenticator fails. `context` as for compute_authenticator.
bool verify_authenticator(std::span<const std::uint8_t> message, const AuthLocation& auth,
                          std::span<const std::uint8_t> key, crypto::Mac* context = nullptr) noexcept;

/// Largest message a builder emits: header, NAI (255), tunnel ext, TNC, MHAE.
inline constexpr std::size_t max_message_len = 24 + 2 + 255 + 8 + 4 + mhae_len;

/// A built message in fixed storage (no allocation).
struct Message {
    std::array<std::uint8_t, max_message_len> storage{};
    std::size_t len = 0;
    std::span<const std::uint8_t> bytes() const noexcept { return {storage.data(), len}; }
    std::span<std::uint8_t> mutable_bytes() noexcept { return {storage.data(), len}; }
};

struct RequestExtensions {
    std::string_view nai;                            // empty: no NAI extension
    std::optional<UdpTunnelRequest> udp_tunnel;
};

struct ReplyExtensions {
    std::string_view nai;
    std::optional<UdpTunnelReply> udp_tunnel;
    bool trusted_networks = false;
};

/// Emits a request: fixed part, NAI, UDP Tunnel Request, then the MHAE (RFC 5944 §3.6.1.3
/// order: HA-bound extensions first so the MHAE covers them). Errors: InvalidArgument for a
/// NAI longer than 255 bytes; Unsupported if HMAC-MD5 is unavailable.
core::Result<Message> build_request(const RegistrationRequest& request, const RequestExtensions& extensions,
                                    const AuthKey& auth);
core::Result<Message> build_reply(const RegistrationReply& reply, const ReplyExtensions& extensions,
                                  const AuthKey& auth);

}  // namespace mipsec::mip
