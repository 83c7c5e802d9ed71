// SPDX-License-Identifier: MIT
#pragma once
// ESP wire format (RFC 4303 §2). EspView covers the clear part of an ESP packet: SPI and
// Sequence Number, then everything after them (IV, ciphertext, ICV) as opaque payload();
// check() guarantees only that the 8 header bytes are present, so spi()/seq() are safe after it.
// EspTrailer is the decrypted tail (Padding | Pad Length | Next Header, §2.4-2.6) and its
// padding rules. Views never own bytes; the span must outlive them.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <type_traits>

#include "core/endian.hpp"

namespace mipsec::ipsec {

template <class Byte>  // const std::uint8_t for reading, std::uint8_t for writing
class BasicEspView {
public:
    static constexpr std::size_t header_len = 8;  // SPI + sequence number (RFC 4303 §2)

    static std::optional<BasicEspView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < header_len) return std::nullopt;
        return BasicEspView(bytes);
    }

    std::uint32_t spi() const noexcept { return core::load_be32(b_.data()); }
    /// The low 32 bits of the sequence number when ESN is in use (§2.2.1).
    std::uint32_t seq() const noexcept { return core::load_be32(b_.data() + 4); }
    std::span<Byte> header() const noexcept { return b_.first(header_len); }
    /// IV, encrypted payload and trailer, ICV: their split depends on the SA's algorithms.
    std::span<Byte> payload() const noexcept { return b_.subspan(header_len); }
    std::span<Byte> bytes() const noexcept { return b_; }

    void set_spi(std::uint32_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data(), v); }
    void set_seq(std::uint32_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be32(b_.data() + 4, v); }

private:
    explicit BasicEspView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using EspView = BasicEspView<const std::uint8_t>;
using EspMutView = BasicEspView<std::uint8_t>;

/// Value form of the ESP header.
struct EspHeader {
    static constexpr std::size_t len = EspView::header_len;
    std::uint32_t spi = 0;
    std::uint32_t seq = 0;

    static EspHeader parse(const EspView& v) noexcept { return {v.spi(), v.seq()}; }
    /// Writes 8 bytes; out must hold at least `len` bytes.
    void emit(std::span<std::uint8_t> out) const noexcept {
        core::store_be32(out.data(), spi);
        core::store_be32(out.data() + 4, seq);
    }
    friend constexpr bool operator==(const EspHeader&, const EspHeader&) = default;
};

/// The two bytes after the padding (RFC 4303 §2.5-2.6) and the padding rules (§2.4).
struct EspTrailer {
    static constexpr std::size_t len = 2;  // Pad Length + Next Header
    static constexpr std::size_t max_pad_len = 255;
    std::uint8_t pad_length = 0;
    std::uint8_t next_header = 0;

    /// Reads the trailer from the end of a decrypted payload; nullopt if the bytes are too
    /// short for the trailer plus the padding it announces.
    static std::optional<EspTrailer> parse(std::span<const std::uint8_t> plaintext) noexcept {
        if (plaintext.size() < len) return std::nullopt;
        EspTrailer t{plaintext[plaintext.size() - 2], plaintext[plaintext.size() - 1]};
        if (std::size_t{t.pad_length} + len > plaintext.size()) return std::nullopt;
        return t;
    }
    /// Writes Pad Length and Next Header into the last two bytes of out (at least `len`).
    void emit(std::span<std::uint8_t> out) const noexcept {
        out[out.size() - 2] = pad_length;
        out[out.size() - 1] = next_header;
    }

    /// Minimal padding so that payload + padding + trailer is a multiple of `align` (a power
    /// of two: 16 for AES-CBC, 4 for AEAD so the ICV is 4-byte aligned, §2.4).
    static constexpr std::size_t pad_len_for(std::size_t payload_len, std::size_t align) noexcept {
        return (align - ((payload_len + len) & (align - 1))) & (align - 1);
    }
    /// The default padding content 1, 2, 3, ... (§2.4).
    static void fill_padding(std::span<std::uint8_t> pad) noexcept {
        for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = static_cast<std::uint8_t>(i + 1);
    }
    /// True if pad holds 1, 2, 3, ...; checked after the ICV has passed, so an attacker learns
    /// nothing from the time this takes.
    static bool padding_valid(std::span<const std::uint8_t> pad) noexcept {
        std::uint8_t diff = 0;
        for (std::size_t i = 0; i < pad.size(); ++i) diff |= static_cast<std::uint8_t>(pad[i] ^ static_cast<std::uint8_t>(i + 1));
        return diff == 0;
    }
};

}  // namespace mipsec::ipsec
