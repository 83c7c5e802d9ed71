// SPDX-License-Identifier: MIT
#pragma once
// ByteWriter: the sink every ISAKMP emitter writes through. It bounds-checks each store and
// remembers the first failure instead of throwing, so one emit pass either fills the span or
// reports BufferTooSmall / InvalidArgument. A measuring writer (no span) only counts, which
// lets vector emitters size the output with the same code path that fills it.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <system_error>

#include "core/endian.hpp"
#include "ipsec/ike/errc.hpp"

namespace mipsec::ipsec::ike {

class ByteWriter {
public:
    explicit ByteWriter(std::span<std::uint8_t> out) noexcept : out_(out) {}
    static ByteWriter measuring() noexcept {
        ByteWriter w({});
        w.measure_ = true;
        return w;
    }

    std::size_t pos() const noexcept { return pos_; }
    bool ok() const noexcept { return !invalid_ && !overflow_; }
    std::error_code error() const noexcept {
        if (invalid_) return Errc::InvalidArgument;
        if (overflow_) return Errc::BufferTooSmall;
        return {};
    }
    /// Records a value that does not fit its field; the first error sticks.
    void invalid() noexcept { invalid_ = true; }

    void u8(std::uint8_t v) noexcept {
        if (std::uint8_t* p = reserve(1)) p[0] = v;
    }
    void u16(std::uint16_t v) noexcept {
        if (std::uint8_t* p = reserve(2)) core::store_be16(p, v);
    }
    void u32(std::uint32_t v) noexcept {
        if (std::uint8_t* p = reserve(4)) core::store_be32(p, v);
    }
    void bytes(std::span<const std::uint8_t> b) noexcept {
        if (std::uint8_t* p = reserve(b.size()); p && !b.empty()) std::copy(b.begin(), b.end(), p);
    }
    /// Overwrites two bytes already written (a length field known only after the body).
    void patch_u16(std::size_t at, std::uint16_t v) noexcept {
        if (!measure_ && at + 2 <= out_.size()) core::store_be16(out_.data() + at, v);
    }
    void patch_u8(std::size_t at, std::uint8_t v) noexcept {
        if (!measure_ && at < out_.size()) out_[at] = v;
    }

private:
    std::uint8_t* reserve(std::size_t n) noexcept {
        std::size_t at = pos_;
        pos_ += n;
        if (measure_) return nullptr;
        if (overflow_ || at > out_.size() || n > out_.size() - at) {
            overflow_ = true;
            return nullptr;
        }
        return out_.data() + at;
    }

    std::span<std::uint8_t> out_;
    std::size_t pos_ = 0;
    bool measure_ = false;
    bool overflow_ = false;
    bool invalid_ = false;
};

}  // namespace mipsec::ipsec::ike
