// SPDX-License-Identifier: MIT
#pragma once
// Owning pointers for OpenSSL objects. Private to crypto/*.cpp (only they include OpenSSL).
#include <memory>

#include <openssl/evp.h>

namespace mipsec::crypto::detail {

struct CipherCtxFree {
    void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

struct CipherFree {
    void operator()(EVP_CIPHER* c) const noexcept { EVP_CIPHER_free(c); }
};
using CipherPtr = std::unique_ptr<EVP_CIPHER, CipherFree>;

}  // namespace mipsec::crypto::detail
