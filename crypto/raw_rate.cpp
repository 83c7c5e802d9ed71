// SPDX-License-Identifier: MIT
#include "crypto/raw_rate.hpp"

#include <array>
#include <cstdint>
#include <vector>

#include "core/endian.hpp"

namespace mipsec::crypto {

namespace {

using Clock = std::chrono::steady_clock;
// Reading the clock costs tens of nanoseconds; look at it only every this many packets.
constexpr std::uint64_t batch = 32;

// Runs `seal_one(counter)` in batches until `duration` has passed; packets/s or 0 on failure.
template <class F>
double run_for(std::chrono::nanoseconds duration, F&& seal_one) {
    std::uint64_t packets = 0;
    auto start = Clock::now();
    auto elapsed = Clock::duration::zero();
    do {
        for (std::uint64_t i = 0; i < batch; ++i, ++packets) {
            if (!seal_one(packets)) return 0.0;
        }
        elapsed = Clock::now() - start;
    } while (elapsed < duration);
    double seconds = std::chrono::duration<double>(elapsed).count();
    return seconds > 0 ? static_cast<double>(packets) / seconds : 0.0;
}

}  // namespace

double measure_seal_rate(Aead& aead, std::size_t payload_len, std::chrono::nanoseconds duration) {
    std::vector<std::uint8_t> payload(payload_len, 0x5a);
    std::array<std::uint8_t, Aead::nonce_len> nonce{0xa0, 0xa1, 0xa2, 0xa3};
    std::array<std::uint8_t, 8> aad{0x01, 0x02, 0x03, 0x04};
    std::array<std::uint8_t, Aead::tag_len> tag{};
    return run_for(duration, [&](std::uint64_t n) {
        core::store_be32(nonce.data() + 4, static_cast<std::uint32_t>(n >> 32));
        core::store_be32(nonce.data() + 8, static_cast<std::uint32_t>(n));
        core::store_be32(aad.data() + 4, static_cast<std::uint32_t>(n));
        return aead.seal(nonce, aad, payload, tag);
    });
}

double measure_seal_rate(Cipher& cipher, Mac& mac, std::size_t payload_len, std::size_t icv_len,
                         std::chrono::nanoseconds duration) {
    if (icv_len == 0 || icv_len > mac.output_len()) return 0.0;
    std::size_t padded = (payload_len + Cipher::block_len - 1) / Cipher::block_len * Cipher::block_len;
    // IV || ciphertext, contiguous as in an ESP packet, so one MAC call covers both.
    std::vector<std::uint8_t> packet(Cipher::iv_len + padded, 0x5a);
    std::span<std::uint8_t> iv_bytes(packet.data(), Cipher::iv_len);
    std::span<std::uint8_t> body(packet.data() + Cipher::iv_len, padded);
    std::array<std::uint8_t, Mac::max_output_len> icv{};
    return run_for(duration, [&](std::uint64_t n) {
        core::store_be32(iv_bytes.data() + 12, static_cast<std::uint32_t>(n));
        std::span<const std::uint8_t, Cipher::iv_len> iv(iv_bytes.data(), Cipher::iv_len);
        return cipher.encrypt(iv, body) && mac.compute(packet, std::span(icv).first(icv_len));
    });
}

}  // namespace mipsec::crypto
