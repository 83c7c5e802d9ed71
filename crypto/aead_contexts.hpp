// SPDX-License-Identifier: MIT
#pragma once
// AeadContexts: one thread's own instances of shared AEAD keys. An Aead is not thread-safe, so
// a key that several data-path threads use (one ESP SA sealed or opened by every worker) is
// kept as a prototype nobody seals with, and each thread seals with its clone, made the first
// time it meets the key and kept for the next packets. An entry holds its prototype alive, so
// a prototype's address is never reused while an entry names it; sweep() forgets the keys no
// one else holds any more (the SA was removed), so deleted keys do not linger in memory.
// Not thread-safe: one per thread.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "crypto/aead.hpp"

namespace mipsec::crypto {

class AeadContexts {
public:
    /// Keys kept at most; the least recently used one makes room for a new one.
    static constexpr std::size_t default_capacity = 64;
    explicit AeadContexts(std::size_t capacity = default_capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

    /// This thread's instance of `key`; null only when cloning failed (a library failure).
    Aead* get(const std::shared_ptr<const Aead>& key);
    /// Forgets keys held by nothing but this cache.
    void sweep();
    std::size_t size() const noexcept { return entries_.size(); }
    /// Clones made: a figure that grows with each packet means the capacity is too small.
    std::uint64_t clones() const noexcept { return clones_; }

private:
    struct Entry {
        std::shared_ptr<const Aead> key;
        std::unique_ptr<Aead> own;
        std::uint64_t used = 0;
    };
    std::size_t capacity_;
    std::vector<Entry> entries_;
    std::uint64_t tick_ = 0;
    std::uint64_t clones_ = 0;
};

}  // namespace mipsec::crypto
