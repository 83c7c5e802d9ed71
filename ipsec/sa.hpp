// SPDX-License-Identifier: MIT
#pragma once
// Sa: one direction of an ESP security association (RFC 4301 §4.4.2.1): SPI, algorithms and
// keys, the 64-bit sequence counter (outbound) or replay window (inbound), ESN, lifetimes and
// counters. It does the per-packet ESP work in place on a PacketBuf and knows nothing about
// tunnels or outer headers (EspTunnelStage adds those):
//   seal: [payload] -> [SPI|Seq|IV|enc(payload|pad|PadLen|NH)|ICV]   (push 8+IV, put pad+2+ICV)
//   open: the reverse, in RFC 4303 §3.4 order: replay pre-check, ICV/AEAD verify (constant
//         time), decrypt, padding check, and only then the replay window moves.
// Every failure is a DropReason and leaves the replay window as it was.
// Keys: the KEYMAT for this direction, encryption key first, then the integrity key
// (RFC 4301/IKE order); for AES-GCM and ChaCha20-Poly1305 the last 4 encryption bytes are the
// salt (RFC 4106 §8.1, RFC 7634 §4). The key schedules live in the crypto objects; the raw
// key bytes are not kept.
// The Random passed to create() must outlive the Sa (CBC IVs; optional AEAD IVs).
// With several data-path threads an AEAD SA's encryption may run outside the node's lock
// (core/aead_offload.hpp): seal() then leaves the AEAD call in the packet's metadata, and open()
// takes a packet a thread already opened with open_key(), doing under the lock only what
// orders packets: the sequence number out, the replay window in.
// Not thread-safe; move-only.
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "core/aead_offload.hpp"
#include "core/drop_reason.hpp"
#include "core/packet_buf.hpp"
#include "core/result.hpp"
#include "core/stage.hpp"
#include "core/time.hpp"
#include "crypto/aead.hpp"
#include "crypto/cipher.hpp"
#include "crypto/mac.hpp"
#include "crypto/random.hpp"
#include "crypto/secret_bytes.hpp"
#include "ipsec/replay_window.hpp"

namespace mipsec::ipsec {

/// The ESP transforms we implement (names as in strongSwan's esp= proposals).
enum class EspSuite : std::uint8_t {
    AesGcm128,           // "aes128gcm16": RFC 4106, 16-byte ICV, KEYMAT 16+4
    AesGcm256,           // "aes256gcm16": KEYMAT 32+4
    ChaCha20Poly1305,    // "chacha20poly1305": RFC 7634, KEYMAT 32+4
    AesCbc128HmacSha1,   // "aes128-sha1": RFC 3602 + RFC 2404 (ICV 12), KEYMAT 16+20
    AesCbc256HmacSha1,   // "aes256-sha1": KEYMAT 32+20
    AesCbc128HmacSha256, // "aes128-sha256": RFC 3602 + RFC 4868 (ICV 16), KEYMAT 16+32
    AesCbc256HmacSha256, // "aes256-sha256": KEYMAT 32+32
};
inline constexpr EspSuite all_esp_suites[] = {
    EspSuite::AesGcm128,         EspSuite::AesGcm256,         EspSuite::ChaCha20Poly1305,    EspSuite::AesCbc128HmacSha1,
    EspSuite::AesCbc256HmacSha1, EspSuite::AesCbc128HmacSha256, EspSuite::AesCbc256HmacSha256,
};
std::string_view to_string(EspSuite s) noexcept;
std::optional<EspSuite> parse_esp_suite(std::string_view name) noexcept;
bool is_aead(EspSuite s) noexcept;
/// Encryption key length including a 4-byte salt for AEAD suites.
std::size_t encryption_keymat_len(EspSuite s) noexcept;
/// HMAC key length (0 for AEAD suites).
std::size_t integrity_keymat_len(EspSuite s) noexcept;
/// Total KEYMAT for one direction: encryption_keymat_len + integrity_keymat_len.
std::size_t keymat_len(EspSuite s) noexcept;
/// Bytes between the ESP header and the encrypted payload (8 for AEAD, 16 for CBC).
std::size_t iv_len(EspSuite s) noexcept;
std::size_t icv_len(EspSuite s) noexcept;

/// Limits after which an SA should be replaced (soft) or may no longer be used (hard).
/// Zero means "no limit" for each field (RFC 4301 §4.4.2.1 lifetimes: time and bytes; packets
/// are an extension most implementations offer).
struct Lifetime {
    std::uint64_t bytes = 0;    // payload bytes protected/accepted
    std::uint64_t packets = 0;
    core::Duration time = core::Duration::zero();  // since the SA was created
    friend bool operator==(const Lifetime&, const Lifetime&) = default;
};
struct SaLifetimes {
    Lifetime soft;
    Lifetime hard;
};
enum class LifetimeState : std::uint8_t { Live, Soft, Hard };
std::string_view to_string(LifetimeState s) noexcept;

struct SaCounters {
    std::uint64_t packets = 0;  // sealed, or opened and authenticated
    std::uint64_t bytes = 0;    // payload bytes of those packets
    std::uint64_t drops = 0;    // every packet this SA refused
    std::uint64_t auth_failures = 0;
    std::uint64_t replay_drops = 0;  // ReplayedSequence and SequenceTooOld
};

class Sa {
public:
    enum class Direction : std::uint8_t { Inbound, Outbound };
    /// Where an AEAD suite's 8-byte explicit IV comes from. Counter (IV = 64-bit sequence
    /// number) is unique per key by construction (RFC 4106 §3.1, RFC 7634 §2); Random draws
    /// it from the injected Random and exists for reproducing published vectors whose IVs are
    /// arbitrary. CBC IVs are always random (RFC 3602 §2.1: unpredictable).
    enum class AeadIv : std::uint8_t { Counter, Random };

    struct Config {
        std::uint32_t spi = 0;  // never 0 on the wire (RFC 4303 §2.1)
        EspSuite suite = EspSuite::AesGcm128;
        bool esn = false;  // 64-bit extended sequence numbers (RFC 4303 §2.2.1)
        std::size_t replay_window = ReplayWindow::default_size;  // inbound only
        SaLifetimes lifetime{};
        /// Outbound: the number of the last packet sent (the next one is this + 1).
        /// Inbound: the highest sequence number already authenticated. 0 for a new SA.
        std::uint64_t initial_seq = 0;
        AeadIv aead_iv = AeadIv::Counter;
    };

    /// Bytes seal() pushes in front at most (header + IV) and puts behind (padding, trailer, ICV).
    static constexpr std::size_t max_header_len = 8 + crypto::Cipher::iv_len;
    static constexpr std::size_t max_trailer_len = 15 + 2 + 16;

    /// Builds the crypto objects. Errors: InvalidArgument for SPI 0, a KEYMAT of the wrong
    /// length, or a replay window outside ReplayWindow::valid_size; the crypto factory's error
    /// otherwise.
    static core::Result<Sa> create(Direction direction, const Config& config, const crypto::SecretBytes& keymat,
                                   crypto::Random& random, core::TimePoint now);

    Sa(Sa&&) noexcept;
    Sa& operator=(Sa&&) noexcept;
    ~Sa();

    /// Outbound: encrypts packet.bytes() (the payload) in place into an ESP packet carrying
    /// next_header. Drops: SaExpired (hard lifetime), SequenceExhausted (counter would wrap;
    /// RFC 4303 §3.3.3: rekey instead), NoHeadroom/NoTailroom.
    /// A packet that is refused keeps its bytes and consumes no sequence number.
    /// With `defer` (an AEAD suite), everything but the encryption: the seal is left in
    /// PacketMeta::aead_seal for ipsec::finish_seal(), the sequence number and counters taken.
    core::Verdict seal(core::PacketBuf& packet, std::uint8_t next_header, core::TimePoint now, bool defer = false) noexcept;
    /// Inbound: packet.bytes() starts at the SPI and ends with the ICV. On Pass it holds the
    /// decrypted payload (TFC padding included; the caller trims by the inner length) and
    /// next_header is set. Drops: SaExpired, Truncated, UnknownSpi (not this SA's SPI),
    /// Malformed (CBC length), SequenceTooOld,
    /// ReplayedSequence, AuthFailed, BadPadding. On a drop the buffer contents are unspecified.
    /// A packet carrying PacketMeta::esp_opened (ipsec::preopen_esp) is not decrypted again:
    /// its result is taken if this SA's open_key() opened it (AuthFailed otherwise), then the
    /// replay window is checked and moved as for any other.
    core::Verdict open(core::PacketBuf& packet, core::TimePoint now, std::uint8_t& next_header) noexcept;
    /// Inbound AEAD SAs without ESN: the key for data-path threads to open this SA's packets
    /// with (made on first use; the same one afterwards), `udp_port` recording where its ESP
    /// arrives (0: plain ESP). Null for CBC suites and ESN (the high half of the sequence number
    /// needs the window), or if it could not be made.
    std::shared_ptr<const core::EspOpenKey> open_key(std::uint16_t udp_port) noexcept;

    /// Size of the sealed ESP packet for a payload of payload_len bytes.
    std::size_t sealed_len(std::size_t payload_len) const noexcept;
    std::size_t header_len() const noexcept { return 8 + iv_len(config_.suite); }

    /// Lifetime state at `now` from the counters and age; Hard beats Soft.
    LifetimeState lifetime_state(core::TimePoint now) const noexcept;
    /// Earliest future time at which the time-based state changes, if any.
    std::optional<core::TimePoint> next_lifetime_deadline(core::TimePoint now) const noexcept;

    Direction direction() const noexcept { return direction_; }
    std::uint32_t spi() const noexcept { return config_.spi; }
    EspSuite suite() const noexcept { return config_.suite; }
    bool esn() const noexcept { return config_.esn; }
    const Config& config() const noexcept { return config_; }
    core::TimePoint created() const noexcept { return created_; }
    /// Outbound: sequence number of the last packet sealed. Inbound: highest authenticated.
    std::uint64_t sequence() const noexcept { return direction_ == Direction::Outbound ? counter_ : window_.highest(); }
    const ReplayWindow& replay_window() const noexcept { return window_; }
    const SaCounters& counters() const noexcept { return counters_; }

private:
    Sa(Direction direction, const Config& config, crypto::Random& random, core::TimePoint now);
    core::Verdict refuse(core::DropReason r) noexcept;
    core::Verdict open_aead(core::PacketBuf& packet, std::uint64_t seq, std::uint8_t& next_header) noexcept;
    core::Verdict open_cbc(core::PacketBuf& packet, std::uint64_t seq, std::uint8_t& next_header) noexcept;
    core::Verdict finish_open(core::PacketBuf& packet, std::size_t plaintext_len, std::uint64_t seq,
                              std::uint8_t& next_header) noexcept;
    core::Verdict accept_opened(core::PacketBuf& packet, const core::OpenedEsp& opened, std::uint8_t& next_header) noexcept;

    Direction direction_;
    Config config_;
    crypto::Random* random_;
    core::TimePoint created_;
    std::unique_ptr<crypto::Aead> aead_;
    std::shared_ptr<const crypto::Aead> shared_aead_;  // the prototype data-path threads clone
    std::shared_ptr<const core::EspOpenKey> open_key_;
    crypto::SecretBytes salt_;  // 4 bytes of keying material for AEAD suites (RFC 4106 §4)
    std::unique_ptr<crypto::Cipher> cipher_;
    std::unique_ptr<crypto::Mac> mac_;
    std::uint64_t counter_ = 0;
    ReplayWindow window_;
    SaCounters counters_;
};

}  // namespace mipsec::ipsec
