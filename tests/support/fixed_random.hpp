// SPDX-License-Identifier: MIT
#pragma once
// Deterministic crypto::Random sources for tests, so IVs, SPIs, cookies and DH keys (and with
// them whole packets) are exact. Never use outside tests.
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "crypto/random.hpp"

namespace mipsec::test {

/// Replays `bytes` in order, starting over at the end (an empty sequence yields zeros).
/// Successive fill() calls continue where the previous one stopped.
class FixedRandom final : public crypto::Random {
public:
    explicit FixedRandom(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}
    explicit FixedRandom(std::span<const std::uint8_t> bytes) : bytes_(bytes.begin(), bytes.end()) {}

    void fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) {
            if (bytes_.empty()) {
                b = 0;
                continue;
            }
            b = bytes_[pos_];
            pos_ = (pos_ + 1) % bytes_.size();
        }
        consumed_ += out.size();
    }
    /// Total bytes handed out so far (to assert how much randomness a component drew).
    std::size_t consumed() const noexcept { return consumed_; }

private:
    std::vector<std::uint8_t> bytes_;
    std::size_t pos_ = 0;
    std::size_t consumed_ = 0;
};

/// Emits start, start+1, start+2, ... (mod 256) across calls: distinct, predictable values.
class CountingRandom final : public crypto::Random {
public:
    explicit CountingRandom(std::uint8_t start = 0) : next_(start) {}

    void fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) b = next_++;
        consumed_ += out.size();
    }
    std::size_t consumed() const noexcept { return consumed_; }

private:
    std::uint8_t next_;
    std::size_t consumed_ = 0;
};

}  // namespace mipsec::test
