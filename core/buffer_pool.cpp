// SPDX-License-Identifier: MIT
#include "core/buffer_pool.hpp"

#include <stdexcept>

namespace mipsec::core {

PacketBuf& PacketBuf::operator=(PacketBuf&& other) noexcept {
    if (this != &other) {
        release();
        pool_ = std::exchange(other.pool_, nullptr);
        block_ = std::exchange(other.block_, nullptr);
        capacity_ = std::exchange(other.capacity_, 0);
        head_ = std::exchange(other.head_, 0);
        len_ = std::exchange(other.len_, 0);
        index_ = other.index_;
        meta_ = other.meta_;
    }
    return *this;
}

void PacketBuf::release() noexcept {
    if (pool_ != nullptr) pool_->give_back(index_);
    pool_ = nullptr;
    block_ = nullptr;
    capacity_ = head_ = len_ = 0;
}

BufferPool::BufferPool(std::size_t block_count, std::size_t block_len, Sharing sharing)
    : block_count_(block_count), block_len_(block_len), shared_(sharing == Sharing::Threads) {
    if (block_count == 0 || block_len == 0 || block_count > UINT32_MAX)
        throw std::invalid_argument("buffer pool needs at least one block of at least one byte");
    // 64-byte blocks keep every packet start on its own cache line.
    block_len_ = (block_len + 63) & ~std::size_t{63};
    storage_ = std::make_unique<std::uint8_t[]>(block_count_ * block_len_);
    free_.reserve(block_count_);
    for (std::size_t i = block_count_; i-- > 0;) free_.push_back(static_cast<std::uint32_t>(i));
}

BufferPool::~BufferPool() {
    // Outstanding buffers would write into freed memory on destruction: a programming error.
    assert(free_.size() == block_count_ && "PacketBuf outlived its BufferPool");
}

std::optional<std::uint32_t> BufferPool::take() noexcept {
    if (free_.empty()) {
        ++exhausted_;
        return std::nullopt;
    }
    std::uint32_t index = free_.back();
    free_.pop_back();
    return index;
}

PacketBuf BufferPool::acquire(std::size_t headroom) noexcept {
    std::optional<std::uint32_t> taken;
    if (shared_) {
        std::lock_guard lock(mutex_);
        taken = take();
    } else {
        taken = take();
    }
    if (!taken) return {};
    const std::uint32_t index = *taken;
    PacketBuf buf(this, storage_.get() + std::size_t{index} * block_len_, index, block_len_);
    buf.reset(headroom);
    return buf;
}

}  // namespace mipsec::core
