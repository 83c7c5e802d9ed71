// SPDX-License-Identifier: MIT
#pragma once
// BufferPool: a fixed number of fixed-size blocks allocated once, up front. acquire() never
// allocates: when the pool is empty it returns an invalid PacketBuf and the caller stops
// reading (back-pressure). The pool must outlive every PacketBuf taken from it.
// Not thread-safe.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/packet_buf.hpp"

namespace mipsec::core {

class BufferPool {
public:
    BufferPool(std::size_t block_count, std::size_t block_len);
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;
    ~BufferPool();

    /// A buffer with `headroom` bytes in front, or an invalid one if the pool is exhausted.
    PacketBuf acquire(std::size_t headroom) noexcept;

    std::size_t block_len() const noexcept { return block_len_; }
    std::size_t block_count() const noexcept { return block_count_; }
    std::size_t available() const noexcept { return free_.size(); }
    /// acquire() calls that found the pool empty.
    std::uint64_t exhausted_count() const noexcept { return exhausted_; }

private:
    friend class PacketBuf;
    void give_back(std::uint32_t index) noexcept { free_.push_back(index); }

    std::size_t block_count_;
    std::size_t block_len_;
    std::unique_ptr<std::uint8_t[]> storage_;
    std::vector<std::uint32_t> free_;  // reserved to block_count_: push_back never allocates
    std::uint64_t exhausted_ = 0;
};

}  // namespace mipsec::core
