// SPDX-License-Identifier: MIT
#pragma once
// MessageCipher: encryption of ISAKMP messages after the key exchange (RFC 2408 §3.1 E flag,
// RFC 2409 §5, Appendix B) with the CBC IV chains strongSwan keeps
// (iv_manager.c):
//   * M-ID 0 (Main Mode): one bidirectional chain seeded with hash(g^xi | g^xr); each message's
//     IV is the last ciphertext block of the previous phase-1 message. Its final value (after
//     MM6) seeds every phase-2 chain.
//   * any other M-ID: its own chain, first IV hash(last phase-1 block | M-ID), then the last
//     ciphertext block of the previous message of that exchange. At most `max_chains` chains
//     are kept (oldest dropped), like strongSwan's small list.
// seal() advances the chain of the message's M-ID at once (we authenticated what we send).
// open() only decrypts and returns the message's last ciphertext block; the caller commits
// it with commit() after the message authenticated (HASH verified), so a forged or corrupt
// packet cannot desynchronise the chain (strongSwan's confirm_iv).
// Plaintext is padded with 1..16 zero bytes (a full block when aligned, as strongSwan);
// received padding is ignored by parse_decrypted(). Not thread-safe; one per IKE SA.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/result.hpp"
#include "crypto/cipher.hpp"
#include "crypto/hash.hpp"
#include "ipsec/ike/message.hpp"
#include "ipsec/ike/phase1_keys.hpp"

namespace mipsec::ipsec::ike {

class MessageCipher {
public:
    static constexpr std::size_t max_chains = 8;

    static core::Result<MessageCipher> create(crypto::CipherAlgorithm algorithm, std::span<const std::uint8_t> key,
                                              crypto::HashAlgorithm hash, const Bytes16& phase1_iv);

    /// Encrypts m.payloads under m.header (E flag set here) and returns the datagram bytes.
    core::Result<Bytes> seal(const Message& m);

    struct Opened {
        Message message;       // decoded plaintext; wire = header + payload chain (no padding)
        Bytes16 last_block{};  // commit() this once the message authenticated
    };
    /// Decrypts a received message with the current IV of its M-ID chain. Fails on a missing E
    /// flag, a ciphertext that is not whole blocks, or a plaintext that does not parse.
    core::Result<Opened> open(std::span<const std::uint8_t> bytes) const;
    void commit(std::uint32_t message_id, const Bytes16& last_block);
    /// Drops an exchange's chain (one-shot informationals need none).
    void forget(std::uint32_t message_id);

    /// The IV the next message with this M-ID uses (tests, key logs).
    Bytes16 iv(std::uint32_t message_id) const;

private:
    struct Chain {
        std::uint32_t message_id;
        Bytes16 iv;
    };
    MessageCipher(std::unique_ptr<crypto::Cipher> c, crypto::HashAlgorithm h, const Bytes16& iv0)
        : cipher_(std::move(c)), hash_(h), phase1_(iv0) {}
    void set_chain(std::uint32_t message_id, const Bytes16& iv);

    std::unique_ptr<crypto::Cipher> cipher_;
    crypto::HashAlgorithm hash_;
    Bytes16 phase1_;             // M-ID 0 chain
    std::vector<Chain> chains_;  // phase-2 chains, oldest first
};

}  // namespace mipsec::ipsec::ike
