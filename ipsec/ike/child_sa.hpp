// SPDX-License-Identifier: MIT
#pragma once
// ChildSa: one negotiated ESP SA pair, as Quick Mode hands it to the data plane. Keys come
// from the Quick Mode KEYMAT (RFC 2409 §5.5), one KEYMAT per direction seeded with the SPI
// chosen by that direction's receiver (RFC 2409 §5.5): `*_in` keys protect
// packets to us (our SPI `spi_in`), `*_out` keys packets to the peer (`spi_out`). Each KEYMAT
// is cut encryption key first (+ 4-byte salt for AES-GCM, RFC 4106 §8.1), then integrity key.
// Move-only (keys are SecretBytes); clone() for an explicit copy.
#include <cstdint>
#include <optional>
#include <vector>

#include "core/address.hpp"
#include "core/time.hpp"
#include "crypto/diffie_hellman.hpp"
#include "crypto/secret_bytes.hpp"
#include "ipsec/ike/proposals.hpp"

namespace mipsec::ipsec::ike {

struct ChildSa {
    std::uint32_t spi_in = 0;   // chosen by us, in the peer's ESP headers
    std::uint32_t spi_out = 0;  // chosen by the peer
    EspAlgorithm algorithm = EspAlgorithm::AesGcm128;
    crypto::SecretBytes encryption_key_in;   // cipher key, no salt
    crypto::SecretBytes encryption_key_out;
    crypto::SecretBytes salt_in;             // 4 bytes for AES-GCM, else empty
    crypto::SecretBytes salt_out;
    crypto::SecretBytes integrity_key_in;    // HMAC key, empty for AES-GCM
    crypto::SecretBytes integrity_key_out;
    core::Duration soft_lifetime{};  // we rekey after this (zero: only the peer may)
    core::Duration hard_lifetime{};  // negotiated lifetime: unusable after this
    core::Ipv4Prefix local_ts;       // our side of the tunnel (IDci for the initiator)
    core::Ipv4Prefix remote_ts;
    bool udp_encapsulation = false;  // Encapsulation Mode 3: ESP in UDP 4500 (RFC 3948)
    core::Endpoint local;            // outer endpoints of the IKE SA when it was installed
    core::Endpoint remote;
    std::optional<crypto::ModpGroup> pfs_group;
    bool initiator = false;          // we ran Quick Mode as initiator
    core::TimePoint installed_at{};
    /// The lower of the Quick Mode's two nonces: of two SAs from colliding rekeys, the one with
    /// the lower value is redundant (the rule of RFC 7296 §2.8.1, applied by both peers alike).
    std::vector<std::uint8_t> collision_nonce;
    std::optional<std::uint32_t> replaces;  // spi_in of the SA this one rekeys (as we judged it)
    bool superseded = false;                // a newer SA replaces it: never rekeyed, deleted soon
    std::optional<core::TimePoint> delete_at;

    /// KEYMAT of one direction in ipsec::Sa order: encryption key | salt | integrity key.
    crypto::SecretBytes keymat_in() const;
    crypto::SecretBytes keymat_out() const;
    ChildSa clone() const;
    /// Both tunnel the same traffic (a rekey of one another, or a duplicate).
    bool same_selectors(const ChildSa& o) const noexcept { return local_ts == o.local_ts && remote_ts == o.remote_ts; }
};

}  // namespace mipsec::ipsec::ike
