// SPDX-License-Identifier: MIT
#include "crypto/hash.hpp"

#include <openssl/evp.h>

#include <memory>

namespace mipsec::crypto {

std::size_t digest_len(HashAlgorithm a) noexcept {
    switch (a) {
        case HashAlgorithm::Md5: return 16;
        case HashAlgorithm::Sha1: return 20;
        case HashAlgorithm::Sha256: return 32;
        case HashAlgorithm::Sha384: return 48;
        case HashAlgorithm::Sha512: return 64;
    }
    return 0;
}

namespace {
const EVP_MD* evp_md(HashAlgorithm a) noexcept {
    switch (a) {
        case HashAlgorithm::Md5: return EVP_md5();
        case HashAlgorithm::Sha1: return EVP_sha1();
        case HashAlgorithm::Sha256: return EVP_sha256();
        case HashAlgorithm::Sha384: return EVP_sha384();
        case HashAlgorithm::Sha512: return EVP_sha512();
    }
    return nullptr;
}
struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
}  // namespace

// Control-plane only (IKEv1 IVs, NAT-D), so a context per call is fine.
bool hash(HashAlgorithm algorithm, std::span<const std::span<const std::uint8_t>> parts,
          std::span<std::uint8_t> out) noexcept {
    const EVP_MD* md = evp_md(algorithm);
    std::size_t len = digest_len(algorithm);
    if (md == nullptr || out.size() < len) return false;
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) return false;
    for (auto part : parts) {
        if (!part.empty() && EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1) return false;
    }
    unsigned int written = 0;
    return EVP_DigestFinal_ex(ctx.get(), out.data(), &written) == 1 && written == len;
}

}  // namespace mipsec::crypto
