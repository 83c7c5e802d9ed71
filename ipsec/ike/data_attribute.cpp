// SPDX-License-Identifier: MIT
#include "ipsec/ike/data_attribute.hpp"

#include "ipsec/ike/byte_writer.hpp"
#include "ipsec/ike/errc.hpp"

namespace mipsec::ipsec::ike {

DataAttribute DataAttribute::basic(std::uint16_t type, std::uint16_t v) {
    return {type, true, Bytes{static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)}};
}

DataAttribute DataAttribute::variable(std::uint16_t type, Bytes v) { return {type, false, std::move(v)}; }

DataAttribute DataAttribute::integer(std::uint16_t type, std::uint64_t v) {
    if (v <= 0xFFFF) return basic(type, static_cast<std::uint16_t>(v));
    Bytes b(v <= 0xFFFFFFFFu ? 4 : 8);
    for (std::size_t i = 0; i < b.size(); ++i) b[b.size() - 1 - i] = static_cast<std::uint8_t>(v >> (8 * i));
    return variable(type, std::move(b));
}

std::optional<std::uint64_t> DataAttribute::as_integer() const noexcept {
    if (value.empty() || value.size() > 8) return std::nullopt;
    std::uint64_t v = 0;
    for (std::uint8_t b : value) v = (v << 8) | b;
    return v;
}

DataAttribute DataAttribute::parse(const DataAttributeView& v) {
    auto val = v.value();
    return {v.type(), v.is_tv(), Bytes(val.begin(), val.end())};
}

void DataAttribute::write(ByteWriter& w) const noexcept {
    if (type > 0x7FFF || (tv && value.size() != 2) || (!tv && value.size() > 0xFFFF)) {
        w.invalid();
        return;
    }
    if (tv) {
        w.u16(static_cast<std::uint16_t>(DataAttributeView::af_bit | type));
        w.bytes(value);
    } else {
        w.u16(type);
        w.u16(static_cast<std::uint16_t>(value.size()));
        w.bytes(value);
    }
}

const DataAttribute* AttributeList::find(std::uint16_t type) const noexcept {
    for (const auto& a : items)
        if (a.type == type) return &a;
    return nullptr;
}

std::optional<std::uint64_t> AttributeList::integer(std::uint16_t type) const noexcept {
    const DataAttribute* a = find(type);
    return a ? a->as_integer() : std::nullopt;
}

core::Result<AttributeList> AttributeList::parse(std::span<const std::uint8_t> bytes) {
    AttributeList list;
    while (!bytes.empty()) {
        auto v = DataAttributeView::check(bytes);
        if (!v) return Errc::Truncated;
        list.items.push_back(DataAttribute::parse(*v));
        bytes = bytes.subspan(v->total_len());
    }
    return list;
}

void AttributeList::write(ByteWriter& w) const noexcept {
    for (const auto& a : items) a.write(w);
}

}  // namespace mipsec::ipsec::ike
