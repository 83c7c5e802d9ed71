// SPDX-License-Identifier: MIT
#include "crypto/secret_bytes.hpp"

#include <openssl/crypto.h>
#include <sodium.h>

#include <algorithm>

#include "core/hex.hpp"

namespace mipsec::crypto {

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
        wipe();
        bytes_ = std::move(other.bytes_);
        other.bytes_.clear();
    }
    return *this;
}

namespace {
ReleaseObserver release_observer = nullptr;
}  // namespace

void wipe_released_block(void* block, std::size_t len) noexcept {
    if (block == nullptr || len == 0) return;
    sodium_memzero(block, len);
    if (release_observer != nullptr) release_observer(static_cast<const std::uint8_t*>(block), len);
}

void set_release_observer(ReleaseObserver observer) noexcept { release_observer = observer; }

void SecretBytes::append(std::span<const std::uint8_t> more) {
    // A reallocation frees the old block through WipingAllocator, which zeroes it first.
    bytes_.insert(bytes_.end(), more.begin(), more.end());
}

std::string SecretBytes::reveal_hex() const { return core::to_hex(bytes_); }

// Zeroes the bytes and leaves the secret empty (size 0); the zeroed block stays allocated
// (and is zeroed, all of it, again when it is freed).
void SecretBytes::wipe() noexcept {
    secure_wipe(bytes_);
    bytes_.clear();
}

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept {
    if (a.size() != b.size()) return false;
    if (a.empty()) return true;
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

void secure_wipe(std::span<std::uint8_t> bytes) noexcept {
    if (!bytes.empty()) sodium_memzero(bytes.data(), bytes.size());
}

}  // namespace mipsec::crypto
