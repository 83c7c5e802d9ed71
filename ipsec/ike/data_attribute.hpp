// SPDX-License-Identifier: MIT
#pragma once
// ISAKMP data attributes (RFC 2408 §3.3), used in Transforms and Mode Config payloads:
//   TV : | 1 | type (15 bits) | value (2) |
//   TLV: | 0 | type (15 bits) | length (2) | value (length) |
// DataAttributeView::check() guarantees the 4-byte head and, for TLV, the value in bounds.
// DataAttribute keeps the form it was received in, so parse/emit round-trips byte for byte;
// AttributeList is the ordered list a Transform or an Attribute payload carries.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/endian.hpp"
#include "core/result.hpp"

namespace mipsec::ipsec::ike {

class ByteWriter;
using Bytes = std::vector<std::uint8_t>;

class DataAttributeView {
public:
    static constexpr std::size_t head_len = 4;
    static constexpr std::uint16_t af_bit = 0x8000;  // Attribute Format: 1 = TV

    static std::optional<DataAttributeView> check(std::span<const std::uint8_t> bytes) noexcept {
        if (bytes.size() < head_len) return std::nullopt;
        DataAttributeView v(bytes);
        if (v.total_len() > bytes.size()) return std::nullopt;
        return v;
    }

    bool is_tv() const noexcept { return core::load_be16(b_.data()) & af_bit; }
    std::uint16_t type() const noexcept { return core::load_be16(b_.data()) & 0x7FFF; }
    /// TV: the 2-byte value; TLV: Length bytes after the head.
    std::span<const std::uint8_t> value() const noexcept {
        return is_tv() ? b_.subspan(2, 2) : b_.subspan(head_len, core::load_be16(b_.data() + 2));
    }
    std::size_t total_len() const noexcept {
        return is_tv() ? head_len : head_len + core::load_be16(b_.data() + 2);
    }

private:
    explicit DataAttributeView(std::span<const std::uint8_t> b) noexcept : b_(b) {}
    std::span<const std::uint8_t> b_;
};

struct DataAttribute {
    std::uint16_t type = 0;  // 15 bits
    bool tv = true;          // TV form: value is exactly 2 bytes
    Bytes value;

    static DataAttribute basic(std::uint16_t type, std::uint16_t v);
    static DataAttribute variable(std::uint16_t type, Bytes v);
    /// TV when the value fits 16 bits, else TLV of 4 or 8 bytes — strongSwan's rule
    /// (transform_attribute_create_value); e.g. Life Duration 86400 becomes a 4-byte TLV.
    static DataAttribute integer(std::uint16_t type, std::uint64_t v);
    /// The value as a big-endian unsigned integer; nullopt when empty or longer than 8 bytes.
    std::optional<std::uint64_t> as_integer() const noexcept;

    static DataAttribute parse(const DataAttributeView& v);
    void write(ByteWriter& w) const noexcept;
    friend bool operator==(const DataAttribute&, const DataAttribute&) = default;
};

class AttributeList {
public:
    std::vector<DataAttribute> items;

    AttributeList() = default;
    AttributeList(std::initializer_list<DataAttribute> l) : items(l) {}

    AttributeList& add(DataAttribute a) {
        items.push_back(std::move(a));
        return *this;
    }
    /// First attribute of that type, or nullptr.
    const DataAttribute* find(std::uint16_t type) const noexcept;
    /// Integer value of the first attribute of that type.
    std::optional<std::uint64_t> integer(std::uint16_t type) const noexcept;
    std::size_t size() const noexcept { return items.size(); }
    bool empty() const noexcept { return items.empty(); }
    auto begin() const noexcept { return items.begin(); }
    auto end() const noexcept { return items.end(); }

    /// Parses attributes until the bytes end; a partial attribute is Truncated.
    static core::Result<AttributeList> parse(std::span<const std::uint8_t> bytes);
    void write(ByteWriter& w) const noexcept;
    friend bool operator==(const AttributeList&, const AttributeList&) = default;
};

}  // namespace mipsec::ipsec::ike
