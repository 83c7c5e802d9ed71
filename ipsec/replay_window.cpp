// SPDX-License-Identifier: MIT
#include "ipsec/replay_window.hpp"

#include <algorithm>

namespace mipsec::ipsec {

using core::DropReason;

namespace {
std::size_t ring_blocks(std::size_t size) noexcept {
    // T-size+1 .. T touches at most ceil(size/64)+1 blocks; with fewer, clearing the block
    // for a new T would wipe bits still inside the window and let old packets replay.
    const std::size_t needed = (size + ReplayWindow::block_bits - 1) / ReplayWindow::block_bits + 1;
    std::size_t blocks = 1;
    while (blocks < needed) blocks <<= 1;
    return blocks;
}
}  // namespace

ReplayWindow::ReplayWindow(std::size_t size, std::uint64_t highest)
    : size_(std::clamp(size, min_size, max_size)),
      highest_(highest),
      mask_(ring_blocks(size_) - 1),
      bitmap_(ring_blocks(size_), 0) {
    // A preset T was accepted by whoever held the SA before; never take it twice.
    if (highest_ != 0) bitmap_[index_of(highest_)] |= std::uint64_t{1} << (highest_ % block_bits);
}

DropReason ReplayWindow::check(std::uint64_t seq) const noexcept {
    if (seq == 0) return DropReason::SequenceTooOld;
    if (seq > highest_) return DropReason::None;
    // 64-bit difference: RFC 6479's `seq + size < last` overflows on 32-bit values.
    if (highest_ - seq >= size_) return DropReason::SequenceTooOld;
    const std::uint64_t bit = std::uint64_t{1} << (seq % block_bits);
    return (bitmap_[index_of(seq)] & bit) != 0 ? DropReason::ReplayedSequence : DropReason::None;
}

DropReason ReplayWindow::accept(std::uint64_t seq) noexcept {
    if (auto r = check(seq); r != DropReason::None) return r;
    if (seq > highest_) {
        // RFC 6479 §2: zero every block after T's up to and including seq's; a jump of a
        // whole ring or more clears all of them.
        const std::uint64_t from = highest_ / block_bits;
        const std::uint64_t jump = std::min<std::uint64_t>(seq / block_bits - from, bitmap_.size());
        for (std::uint64_t i = 1; i <= jump; ++i) bitmap_[(from + i) & mask_] = 0;
        highest_ = seq;
    }
    bitmap_[index_of(seq)] |= std::uint64_t{1} << (seq % block_bits);
    return DropReason::None;
}

std::optional<std::uint64_t> infer_esn(std::uint32_t seq_low, std::uint64_t highest, std::size_t window) noexcept {
    const auto th = static_cast<std::uint32_t>(highest >> 32);
    const auto tl = static_cast<std::uint32_t>(highest);
    const auto w = static_cast<std::uint32_t>(window);
    // Bottom of the window, modulo 2^32 as Appendix A prescribes.
    const std::uint32_t bottom = tl - w + 1;
    std::uint32_t seq_high = th;
    if (tl >= w - 1) {
        // Case A: the window lies within one 2^32 subspace; a low half below it has wrapped.
        if (seq_low < bottom) {
            if (th == 0xFFFFFFFFu) return std::nullopt;
            seq_high = th + 1;
        }
    } else {
        // Case B: the window straddles a subspace boundary; a large low half is in the old one.
        if (seq_low >= bottom) {
            if (th == 0) return std::nullopt;
            seq_high = th - 1;
        }
    }
    return (std::uint64_t{seq_high} << 32) | seq_low;
}

}  // namespace mipsec::ipsec
