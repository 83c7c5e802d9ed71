// SPDX-License-Identifier: MIT
#include "ipsec/sa.hpp"

#include <algorithm>
#include <limits>
#include <new>
#include <utility>

#include "core/endian.hpp"
#include "ipsec/esp_wire.hpp"

namespace mipsec::ipsec {

using core::DropReason;
using core::Verdict;

namespace {

struct SuiteInfo {
    EspSuite suite;
    std::string_view name;
    std::size_t enc_key_len;  // without salt
    std::size_t integ_key_len;
    std::size_t icv_len;
};

// HMAC keys are exactly the hash length: RFC 2404 §3 (20 bytes), RFC 4868 §2.1.1 (32 bytes).
constexpr SuiteInfo suites[] = {
    {EspSuite::AesGcm128, "aes128gcm16", 16, 0, 16},
    {EspSuite::AesGcm256, "aes256gcm16", 32, 0, 16},
    {EspSuite::ChaCha20Poly1305, "chacha20poly1305", 32, 0, 16},
    {EspSuite::AesCbc128HmacSha1, "aes128-sha1", 16, 20, 12},
    {EspSuite::AesCbc256HmacSha1, "aes256-sha1", 32, 20, 12},
    {EspSuite::AesCbc128HmacSha256, "aes128-sha256", 16, 32, 16},
    {EspSuite::AesCbc256HmacSha256, "aes256-sha256", 32, 32, 16},
};
constexpr std::size_t salt_len = 4;

const SuiteInfo& info(EspSuite s) noexcept {
    for (const auto& i : suites)
        if (i.suite == s) return i;
    return suites[0];
}

crypto::AeadAlgorithm aead_algorithm(EspSuite s) noexcept {
    switch (s) {
        case EspSuite::AesGcm256: return crypto::AeadAlgorithm::AesGcm256;
        case EspSuite::ChaCha20Poly1305: return crypto::AeadAlgorithm::ChaCha20Poly1305;
        default: return crypto::AeadAlgorithm::AesGcm128;
    }
}
crypto::CipherAlgorithm cipher_algorithm(EspSuite s) noexcept {
    return info(s).enc_key_len == 32 ? crypto::CipherAlgorithm::AesCbc256 : crypto::CipherAlgorithm::AesCbc128;
}
crypto::MacAlgorithm mac_algorithm(EspSuite s) noexcept {
    return info(s).integ_key_len == 20 ? crypto::MacAlgorithm::HmacSha1 : crypto::MacAlgorithm::HmacSha256;
}

/// AAD of RFC 4106 §5 / RFC 7634 §3: SPI || Seq (8 bytes) or SPI || Seq high || Seq low (12).
std::size_t build_aad(std::span<std::uint8_t, 12> aad, std::uint32_t spi, std::uint64_t seq, bool esn) noexcept {
    core::store_be32(aad.data(), spi);
    if (!esn) {
        core::store_be32(aad.data() + 4, static_cast<std::uint32_t>(seq));
        return 8;
    }
    core::store_be64(aad.data() + 4, seq);
    return 12;
}

}  // namespace

std::string_view to_string(EspSuite s) noexcept { return info(s).name; }
std::optional<EspSuite> parse_esp_suite(std::string_view name) noexcept {
    for (const auto& i : suites)
        if (i.name == name) return i.suite;
    return std::nullopt;
}
bool is_aead(EspSuite s) noexcept { return info(s).integ_key_len == 0; }
std::size_t encryption_keymat_len(EspSuite s) noexcept { return info(s).enc_key_len + (is_aead(s) ? salt_len : 0); }
std::size_t integrity_keymat_len(EspSuite s) noexcept { return info(s).integ_key_len; }
std::size_t keymat_len(EspSuite s) noexcept { return encryption_keymat_len(s) + integrity_keymat_len(s); }
std::size_t iv_len(EspSuite s) noexcept { return is_aead(s) ? 8 : crypto::Cipher::iv_len; }
std::size_t icv_len(EspSuite s) noexcept { return info(s).icv_len; }

std::string_view to_string(LifetimeState s) noexcept {
    switch (s) {
        case LifetimeState::Live: return "live";
        case LifetimeState::Soft: return "soft_expired";
        case LifetimeState::Hard: return "hard_expired";
    }
    return "unknown";
}

Sa::Sa(Direction direction, const Config& config, crypto::Random& random, core::TimePoint now)
    : direction_(direction),
      config_(config),
      random_(&random),
      created_(now),
      counter_(direction == Direction::Outbound ? config.initial_seq : 0),
      window_(config.replay_window, direction == Direction::Inbound ? config.initial_seq : 0) {}

Sa::Sa(Sa&&) noexcept = default;
Sa& Sa::operator=(Sa&&) noexcept = default;
Sa::~Sa() = default;

core::Result<Sa> Sa::create(Direction direction, const Config& config, const crypto::SecretBytes& keymat,
                            crypto::Random& random, core::TimePoint now) {
    if (config.spi == 0) return core::Errc::InvalidArgument;
    if (keymat.size() != keymat_len(config.suite)) return core::Errc::InvalidArgument;
    if (!ReplayWindow::valid_size(config.replay_window)) return core::Errc::InvalidArgument;
    if (!config.esn && config.initial_seq > std::numeric_limits<std::uint32_t>::max())
        return core::Errc::InvalidArgument;
    Sa sa(direction, config, random, now);
    const auto& i = info(config.suite);
    auto key = keymat.span();
    if (is_aead(config.suite)) {
        auto aead = crypto::Aead::create(aead_algorithm(config.suite), key.first(i.enc_key_len));
        if (!aead) return aead.error();
        sa.aead_ = std::move(*aead);
        sa.salt_ = crypto::SecretBytes(key.subspan(i.enc_key_len, salt_len));
    } else {
        auto cipher = crypto::Cipher::create(cipher_algorithm(config.suite), key.first(i.enc_key_len));
        if (!cipher) return cipher.error();
        auto mac = crypto::Mac::create(mac_algorithm(config.suite), key.subspan(i.enc_key_len, i.integ_key_len));
        if (!mac) return mac.error();
        sa.cipher_ = std::move(*cipher);
        sa.mac_ = std::move(*mac);
    }
    return sa;
}

Verdict Sa::refuse(DropReason r) noexcept {
    ++counters_.drops;
    if (r == DropReason::ReplayedSequence || r == DropReason::SequenceTooOld) ++counters_.replay_drops;
    if (r == DropReason::AuthFailed) ++counters_.auth_failures;
    return Verdict::drop(r);
}

std::size_t Sa::sealed_len(std::size_t payload_len) const noexcept {
    const std::size_t align = is_aead(config_.suite) ? 4 : crypto::Cipher::block_len;
    return header_len() + payload_len + EspTrailer::pad_len_for(payload_len, align) + EspTrailer::len +
           icv_len(config_.suite);
}

Verdict Sa::seal(core::PacketBuf& packet, std::uint8_t next_header, core::TimePoint now, bool defer) noexcept {
    if (direction_ != Direction::Outbound) return refuse(DropReason::Internal);
    if (lifetime_state(now) == LifetimeState::Hard) return refuse(DropReason::SaExpired);
    // RFC 4303 §3.3.3: the counter MUST NOT cycle; the SA has to be replaced instead.
    const std::uint64_t last = config_.esn ? std::numeric_limits<std::uint64_t>::max()
                                           : std::numeric_limits<std::uint32_t>::max();
    if (counter_ >= last) return refuse(DropReason::SequenceExhausted);

    const bool aead = is_aead(config_.suite);
    const std::size_t payload_len = packet.size();
    // §2.4: CBC needs whole blocks; every suite needs the ICV 4-byte aligned.
    const std::size_t pad_len = EspTrailer::pad_len_for(payload_len, aead ? 4 : crypto::Cipher::block_len);
    const std::size_t hdr_len = header_len();
    const std::size_t icv = icv_len(config_.suite);
    const std::size_t tail_len = pad_len + EspTrailer::len + icv;
    if (packet.headroom() < hdr_len) return refuse(DropReason::NoHeadroom);
    if (packet.tailroom() < tail_len) return refuse(DropReason::NoTailroom);
    if (!packet.push(hdr_len) || !packet.put(tail_len)) return refuse(DropReason::Internal);

    const std::uint64_t seq = ++counter_;
    auto bytes = packet.bytes();
    EspHeader{config_.spi, static_cast<std::uint32_t>(seq)}.emit(bytes);
    auto iv = bytes.subspan(EspHeader::len, hdr_len - EspHeader::len);
    auto plaintext = bytes.subspan(hdr_len, payload_len + pad_len + EspTrailer::len);
    EspTrailer::fill_padding(plaintext.subspan(payload_len, pad_len));
    EspTrailer{static_cast<std::uint8_t>(pad_len), next_header}.emit(plaintext);
    auto icv_out = bytes.last(icv);

    bool ok = false;
    if (aead) {
        if (config_.aead_iv == AeadIv::Counter) {
            core::store_be64(iv.data(), seq);
        } else {
            random_->fill(iv);
        }
        std::array<std::uint8_t, crypto::Aead::nonce_len> nonce;
        std::copy(salt_.span().begin(), salt_.span().end(), nonce.begin());
        std::copy(iv.begin(), iv.end(), nonce.begin() + salt_len);
        std::array<std::uint8_t, 12> aad;
        const std::size_t aad_len = build_aad(aad, config_.spi, seq, config_.esn);
        if (defer && !shared_aead_) {
            try {
                shared_aead_ = aead_->clone();
            } catch (const std::bad_alloc&) {
            }
        }
        if (defer && shared_aead_) {
            // The bytes stay where they are while the stages below push headers: the offset
            // is taken from the block's start.
            packet.meta().aead_seal = core::PendingAeadSeal{shared_aead_, nonce, aad, static_cast<std::uint8_t>(aad_len),
                                                            static_cast<std::uint32_t>(packet.headroom() + hdr_len),
                                                            static_cast<std::uint32_t>(plaintext.size())};
            ok = true;
        } else {
            ok = aead_->seal(nonce, std::span(aad).first(aad_len), plaintext,
                             std::span<std::uint8_t, crypto::Aead::tag_len>(icv_out.data(), crypto::Aead::tag_len));
        }
    } else {
        random_->fill(iv);
        ok = cipher_->encrypt(std::span<const std::uint8_t, crypto::Cipher::iv_len>(iv.data(), crypto::Cipher::iv_len),
                              plaintext);
        // RFC 4303 §3.3.2.1 / §2.2.1: with ESN the high half is appended for the MAC only.
        mac_->update(bytes.first(hdr_len + plaintext.size()));
        if (config_.esn) {
            std::array<std::uint8_t, 4> high;
            core::store_be32(high.data(), static_cast<std::uint32_t>(seq >> 32));
            mac_->update(high);
        }
        ok = mac_->finish(icv_out) && ok;
    }
    if (!ok) return refuse(DropReason::Internal);
    ++counters_.packets;
    counters_.bytes += payload_len;
    return Verdict::pass();
}

Verdict Sa::open(core::PacketBuf& packet, core::TimePoint now, std::uint8_t& next_header) noexcept {
    if (direction_ != Direction::Inbound) return refuse(DropReason::Internal);
    if (lifetime_state(now) == LifetimeState::Hard) return refuse(DropReason::SaExpired);
    if (auto opened = std::exchange(packet.meta().esp_opened, std::nullopt)) return accept_opened(packet, *opened, next_header);
    const bool aead = is_aead(config_.suite);
    const std::size_t hdr_len = header_len();
    const std::size_t icv = icv_len(config_.suite);
    const std::size_t min_ciphertext = aead ? EspTrailer::len : crypto::Cipher::block_len;
    if (packet.size() < hdr_len + min_ciphertext + icv) return refuse(DropReason::Truncated);
    const std::size_t ciphertext_len = packet.size() - hdr_len - icv;
    if (!aead && ciphertext_len % crypto::Cipher::block_len != 0) return refuse(DropReason::Malformed);

    auto esp = EspView::check(packet.bytes());
    if (!esp) return refuse(DropReason::Truncated);
    if (esp->spi() != config_.spi) return refuse(DropReason::UnknownSpi);
    std::uint64_t seq = esp->seq();
    if (config_.esn) {
        auto full = infer_esn(esp->seq(), window_.highest(), window_.size());
        if (!full) return refuse(DropReason::SequenceTooOld);
        seq = *full;
    }
    // §3.4.3: cheap duplicate/too-old rejection before spending any crypto on the packet.
    if (auto r = window_.check(seq); r != DropReason::None) return refuse(r);
    return aead ? open_aead(packet, seq, next_header) : open_cbc(packet, seq, next_header);
}

Verdict Sa::open_aead(core::PacketBuf& packet, std::uint64_t seq, std::uint8_t& next_header) noexcept {
    auto bytes = packet.bytes();
    const std::size_t hdr_len = header_len();
    const std::size_t ciphertext_len = bytes.size() - hdr_len - crypto::Aead::tag_len;
    std::array<std::uint8_t, crypto::Aead::nonce_len> nonce;
    std::copy(salt_.span().begin(), salt_.span().end(), nonce.begin());
    std::copy_n(bytes.begin() + EspHeader::len, crypto::Aead::nonce_len - salt_len, nonce.begin() + salt_len);
    // The AAD carries the inferred high half, so a wrong ESN guess fails here (Appendix A).
    std::array<std::uint8_t, 12> aad;
    const std::size_t aad_len = build_aad(aad, config_.spi, seq, config_.esn);
    auto tag = bytes.last(crypto::Aead::tag_len);
    if (!aead_->open(nonce, std::span(aad).first(aad_len), bytes.subspan(hdr_len, ciphertext_len),
                     std::span<const std::uint8_t, crypto::Aead::tag_len>(tag.data(), crypto::Aead::tag_len)))
        return refuse(DropReason::AuthFailed);
    return finish_open(packet, ciphertext_len, seq, next_header);
}

Verdict Sa::open_cbc(core::PacketBuf& packet, std::uint64_t seq, std::uint8_t& next_header) noexcept {
    auto bytes = packet.bytes();
    const std::size_t hdr_len = header_len();
    const std::size_t icv = icv_len(config_.suite);
    const std::size_t ciphertext_len = bytes.size() - hdr_len - icv;
    // Encrypt-then-MAC: verify before decrypting anything (§3.4.4.1).
    mac_->update(bytes.first(hdr_len + ciphertext_len));
    if (config_.esn) {
        std::array<std::uint8_t, 4> high;
        core::store_be32(high.data(), static_cast<std::uint32_t>(seq >> 32));
        mac_->update(high);
    }
    std::array<std::uint8_t, crypto::Mac::max_output_len> expected;
    auto expected_icv = std::span(expected).first(icv);
    if (!mac_->finish(expected_icv)) return refuse(DropReason::Internal);
    if (!crypto::constant_time_equal(expected_icv, bytes.last(icv))) return refuse(DropReason::AuthFailed);
    auto iv = bytes.subspan(EspHeader::len, crypto::Cipher::iv_len);
    if (!cipher_->decrypt(std::span<const std::uint8_t, crypto::Cipher::iv_len>(iv.data(), crypto::Cipher::iv_len),
                          bytes.subspan(hdr_len, ciphertext_len)))
        return refuse(DropReason::Internal);
    return finish_open(packet, ciphertext_len, seq, next_header);
}

Verdict Sa::finish_open(core::PacketBuf& packet, std::size_t plaintext_len, std::uint64_t seq,
                        std::uint8_t& next_header) noexcept {
    const std::size_t hdr_len = header_len();
    auto plaintext = packet.bytes().subspan(hdr_len, plaintext_len);
    auto trailer = EspTrailer::parse(plaintext);
    if (!trailer) return refuse(DropReason::BadPadding);
    const std::size_t payload_len = plaintext_len - EspTrailer::len - trailer->pad_length;
    // §2.4: the receiver SHOULD check the default 1, 2, 3, ... padding.
    if (!EspTrailer::padding_valid(plaintext.subspan(payload_len, trailer->pad_length)))
        return refuse(DropReason::BadPadding);
    // §3.4.3: only now, with the packet authenticated, may the window move.
    if (auto r = window_.accept(seq); r != DropReason::None) return refuse(r);
    if (!packet.pull(hdr_len) || !packet.trim(packet.size() - payload_len)) return refuse(DropReason::Internal);
    next_header = trailer->next_header;
    ++counters_.packets;
    counters_.bytes += payload_len;
    return Verdict::pass();
}

Verdict Sa::accept_opened(core::PacketBuf& packet, const core::OpenedEsp& opened, std::uint8_t& next_header) noexcept {
    // Opened with another SA's key (a SPI reused meanwhile): the bytes are no longer what the
    // peer sent, and cannot be opened again.
    if (!open_key_ || opened.key_id != open_key_->id) return refuse(DropReason::AuthFailed);
    auto esp = EspView::check(packet.bytes());
    if (!esp || esp->spi() != config_.spi || esp->seq() != opened.seq) return refuse(DropReason::Internal);
    // §3.4.3 in open()'s order, so a packet is refused for the same reason either way: a
    // duplicate or too old first, then what the thread found opening it; only an authenticated
    // packet moves the window.
    if (auto r = window_.check(opened.seq); r != DropReason::None) return refuse(r);
    if (opened.result != DropReason::None) return refuse(opened.result);
    if (auto r = window_.accept(opened.seq); r != DropReason::None) return refuse(r);
    const std::size_t hdr_len = header_len();
    if (packet.size() < hdr_len + opened.payload_len || !packet.pull(hdr_len) || !packet.trim(packet.size() - opened.payload_len))
        return refuse(DropReason::Internal);
    next_header = opened.next_header;
    ++counters_.packets;
    counters_.bytes += opened.payload_len;
    return Verdict::pass();
}

std::shared_ptr<const core::EspOpenKey> Sa::open_key(std::uint16_t udp_port) noexcept {
    if (direction_ != Direction::Inbound || !is_aead(config_.suite) || config_.esn) return nullptr;
    if (open_key_ && open_key_->udp_port == udp_port) return open_key_;
    try {
        auto key = std::make_shared<core::EspOpenKey>();
        key->id = core::EspOpenKey::next_id();
        key->spi = config_.spi;
        key->udp_port = udp_port;
        if (open_key_) {
            key->aead = open_key_->aead;
        } else {
            key->aead = aead_->clone();
            if (!key->aead) return nullptr;
        }
        std::copy(salt_.span().begin(), salt_.span().end(), key->salt.begin());
        open_key_ = std::move(key);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
    return open_key_;
}

LifetimeState Sa::lifetime_state(core::TimePoint now) const noexcept {
    auto reached = [&](const Lifetime& l) {
        return (l.bytes != 0 && counters_.bytes >= l.bytes) || (l.packets != 0 && counters_.packets >= l.packets) ||
               (l.time != core::Duration::zero() && now - created_ >= l.time);
    };
    if (reached(config_.lifetime.hard)) return LifetimeState::Hard;
    if (reached(config_.lifetime.soft)) return LifetimeState::Soft;
    return LifetimeState::Live;
}

std::optional<core::TimePoint> Sa::next_lifetime_deadline(core::TimePoint now) const noexcept {
    std::optional<core::TimePoint> next;
    for (auto t : {config_.lifetime.soft.time, config_.lifetime.hard.time}) {
        if (t == core::Duration::zero()) continue;
        const auto at = created_ + t;
        if (at > now && (!next || at < *next)) next = at;
    }
    return next;
}

}  // namespace mipsec::ipsec
