// SPDX-License-Identifier: MIT
#pragma once
// BufferPool: a fixed number of fixed-size blocks allocated once, up front. acquire() never
// allocates: when the pool is empty it returns an invalid PacketBuf and the caller stops
// reading (back-pressure). The pool must outlive every PacketBuf taken from it.
// Not thread-safe, unless made with Sharing::Threads: then acquire(), giving a buffer back
// and the figures take a mutex, so a buffer may be taken on one thread and released on another
// (a node with several data-path workers: a packet a stage holds, say core.impair's, dies
// wherever the stage lets go of it). Uncontended, that is two lock/unlock pairs per packet.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "core/packet_buf.hpp"

namespace mipsec::core {

class BufferPool {
public:
    enum class Sharing : std::uint8_t { OneThread, Threads };
    BufferPool(std::size_t block_count, std::size_t block_len, Sharing sharing = Sharing::OneThread);
    BufferPool(const BufferPool&) = delete;
    BufferPool& operator=(const BufferPool&) = delete;
    ~BufferPool();

    /// A buffer with `headroom` bytes in front, or an invalid one if the pool is exhausted.
    PacketBuf acquire(std::size_t headroom) noexcept;

    std::size_t block_len() const noexcept { return block_len_; }
    std::size_t block_count() const noexcept { return block_count_; }
    std::size_t available() const noexcept {
        if (!shared_) return free_.size();
        std::lock_guard lock(mutex_);
        return free_.size();
    }
    /// acquire() calls that found the pool empty.
    std::uint64_t exhausted_count() const noexcept {
        if (!shared_) return exhausted_;
        std::lock_guard lock(mutex_);
        return exhausted_;
    }
    bool shared() const noexcept { return shared_; }

private:
    friend class PacketBuf;
    void give_back(std::uint32_t index) noexcept {
        if (!shared_) return free_.push_back(index);
        std::lock_guard lock(mutex_);
        free_.push_back(index);
    }
    std::optional<std::uint32_t> take() noexcept;

    std::size_t block_count_;
    std::size_t block_len_;
    std::unique_ptr<std::uint8_t[]> storage_;
    std::vector<std::uint32_t> free_;  // reserved to block_count_: push_back never allocates
    std::uint64_t exhausted_ = 0;
    bool shared_ = false;
    mutable std::mutex mutex_;  // Sharing::Threads only
};

}  // namespace mipsec::core
