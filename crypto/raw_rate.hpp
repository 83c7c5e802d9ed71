// SPDX-License-Identifier: MIT
#pragma once
// Raw seal-rate micro-benchmarks for `mipsec bench`: how many packets per second one core can
// protect with a given transform, without ESP framing, buffers or I/O. The one place in
// crypto/ that reads a clock (std::chrono::steady_clock): a benchmark utility, never used by a
// core. Each call runs on the calling thread for about `duration` and allocates one
// packet-sized buffer up front.
#include <chrono>
#include <cstddef>

#include "crypto/aead.hpp"
#include "crypto/cipher.hpp"
#include "crypto/mac.hpp"

namespace mipsec::crypto {

/// Packets/s sealing `payload_len`-byte payloads in place with an 8-byte AAD (SPI||seq) and a
/// fresh counter nonce per packet, like ESP with an AEAD. 0 if a seal fails.
double measure_seal_rate(Aead& aead, std::size_t payload_len, std::chrono::nanoseconds duration);

/// Packets/s for encrypt-then-MAC: CBC-encrypt the payload (rounded up to the block size)
/// under a per-packet IV, then MAC IV || ciphertext and truncate to `icv_len` bytes (12 for
/// HMAC-SHA1-96, 16 for HMAC-SHA-256-128). 0 if a call fails or icv_len is out of range.
double measure_seal_rate(Cipher& cipher, Mac& mac, std::size_t payload_len, std::size_t icv_len,
                         std::chrono::nanoseconds duration);

}  // namespace mipsec::crypto
