// SPDX-License-Identifier: MIT
#pragma once
// ReplayWindow: ESP anti-replay (RFC 4303 §3.4.3) on 64-bit sequence numbers, stored as the
// RFC 6479 ring: M blocks of 64 bits (M a power of two), a sequence number's bit found from
// its value alone, so advancing the window clears whole blocks instead of shifting.
// The window accepts the `size()` numbers T-size+1 .. T, where T = highest(), plus anything
// above T. check() is the cheap pre-check done before any crypto and never changes state;
// accept() is called only after the ICV has verified (§3.4.3: the window MUST NOT move for
// unauthenticated packets). Sequence number 0 is never sent (§3.3.3) and is always refused.
// The bitmap is allocated once in the constructor; check/accept never allocate.
// Not thread-safe; one instance per inbound SA.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/drop_reason.hpp"

namespace mipsec::ipsec {

class ReplayWindow {
public:
    static constexpr std::size_t default_size = 1024;
    static constexpr std::size_t min_size = 32;  // RFC 4303 §3.4.3: MUST support at least 32
    static constexpr std::size_t max_size = 4096;
    static constexpr std::size_t block_bits = 64;

    /// size must satisfy valid_size(); out-of-range sizes are clamped. `highest` presets T
    /// (an SA taken over mid-stream, or tests); 0 for a fresh SA.
    explicit ReplayWindow(std::size_t size = default_size, std::uint64_t highest = 0);
    static constexpr bool valid_size(std::size_t size) noexcept { return size >= min_size && size <= max_size; }

    /// DropReason::None if seq may be new; SequenceTooOld if left of the window (or 0),
    /// ReplayedSequence if already accepted. No state changes.
    core::DropReason check(std::uint64_t seq) const noexcept;
    /// Records an authenticated seq: moves the window right if seq > T, then marks it.
    /// Repeats the check, so it refuses (and leaves the window alone) exactly when check() would.
    core::DropReason accept(std::uint64_t seq) noexcept;

    std::uint64_t highest() const noexcept { return highest_; }
    std::size_t size() const noexcept { return size_; }
    /// Number of 64-bit blocks in the ring (a power of two, at least size/64 + 1).
    std::size_t blocks() const noexcept { return bitmap_.size(); }

private:
    std::size_t index_of(std::uint64_t seq) const noexcept { return (seq / block_bits) & mask_; }

    std::size_t size_;
    std::uint64_t highest_;
    std::size_t mask_;
    std::vector<std::uint64_t> bitmap_;
};

/// The full 64-bit sequence number of a received ESN packet whose low half is seq_low, given
/// the highest authenticated number `highest` and window size (RFC 4303 Appendix A2.1).
/// nullopt when the guess falls outside the 64-bit space: below subspace 0 (can only be too
/// old) or past 2^64-1 (the sender cannot legitimately have wrapped).
std::optional<std::uint64_t> infer_esn(std::uint32_t seq_low, std::uint64_t highest, std::size_t window) noexcept;

}  // namespace mipsec::ipsec
