// SPDX-License-Identifier: MIT
#pragma once
// ISAKMP header (RFC 2408 §3.1), 28 bytes:
//   CKY-I (8) | CKY-R (8) | Next Payload | Version | Exchange Type | Flags | Message ID (4) | Length (4)
// check() guarantees 28 bytes and a Length field in [28, bytes.size()], so body() — the
// payload chain, or the ciphertext when the E flag is set — is in bounds. It does not judge
// the version; IsakmpHeader/parse() do (major version must be 1, RFC 2408 §5.2).
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

#include "core/endian.hpp"
#include "core/result.hpp"
#include "ipsec/ike/constants.hpp"

namespace mipsec::ipsec::ike {

using Cookie = std::array<std::uint8_t, 8>;

template <class Byte>
class BasicIsakmpHeaderView {
public:
    static constexpr std::size_t header_len = 28;

    static std::optional<BasicIsakmpHeaderView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < header_len) return std::nullopt;
        std::size_t length = core::load_be32(bytes.data() + 24);
        if (length < header_len || length > bytes.size()) return std::nullopt;
        return BasicIsakmpHeaderView(bytes);
    }

    std::span<Byte, 8> initiator_cookie() const noexcept { return b_.template subspan<0, 8>(); }
    std::span<Byte, 8> responder_cookie() const noexcept { return b_.template subspan<8, 8>(); }
    std::uint8_t next_payload() const noexcept { return b_[16]; }
    std::uint8_t version() const noexcept { return b_[17]; }
    std::uint8_t major_version() const noexcept { return b_[17] >> 4; }
    std::uint8_t minor_version() const noexcept { return b_[17] & 0x0F; }
    std::uint8_t exchange_type() const noexcept { return b_[18]; }
    std::uint8_t flags() const noexcept { return b_[19]; }
    bool encrypted() const noexcept { return flags() & header_flag::encryption; }
    bool commit() const noexcept { return flags() & header_flag::commit; }
    bool authentication_only() const noexcept { return flags() & header_flag::authentication_only; }
    std::uint32_t message_id() const noexcept { return core::load_be32(b_.data() + 20); }
    std::uint32_t length() const noexcept { return core::load_be32(b_.data() + 24); }
    std::span<Byte> header() const noexcept { return b_.first(header_len); }
    /// Everything after the header up to Length: the payload chain, or ciphertext and padding.
    std::span<Byte> body() const noexcept { return b_.subspan(header_len, length() - header_len); }
    std::span<Byte> message() const noexcept { return b_.first(length()); }

    void set_next_payload(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[16] = v; }
    void set_version(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[17] = v; }
    void set_exchange_type(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[18] = v; }
    void set_flags(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[19] = v; }
    void set_message_id(std::uint32_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data() + 20, v); }
    /// Does not re-check against the span: the caller sizes the message.
    void set_length(std::uint32_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data() + 24, v); }

private:
    explicit BasicIsakmpHeaderView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using IsakmpHeaderView = BasicIsakmpHeaderView<const std::uint8_t>;
using IsakmpHeaderMutView = BasicIsakmpHeaderView<std::uint8_t>;

struct IsakmpHeader {
    static constexpr std::size_t len = 28;
    Cookie initiator_cookie{};
    Cookie responder_cookie{};  // all zero in Main Mode message 1
    std::uint8_t next_payload = payload_type::none;
    std::uint8_t version = isakmp_version;
    std::uint8_t exchange_type = exchange_type::none;
    std::uint8_t flags = 0;
    std::uint32_t message_id = 0;
    std::uint32_t length = len;

    bool encrypted() const noexcept { return flags & header_flag::encryption; }
    bool commit() const noexcept { return flags & header_flag::commit; }
    /// CKY-I | CKY-R: the SPI of the ISAKMP SA in Notify (DPD) and Delete payloads (RFC 2408 §3.15).
    std::array<std::uint8_t, 16> cookies() const noexcept;

    static IsakmpHeader parse(const IsakmpHeaderView& v) noexcept;
    /// Writes the 28 bytes as they are (no field is recomputed); BufferTooSmall if out is shorter.
    core::Result<std::size_t> emit(std::span<std::uint8_t> out) const noexcept;
    friend bool operator==(const IsakmpHeader&, const IsakmpHeader&) = default;
};

}  // namespace mipsec::ipsec::ike
