// SPDX-License-Identifier: MIT
#pragma once
// An ISAKMP message as a value: header plus the decoded payload list (RFC 2408 §3), with
// parse() from bytes and emit() into a caller buffer or a vector. emit() computes every
// Payload Length, the Next Payload chaining and the header's Next Payload and Length.
//
// Encryption (RFC 2408 §3.1 E flag, RFC 2409 Appendix B) stays outside the codec:
//   * parse() of a message with the E flag keeps the ciphertext (everything after the
//     header up to Length) in `encrypted_body` and decodes no payloads;
//   * parse_decrypted(header, plaintext) decodes the decrypted body. Bytes after the last
//     payload (Next Payload 0) are CBC padding and are ignored whatever their value
//     (RFC 2409 Appendix B: walk payload lengths, never trust the ciphertext length);
//   * emit_payloads() gives the plaintext chain to pad and encrypt; a Message with
//     `encrypted_body` set emits header + ciphertext as is.
// Plaintext messages are strict: header Length must equal the input size and the payload
// chain must end exactly at Length (TrailingData otherwise).
//
// Hash inputs (RFC 2409 §5, §5.4, §5.5): for received messages `wire` keeps the
// bytes parsed (header and payload chain, padding excluded) and each Payload records where
// it sat, so wire_body(i) is exactly SAi_b / IDii_b / Ni_b and wire_from(i) is the
// "all payloads after HASH" input of Quick Mode and Informational hashes. For payloads we
// send, emit_body() / emit_payloads() produce the identical bytes.
//
// Unknown payload types (no decoder here) are kept as UnknownPayload by default so the
// caller can report them (INVALID-PAYLOAD-TYPE); ParseOptions can reject them instead.
// Not thread-safe; plain value semantics. Allocates (control plane only).
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <variant>
#include <vector>

#include "core/result.hpp"
#include "ipsec/ike/isakmp_header.hpp"
#include "ipsec/ike/payloads.hpp"

namespace mipsec::ipsec::ike {

/// Where a parsed payload sat in Message::wire: offset of its generic header, total length.
struct WireRange {
    std::size_t offset = 0;
    std::size_t len = 0;
    friend constexpr bool operator==(const WireRange&, const WireRange&) = default;
};

struct Payload {
    PayloadBody body;
    WireRange wire{};  // set by parse; zero for payloads built locally

    Payload() = default;
    template <class T>
        requires std::is_constructible_v<PayloadBody, T&&> && (!std::is_same_v<std::remove_cvref_t<T>, Payload>)
    Payload(T&& b) : body(std::forward<T>(b)) {}  // NOLINT: implicit so lists read naturally

    std::uint8_t type() const noexcept { return payload_type_of(body); }
    template <class T>
    const T* get() const noexcept { return std::get_if<T>(&body); }
    template <class T>
    T* get() noexcept { return std::get_if<T>(&body); }
    /// Compares bodies only: where a payload came from is not part of its value.
    friend bool operator==(const Payload& a, const Payload& b) { return a.body == b.body; }
};

enum class UnknownPayloads : std::uint8_t {
    Keep,    // decode as UnknownPayload; the caller decides (and may notify)
    Reject,  // parse fails with Errc::UnknownPayloadType
};

struct ParseOptions {
    UnknownPayloads unknown = UnknownPayloads::Keep;
    /// Bound on top-level payloads per message (see PayloadIterator).
    std::size_t max_payloads = 64;
};

struct Message {
    IsakmpHeader header;            // next_payload / length are recomputed by emit()
    std::vector<Payload> payloads;  // plaintext chain in order
    Bytes encrypted_body;           // ciphertext after the header (E flag), see above
    Bytes wire;                     // bytes parse() decoded; empty for locally built messages

    template <class T>
    const T* find() const noexcept {
        for (const auto& p : payloads)
            if (const T* t = p.get<T>()) return t;
        return nullptr;
    }
    template <class T>
    std::vector<const T*> find_all() const {
        std::vector<const T*> out;
        for (const auto& p : payloads)
            if (const T* t = p.get<T>()) out.push_back(t);
        return out;
    }
    /// Index of the first payload of that type number, or payloads.size().
    std::size_t index_of(std::uint8_t type) const noexcept;
    bool has_unknown() const noexcept;

    /// Received bytes of payload i (generic header included) / its body / payload i up to
    /// the end of the last payload. Empty when the message was not parsed or i is out of range.
    std::span<const std::uint8_t> wire_payload(std::size_t i) const noexcept;
    std::span<const std::uint8_t> wire_body(std::size_t i) const noexcept;
    std::span<const std::uint8_t> wire_from(std::size_t i) const noexcept;

    /// Bytes emit() would write.
    core::Result<std::size_t> emitted_len() const;
    /// Writes the message to the front of `out`; returns its length. BufferTooSmall when it does
    /// not fit, InvalidArgument when a value does not fit its field.
    core::Result<std::size_t> emit(std::span<std::uint8_t> out) const;
    /// Appends the message to `out` (which may already hold e.g. a non-ESP marker).
    core::Result<void> emit(Bytes& out) const;

    /// Equal headers, payload bodies and ciphertext (`wire` and WireRanges are not compared).
    friend bool operator==(const Message& a, const Message& b) {
        return a.header == b.header && a.payloads == b.payloads && a.encrypted_body == b.encrypted_body;
    }
};

core::Result<Message> parse(std::span<const std::uint8_t> bytes, const ParseOptions& opts = {});
/// Decodes a decrypted body for `header` (as received, E flag set); trailing padding after the
/// last payload is ignored. The result's wire is header + chain, offsets as in parse().
core::Result<Message> parse_decrypted(const IsakmpHeader& header, std::span<const std::uint8_t> plaintext,
                                      const ParseOptions& opts = {});
/// Decodes a payload chain starting with `first_type`. Sets each WireRange relative to
/// `base_offset` + position in `chain`; on success *end (if given) is the chain's length.
core::Result<std::vector<Payload>> parse_payloads(std::span<const std::uint8_t> chain, std::uint8_t first_type,
                                                  const ParseOptions& opts = {}, std::size_t base_offset = 0,
                                                  std::size_t* end = nullptr);

/// The chain with generic headers, Payload Lengths and Next Payload fields (last = 0).
core::Result<std::size_t> emit_payloads(std::span<const Payload> payloads, std::span<std::uint8_t> out);
core::Result<void> emit_payloads(std::span<const Payload> payloads, Bytes& out);
/// Type of the first payload (the header's Next Payload), 0 when empty.
std::uint8_t first_payload_type(std::span<const Payload> payloads) noexcept;

}  // namespace mipsec::ipsec::ike
