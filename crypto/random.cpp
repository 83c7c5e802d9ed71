// SPDX-License-Identifier: MIT
#include "crypto/random.hpp"

#include <sodium.h>

#include <algorithm>
#include <stdexcept>

namespace mipsec::crypto {

// sodium_init is idempotent and thread-safe; it only fails if the OS RNG is unusable, which
// is a startup error worth aborting for (never reached on the packet path).
SystemRandom::SystemRandom() {
    if (sodium_init() < 0) throw std::runtime_error("libsodium initialisation failed (no usable OS RNG)");
}

void SystemRandom::fill(std::span<std::uint8_t> out) noexcept {
    if (!out.empty()) randombytes_buf(out.data(), out.size());
}

KeystreamRandom::KeystreamRandom() { rekey(); }

KeystreamRandom::~KeystreamRandom() {
    sodium_memzero(key_, sizeof key_);
    sodium_memzero(buffer_, sizeof buffer_);
}

void KeystreamRandom::rekey() noexcept {
    system_.fill(key_);
    nonce_ = 0;
    since_rekey_ = 0;
    available_ = 0;
}

void KeystreamRandom::fill(std::span<std::uint8_t> out) noexcept {
    while (!out.empty()) {
        if (available_ == 0) {
            if (since_rekey_ >= rekey_bytes) rekey();
            std::uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {};
            for (int i = 0; i < 8; ++i) nonce[i] = static_cast<std::uint8_t>(nonce_ >> (8 * i));
            ++nonce_;
            crypto_stream_chacha20_ietf(buffer_, sizeof buffer_, nonce, key_);
            available_ = sizeof buffer_;
            since_rekey_ += sizeof buffer_;
        }
        std::size_t n = std::min(available_, out.size());
        const std::uint8_t* src = buffer_ + (sizeof buffer_ - available_);
        std::copy_n(src, n, out.data());
        // Handed-out bytes are erased so a later memory disclosure cannot reveal past IVs' source.
        sodium_memzero(const_cast<std::uint8_t*>(src), n);
        available_ -= n;
        out = out.subspan(n);
    }
}

}  // namespace mipsec::crypto
