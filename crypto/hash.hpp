// SPDX-License-Identifier: MIT
#pragma once
// One-shot message digests, for IKEv1 IV derivation and NAT-D hashes.
#include <cstddef>
#include <cstdint>
#include <span>

namespace mipsec::crypto {

enum class HashAlgorithm : std::uint8_t { Md5, Sha1, Sha256, Sha384, Sha512 };
std::size_t digest_len(HashAlgorithm a) noexcept;
/// Hashes the concatenation of `parts` into out (out.size() >= digest_len). False on failure.
bool hash(HashAlgorithm algorithm, std::span<const std::span<const std::uint8_t>> parts,
          std::span<std::uint8_t> out) noexcept;

}  // namespace mipsec::crypto
