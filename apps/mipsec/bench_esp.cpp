// SPDX-License-Identifier: MIT
// `mipsec bench esp`: the ESP stage's seal and open rates on one core, per suite and packet
// size, beside the raw rate of the same cipher library on the same bytes, measured in the same
// run. The ratio ESP/raw is the figure: it shows what framing, padding, the replay window and
// the stage cost on top of the cryptography itself.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "apps/mipsec/bench.hpp"
#include "core/buffer_pool.hpp"
#include "core/detached_stage_context.hpp"
#include "core/ipv4.hpp"
#include "crypto/aead.hpp"
#include "crypto/cipher.hpp"
#include "crypto/mac.hpp"
#include "crypto/random.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "ipsec/sa.hpp"

namespace mipsec::bench {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t batch = 256;

std::vector<std::uint8_t> inner_packet(std::size_t len) {
    std::vector<std::uint8_t> p(len, 0xA5);
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(len);
    h.protocol = core::ip_protocol::udp;
    h.source = core::Ipv4Address::from_octets(10, 0, 0, 1);
    h.destination = core::Ipv4Address::from_octets(10, 0, 1, 1);
    h.emit(p);
    return p;
}

struct Rates {
    double seal_pps = 0;
    double open_pps = 0;
};

// Runs `step` (which processes one batch and returns how many packets it handled, timing only
// what it wants timed through the `timed` accumulator) until `duration` of timed work.
template <class Step>
double rate(std::chrono::nanoseconds duration, Step step) {
    std::uint64_t packets = 0;
    Clock::duration timed{};
    while (timed < duration) packets += step(timed);
    return static_cast<double>(packets) / std::chrono::duration<double>(timed).count();
}

Rates measure_stage(ipsec::EspSuite suite, std::size_t len, std::chrono::nanoseconds duration) {
    crypto::KeystreamRandom random;  // what `mipsec run` gives its stages
    core::BufferPool pool(batch + 8, 2048);
    core::DetachedStageContext ctx(pool, 128);
    ctx.set_now(core::Clock::now());
    const auto local = core::Ipv4Address::from_octets(192, 0, 2, 1);
    const auto remote = core::Ipv4Address::from_octets(192, 0, 2, 2);
    crypto::SecretBytes keymat(ipsec::keymat_len(suite));
    random.fill(keymat.mutable_span());
    auto make = [&](ipsec::Sa::Direction d) {
        ipsec::Sa::Config c;
        c.spi = 0x1000;
        c.suite = suite;
        return std::move(*ipsec::Sa::create(d, c, keymat, random, ctx.now()));
    };
    ipsec::EspTunnelStage tx({local, remote});
    ipsec::EspTunnelStage rx({remote, local});
    (void)tx.install_outbound(make(ipsec::Sa::Direction::Outbound));
    (void)rx.install_inbound(make(ipsec::Sa::Direction::Inbound));
    const auto inner = inner_packet(len);
    const std::size_t headroom = tx.headroom() + 64;

    std::vector<core::PacketBuf> bufs;
    for (std::size_t i = 0; i < batch; ++i) bufs.push_back(pool.acquire(headroom));
    auto load_inner = [&](core::PacketBuf& b) {
        b.reset(headroom);
        (void)b.resize(len);
        // Only the header must be valid again; the rest may stay as the last run left it.
        std::memcpy(b.data(), inner.data(), core::Ipv4Header::len);
    };
    for (auto& b : bufs) {
        load_inner(b);
        std::memcpy(b.data(), inner.data(), len);
    }

    Rates r;
    r.seal_pps = rate(duration, [&](Clock::duration& timed) {
        for (auto& b : bufs) load_inner(b);
        auto t0 = Clock::now();
        for (auto& b : bufs) (void)tx.encapsulate(b, ctx);
        timed += Clock::now() - t0;
        return batch;
    });
    // Open: seal a fresh batch (untimed: every sequence number is new for the replay window),
    // then time only the decapsulation.
    std::uint64_t failures = 0;
    r.open_pps = rate(duration, [&](Clock::duration& timed) {
        for (auto& b : bufs) {
            load_inner(b);
            (void)tx.encapsulate(b, ctx);
        }
        auto t0 = Clock::now();
        for (auto& b : bufs)
            if (!rx.decapsulate(b, ctx).passed()) ++failures;
        timed += Clock::now() - t0;
        return batch;
    });
    if (failures != 0) std::fprintf(stderr, "bench: %llu packets failed to open\n", static_cast<unsigned long long>(failures));
    return r;
}

// The same cipher work on the same byte counts with the library alone: AEAD seal/open with an
// 8-byte AAD, or CBC + HMAC over IV || ciphertext, on a buffer that stays in place.
Rates measure_raw(ipsec::EspSuite suite, std::size_t len, std::chrono::nanoseconds duration) {
    crypto::KeystreamRandom random;
    const bool aead = ipsec::is_aead(suite);
    const std::size_t block = aead ? 4 : 16;
    const std::size_t body = (len + 2 + block - 1) / block * block;  // payload + padding + trailer
    std::vector<std::uint8_t> key(ipsec::encryption_keymat_len(suite));
    random.fill(key);
    std::vector<std::vector<std::uint8_t>> packets(batch, std::vector<std::uint8_t>(16 + body + 16, 0x5A));
    std::array<std::uint8_t, 12> nonce{};
    std::array<std::uint8_t, 8> aad{};
    Rates r;
    if (aead) {
        auto alg = suite == ipsec::EspSuite::AesGcm128   ? crypto::AeadAlgorithm::AesGcm128
                   : suite == ipsec::EspSuite::AesGcm256 ? crypto::AeadAlgorithm::AesGcm256
                                                        : crypto::AeadAlgorithm::ChaCha20Poly1305;
        auto a = std::move(*crypto::Aead::create(alg, std::span(key).first(key.size() - 4)));
        std::uint64_t counter = 0;
        auto seal_batch = [&] {
            for (auto& p : packets) {
                core::store_be64(nonce.data() + 4, ++counter);
                (void)a->seal(nonce, aad, std::span(p).subspan(8, body), std::span<std::uint8_t, 16>(p.data() + 8 + body, 16));
            }
        };
        r.seal_pps = rate(duration, [&](Clock::duration& timed) {
            auto t0 = Clock::now();
            seal_batch();
            timed += Clock::now() - t0;
            return batch;
        });
        r.open_pps = rate(duration, [&](Clock::duration& timed) {
            std::uint64_t first = counter;
            seal_batch();
            auto t0 = Clock::now();
            std::uint64_t n = first;
            for (auto& p : packets) {
                core::store_be64(nonce.data() + 4, ++n);
                (void)a->open(nonce, aad, std::span(p).subspan(8, body), std::span<const std::uint8_t, 16>(p.data() + 8 + body, 16));
            }
            timed += Clock::now() - t0;
            return batch;
        });
        return r;
    }
    auto calg = (suite == ipsec::EspSuite::AesCbc128HmacSha1 || suite == ipsec::EspSuite::AesCbc128HmacSha256)
                    ? crypto::CipherAlgorithm::AesCbc128
                    : crypto::CipherAlgorithm::AesCbc256;
    const bool sha1 = suite == ipsec::EspSuite::AesCbc128HmacSha1 || suite == ipsec::EspSuite::AesCbc256HmacSha1;
    std::vector<std::uint8_t> mac_key(ipsec::integrity_keymat_len(suite));
    random.fill(mac_key);
    auto cipher = std::move(*crypto::Cipher::create(calg, key));
    auto mac = std::move(*crypto::Mac::create(sha1 ? crypto::MacAlgorithm::HmacSha1 : crypto::MacAlgorithm::HmacSha256, mac_key));
    const std::size_t icv = sha1 ? 12 : 16;
    std::array<std::uint8_t, 16> iv{};
    std::array<std::uint8_t, 64> tag{};
    r.seal_pps = rate(duration, [&](Clock::duration& timed) {
        auto t0 = Clock::now();
        for (auto& p : packets) {
            random.fill(iv);
            (void)cipher->encrypt(iv, std::span(p).subspan(24, body));
            (void)mac->compute(std::span(p).first(24 + body), std::span(tag).first(icv));
        }
        timed += Clock::now() - t0;
        return batch;
    });
    r.open_pps = rate(duration, [&](Clock::duration& timed) {
        auto t0 = Clock::now();
        for (auto& p : packets) {
            (void)mac->compute(std::span(p).first(24 + body), std::span(tag).first(icv));
            (void)cipher->decrypt(iv, std::span(p).subspan(24, body));
        }
        timed += Clock::now() - t0;
        return batch;
    });
    return r;
}

}  // namespace

int run_esp(const EspOptions& options) {
    const auto duration = std::chrono::milliseconds(options.milliseconds);
    std::printf("ESP stage vs raw crypto, one core, best of %d alternating rounds of %d ms (packets/s; Gbit/s of inner packets; ratio = stage/raw)\n",
                options.rounds, options.milliseconds);
    std::printf("%-17s %5s | %11s %7s %11s %6s | %11s %7s %11s %6s\n", "suite", "bytes", "seal pps", "Gbit/s", "raw pps",
                "ratio", "open pps", "Gbit/s", "raw pps", "ratio");
    for (const auto& name : options.suites) {
        auto suite = ipsec::parse_esp_suite(name);
        if (!suite) {
            std::fprintf(stderr, "mipsec bench esp: unknown suite \"%s\"\n", name.c_str());
            return 2;
        }
        for (auto len : options.sizes) {
            // Alternate stage and raw rounds and keep each one's best: interference from
            // other load only ever slows a round down, and both sides get the same chances.
            Rates stage, raw;
            for (int round = 0; round < options.rounds; ++round) {
                auto s1 = measure_stage(*suite, len, duration);
                auto r1 = measure_raw(*suite, len, duration);
                stage = {std::max(stage.seal_pps, s1.seal_pps), std::max(stage.open_pps, s1.open_pps)};
                raw = {std::max(raw.seal_pps, r1.seal_pps), std::max(raw.open_pps, r1.open_pps)};
            }
            auto gbps = [len](double pps) { return pps * static_cast<double>(len) * 8 / 1e9; };
            std::printf("%-17s %5zu | %11.0f %7.2f %11.0f %6.2f | %11.0f %7.2f %11.0f %6.2f\n", name.c_str(), len,
                        stage.seal_pps, gbps(stage.seal_pps), raw.seal_pps, stage.seal_pps / raw.seal_pps, stage.open_pps,
                        gbps(stage.open_pps), raw.open_pps, stage.open_pps / raw.open_pps);
            std::fflush(stdout);
        }
    }
    return 0;
}

}  // namespace mipsec::bench
