// SPDX-License-Identifier: MIT
#pragma once
// Finite-field Diffie-Hellman over the MODP groups IKEv1 uses: group 2 (RFC 2409, 1024 bit)
// and group 14 (RFC 3526, 2048 bit). Public values and shared secrets are exactly
// modulus-length, big-endian, left-padded with zeros (RFC 7296 §3.4; strongSwan's IKEv1 too).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/result.hpp"
#include "crypto/random.hpp"
#include "crypto/secret_bytes.hpp"

namespace mipsec::crypto {

enum class ModpGroup : std::uint16_t { Modp1024 = 2, Modp2048 = 14 };
std::size_t modulus_len(ModpGroup g) noexcept;

class DiffieHellman {
public:
    virtual ~DiffieHellman() = default;
    /// Draws the private exponent from `random`.
    static core::Result<std::unique_ptr<DiffieHellman>> create(ModpGroup group, Random& random);

    virtual ModpGroup group() const noexcept = 0;
    /// g^x mod p, modulus-length big-endian.
    virtual const std::vector<std::uint8_t>& public_value() const noexcept = 0;
    /// (peer)^x mod p; refuses a peer value outside 1 < y < p-1 or of the wrong length.
    virtual core::Result<SecretBytes> shared_secret(std::span<const std::uint8_t> peer_public) const = 0;
};

}  // namespace mipsec::crypto
