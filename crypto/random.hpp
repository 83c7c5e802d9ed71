// SPDX-License-Identifier: MIT
#pragma once
// Random: the source of nonces, IVs, SPIs, cookies and private keys. Always injected as a
// constructor argument so tests can fix it; never a global.
#include <cstdint>
#include <span>

namespace mipsec::crypto {

class Random {
public:
    virtual ~Random() = default;
    virtual void fill(std::span<std::uint8_t> out) noexcept = 0;
    std::uint32_t next_u32() noexcept {
        std::uint8_t b[4];
        fill(b);
        return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) | b[3];
    }
};

/// The operating system's CSPRNG (libsodium randombytes_buf, which uses getrandom()).
class SystemRandom final : public Random {
public:
    SystemRandom();
    void fill(std::span<std::uint8_t> out) noexcept override;
};

/// A fast CSPRNG for the packet path (CBC IVs, padding): the ChaCha20 keystream under a key
/// drawn from the system CSPRNG, rekeyed from it every `rekey_bytes` (arc4random's
/// construction). SystemRandom makes one getrandom() system call per fill(), far too slow
/// per packet. Not thread-safe: one per thread/node.
class KeystreamRandom final : public Random {
public:
    static constexpr std::uint64_t rekey_bytes = std::uint64_t{1} << 30;
    KeystreamRandom();
    ~KeystreamRandom() override;
    KeystreamRandom(const KeystreamRandom&) = delete;
    KeystreamRandom& operator=(const KeystreamRandom&) = delete;
    void fill(std::span<std::uint8_t> out) noexcept override;

private:
    void rekey() noexcept;
    SystemRandom system_;
    std::uint8_t key_[32];
    std::uint8_t buffer_[256];  // keystream not yet handed out
    std::size_t available_ = 0;
    std::uint64_t nonce_ = 0;
    std::uint64_t since_rekey_ = 0;
};

}  // namespace mipsec::crypto
