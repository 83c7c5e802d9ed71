// SPDX-License-Identifier: MIT
#pragma once
// The ISAKMP generic payload header (RFC 2408 §3.2) and a walker over a chain of them.
//   Next Payload (1) | Reserved (1) | Payload Length (2, includes these 4 bytes) | body
// The same chaining is used at three levels: the message's payloads, the Proposals inside an
// SA payload (next payload 2 or 0) and the Transforms inside a Proposal (3 or 0).
//
// GenericPayloadView::check() guarantees 4 bytes and a Payload Length in [4, bytes.size()].
// PayloadIterator::next() yields each payload of a chain until Next Payload 0 and stops with
// an error when a header is cut short (Truncated), a length is below 4 (InvalidLength), a
// length reaches past the enclosing bytes (PayloadPastEnd) or the chain has more payloads
// than its limit (TooManyPayloads). Every payload advances at least 4 bytes, so a chain
// cannot loop; the limit bounds the work per message. Allocation-free; the iterator only
// borrows the bytes. The Reserved byte is not checked (strongSwan ignores it too).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <system_error>
#include <type_traits>

#include "core/endian.hpp"

namespace mipsec::ipsec::ike {

template <class Byte>
class BasicGenericPayloadView {
public:
    static constexpr std::size_t header_len = 4;

    static std::optional<BasicGenericPayloadView> check(std::span<Byte> bytes) noexcept {
        if (bytes.size() < header_len) return std::nullopt;
        std::size_t length = core::load_be16(bytes.data() + 2);
        if (length < header_len || length > bytes.size()) return std::nullopt;
        return BasicGenericPayloadView(bytes);
    }

    std::uint8_t next_payload() const noexcept { return b_[0]; }
    std::uint8_t reserved() const noexcept { return b_[1]; }
    std::uint16_t payload_length() const noexcept { return core::load_be16(b_.data() + 2); }
    /// The payload without its generic header: what RFC 2409 calls e.g. SAi_b, Ni_b, IDii_b.
    std::span<Byte> body() const noexcept { return b_.subspan(header_len, payload_length() - header_len); }
    /// The whole payload, generic header included (the Quick Mode HASH input form).
    std::span<Byte> payload() const noexcept { return b_.first(payload_length()); }

    void set_next_payload(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[0] = v; }
    void set_reserved(std::uint8_t v) const noexcept requires(!std::is_const_v<Byte>) { b_[1] = v; }
    void set_payload_length(std::uint16_t v) const noexcept requires(!std::is_const_v<Byte>) { core::store_be16(b_.data() + 2, v); }

private:
    explicit BasicGenericPayloadView(std::span<Byte> b) noexcept : b_(b) {}
    std::span<Byte> b_;
};
using GenericPayloadView = BasicGenericPayloadView<const std::uint8_t>;
using GenericPayloadMutView = BasicGenericPayloadView<std::uint8_t>;

/// One payload found by PayloadIterator: its type (from the previous Next Payload field),
/// where it starts inside the walked bytes, and a view over it.
struct ChainEntry {
    std::uint8_t type;
    std::size_t offset;
    GenericPayloadView view;
};

class PayloadIterator {
public:
    /// Bound on payloads per chain. Real IKEv1 messages carry fewer than 16 top-level
    /// payloads; an SA may hold many transforms, but # Transforms is one byte.
    static constexpr std::size_t default_limit = 255;

    /// Walks `chain` whose first payload has type `first_type` (from the enclosing header).
    /// first_type 0 means an empty chain.
    PayloadIterator(std::span<const std::uint8_t> chain, std::uint8_t first_type,
                    std::size_t limit = default_limit) noexcept
        : bytes_(chain), next_type_(first_type), limit_(limit) {}

    /// The next payload; nullopt at the end of the chain or on error (see error()).
    std::optional<ChainEntry> next() noexcept;
    /// Set once the walk failed; the iterator then yields nothing more.
    std::error_code error() const noexcept { return error_; }
    /// True when a payload with Next Payload 0 was reached (or the chain was empty).
    bool finished() const noexcept { return next_type_ == 0 && !error_; }
    /// Offset just past the last payload yielded: bytes after it are not part of the chain.
    std::size_t end_offset() const noexcept { return offset_; }
    std::size_t count() const noexcept { return count_; }

private:
    std::span<const std::uint8_t> bytes_;
    std::size_t offset_ = 0;
    std::uint8_t next_type_;
    std::size_t limit_;
    std::size_t count_ = 0;
    std::error_code error_;
};

}  // namespace mipsec::ipsec::ike
