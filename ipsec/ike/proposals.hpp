// SPDX-License-Identifier: MIT
#pragma once
// Phase-1 (IKE SA) and phase-2 (ESP) proposals as values, their Transform encodings and the
// responder's selection (RFC 2409 §5 and Appendix A, RFC 2407 §4.5, RFC 3947 §5).
//
// Encodings follow what strongSwan 5.9 sends (observed on the wire):
//   IKE : KEY_IKE, Encryption AES-CBC (7), Key-Length, Hash, Group, Auth PSK, Life-Type s,
//         Life-Duration (TV when it fits 16 bits, else TLV).
//   ESP : transform ID 20 (AES-GCM, 16-byte ICV) or 12 (AES-CBC); Key-Length always,
//         Authentication Algorithm only for CBC (GCM: combined mode), Group Description when PFS,
//         Encapsulation Mode 3 (UDP tunnel) with NAT-T else 1, SA-Life-Type s, SA-Life-Duration.
// Our initiators send one Proposal payload holding one Transform per alternative (ORed);
// responders accept any layout, walk the offer in the initiator's order and answer with one
// proposal holding exactly the chosen transform, copied as received.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/address.hpp"
#include "core/time.hpp"
#include "crypto/cipher.hpp"
#include "crypto/diffie_hellman.hpp"
#include "crypto/hash.hpp"
#include "crypto/mac.hpp"
#include "ipsec/ike/payloads.hpp"

namespace mipsec::ipsec::ike {

enum class IkeHash : std::uint8_t { Sha1, Sha256 };

/// One IKE SA alternative: AES-CBC key size, hash (which is also the prf), MODP group.
struct IkeProposal {
    std::uint16_t key_bits = 128;  // 128 or 256
    IkeHash hash = IkeHash::Sha1;
    crypto::ModpGroup group = crypto::ModpGroup::Modp2048;
    core::Duration lifetime = std::chrono::seconds(15840);  // strongSwan: 4 h + 10 %

    Transform to_transform(std::uint8_t number) const;
    /// nullopt when the transform is not one we implement (other cipher, auth method, ...).
    static std::optional<IkeProposal> from_transform(const Transform& t);
    /// Same algorithms (the lifetime is not part of the match).
    bool same_algorithms(const IkeProposal& o) const noexcept {
        return key_bits == o.key_bits && hash == o.hash && group == o.group;
    }
    crypto::CipherAlgorithm cipher() const noexcept;
    crypto::MacAlgorithm prf() const noexcept;
    crypto::HashAlgorithm hash_algorithm() const noexcept;
    friend bool operator==(const IkeProposal&, const IkeProposal&) = default;
};

/// The ESP transforms negotiated here (names as ipsec::EspSuite and strongSwan's esp=).
enum class EspAlgorithm : std::uint8_t {
    AesGcm128,            // aes128gcm16: transform 20, KEYMAT 16 + 4 salt
    AesGcm256,            // aes256gcm16: KEYMAT 32 + 4
    AesCbc128HmacSha1,    // aes128-sha1: transform 12 + auth 2, KEYMAT 16 + 20 (ICV 96 bit)
    AesCbc256HmacSha1,    // aes256-sha1
    AesCbc128HmacSha256,  // aes128-sha256: auth 5, KEYMAT 16 + 32 (ICV 128 bit, RFC 4868)
    AesCbc256HmacSha256,  // aes256-sha256
};
std::string_view to_string(EspAlgorithm a) noexcept;
bool is_aead(EspAlgorithm a) noexcept;
/// Cipher key bytes, without salt.
std::size_t cipher_key_len(EspAlgorithm a) noexcept;
/// 4 for AES-GCM (RFC 4106 §8.1), else 0.
std::size_t salt_len(EspAlgorithm a) noexcept;
/// HMAC key bytes (0 for AEAD).
std::size_t integrity_key_len(EspAlgorithm a) noexcept;

struct EspProposal {
    EspAlgorithm algorithm = EspAlgorithm::AesGcm128;
    core::Duration lifetime = std::chrono::seconds(3960);  // strongSwan: 1 h + 10 %

    /// `pfs_group` adds Group Description; `udp_encap` picks Encapsulation Mode 3 over 1.
    Transform to_transform(std::uint8_t number, std::optional<crypto::ModpGroup> pfs_group, bool udp_encap) const;
    friend bool operator==(const EspProposal&, const EspProposal&) = default;
};

/// An ESP transform as received: algorithm, PFS group, encapsulation, lifetime.
struct EspOffer {
    EspProposal proposal;
    std::optional<crypto::ModpGroup> pfs_group;
    std::uint16_t encapsulation = encapsulation_mode::tunnel;
    /// nullopt for anything we do not implement (ESN, kilobyte lifetimes, unknown groups...).
    static std::optional<EspOffer> from_transform(const Transform& t);
};

std::optional<crypto::ModpGroup> modp_group_from(std::uint64_t group_description) noexcept;

/// SA payload offering `proposals` (IKE: protocol ISAKMP, no SPI).
SaPayload make_ike_sa(std::span<const IkeProposal> proposals);
/// SA payload offering `proposals` for ESP with our inbound SPI.
SaPayload make_esp_sa(std::span<const EspProposal> proposals, std::uint32_t spi_in,
                      std::optional<crypto::ModpGroup> pfs_group, bool udp_encap);

struct IkeSelection {
    IkeProposal proposal;   // algorithms from `ours`, lifetime as offered
    SaPayload reply;        // one proposal, one transform, copied from the offer
};
/// Responder: the first transform of the offer (initiator's order) that matches one of `ours`.
std::optional<IkeSelection> select_ike(const SaPayload& offer, std::span<const IkeProposal> ours);

struct EspSelection {
    EspOffer offer;
    std::uint32_t spi_out = 0;  // the initiator's inbound SPI
    SaPayload reply;            // one proposal with our SPI and the chosen transform
};
/// Responder: first acceptable ESP transform. PFS: when `pfs_group` is set the transform must
/// carry it; without it any supported group (or none) is accepted. The encapsulation mode must
/// be tunnel or UDP tunnel as `udp_encap` says (RFC 3947 §5: not mixed).
std::optional<EspSelection> select_esp(const SaPayload& offer, std::span<const EspProposal> ours,
                                       std::optional<crypto::ModpGroup> pfs_group, bool udp_encap,
                                       std::uint32_t spi_in);

/// Initiator: checks the responder's reply against what we offered. nullopt if it is not
/// exactly one proposal with one transform that we offered.
std::optional<IkeProposal> accept_ike_reply(const SaPayload& reply, std::span<const IkeProposal> offered);
struct EspAccepted {
    EspOffer offer;
    std::uint32_t spi_out = 0;  // responder's inbound SPI
};
std::optional<EspAccepted> accept_esp_reply(const SaPayload& reply, std::span<const EspProposal> offered,
                                            std::optional<crypto::ModpGroup> pfs_group, bool udp_encap);

// ---- names for failure details and logs, as strongSwan writes proposals ("aes128-sha1-modp2048",
// "aes128gcm16-modp2048"), so a user can compare them with the peer's configuration.

/// "aes128-sha1-modp2048".
std::string to_string(const IkeProposal& p);
/// Our phase-1 offer: "aes128-sha1-modp2048, aes256-sha256-modp2048".
std::string describe(std::span<const IkeProposal> proposals);
/// Our phase-2 offer: "aes128gcm16 (no PFS)" or "aes128gcm16-modp2048, aes128-sha256-modp2048".
std::string describe(std::span<const EspProposal> proposals, std::optional<crypto::ModpGroup> pfs_group);
/// What a peer offered in an SA payload, every transform named, also those we do not
/// implement ("3des-md5-modp1024", "aes256gcm16-modp3072", "aes128gcm16 [transport]").
std::string describe_offer(const SaPayload& offer);

/// A traffic selector as IKEv1 sends it in IDci/IDcr: an IPv4 prefix, any protocol and port.
/// /32 goes out as ID_IPV4_ADDR, everything else as ID_IPV4_ADDR_SUBNET (strongSwan's rule).
IdPayload to_id(core::Ipv4Prefix ts);
/// ID_IPV4_ADDR, ID_IPV4_ADDR_SUBNET (contiguous mask) or a range that is exactly a prefix;
/// protocol and port must be 0 (we do not negotiate port selectors).
std::optional<core::Ipv4Prefix> from_id(const IdPayload& id);

}  // namespace mipsec::ipsec::ike
