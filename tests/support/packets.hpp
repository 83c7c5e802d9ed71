// SPDX-License-Identifier: MIT
#pragma once
// Putting test bytes into pool buffers and reading them back, as every stage test does.
#include <algorithm>
#include <span>

#include <doctest/doctest.h>

#include "core/buffer_pool.hpp"
#include "tests/support/hex.hpp"

namespace mipsec::test {

/// A buffer from `pool` holding a copy of `bytes`, starting `headroom` bytes into its block
/// (room for the headers a stage pushes in front).
inline core::PacketBuf load(core::BufferPool& pool, std::span<const std::uint8_t> bytes, std::size_t headroom = 128) {
    auto buf = pool.acquire(headroom);
    REQUIRE(buf.valid());
    REQUIRE(buf.resize(bytes.size()));
    std::copy(bytes.begin(), bytes.end(), buf.data());
    return buf;
}

inline Bytes bytes_of(const core::PacketBuf& p) { return {p.bytes().begin(), p.bytes().end()}; }

}  // namespace mipsec::test
