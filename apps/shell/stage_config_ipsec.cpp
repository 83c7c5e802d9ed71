// SPDX-License-Identifier: MIT
// JSON -> ipsec stage configs. Manual SAs let ESP run before (and without) IKE.
#include <cstdio>
#include <stdexcept>

#include "apps/shell/key_log.hpp"
#include "apps/shell/stage_factory.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "ipsec/sa.hpp"

namespace mipsec::shell {

namespace {

std::uint32_t read_spi(const ConfigReader& c, std::string_view key) {
    const std::string expected = "an SPI from 256 to 4294967295, as a number or \"0x...\" hex string (0-255 are reserved, RFC 4303 §2.1)";
    std::uint64_t v = 0;
    const auto& raw = c.raw(key);
    if (raw.is_number_unsigned()) {
        v = raw.get<std::uint64_t>();
    } else if (raw.is_string()) {
        auto text = raw.get<std::string>();
        char* end = nullptr;
        v = std::strtoull(text.c_str(), &end, 0);
        if (text.empty() || *end != '\0') c.fail(key, "\"" + text + "\" is not a number", expected);
    } else {
        c.fail(key, "is " + raw.dump(), expected);
    }
    if (v < 256 || v > 0xFFFFFFFFull) c.fail(key, "is " + std::to_string(v) + ", out of range", expected);
    return static_cast<std::uint32_t>(v);
}

ipsec::Lifetime read_lifetime(const ConfigReader& c) {
    c.only({"bytes", "packets", "seconds"});
    ipsec::Lifetime l;
    l.bytes = static_cast<std::uint64_t>(c.integer_or("bytes", 0, 0, INT64_MAX));
    l.packets = static_cast<std::uint64_t>(c.integer_or("packets", 0, 0, INT64_MAX));
    l.time = std::chrono::seconds(c.integer_or("seconds", 0, 0, 10LL * 365 * 24 * 3600));
    return l;
}

std::string suite_names() {
    return "one of \"aes128gcm16\", \"aes256gcm16\", \"chacha20poly1305\", \"aes128-sha1\", \"aes256-sha1\", \"aes128-sha256\", \"aes256-sha256\"";
}

std::unique_ptr<core::Stage> build_esp(const ConfigReader& c, const StageBuildContext& ctx) {
    c.only({"type", "local", "remote", "ttl", "allowed_inner_source", "udp_encapsulation", "sa", "key_log"});
    ipsec::EspTunnelStage::Config cfg;
    cfg.local = c.address("local");
    cfg.remote = c.address("remote");
    if (cfg.local == cfg.remote) c.fail("remote", "equals local", "the peer's tunnel endpoint");
    cfg.ttl = static_cast<std::uint8_t>(c.integer_or("ttl", 64, 1, 255));
    if (c.has("allowed_inner_source")) cfg.allowed_inner_source = c.prefix("allowed_inner_source");
    // Manual SAs have no NAT detection: the user says whether the peer expects ESP in UDP.
    cfg.udp_encapsulation = c.boolean_or("udp_encapsulation", false);
    auto stage = std::make_unique<ipsec::EspTunnelStage>(cfg);

    auto sa_cfg = c.optional_object("sa");
    if (!sa_cfg) return stage;  // SAs will come from IKE
    sa_cfg->only({"suite", "esn", "replay_window", "inbound", "outbound", "soft_lifetime", "hard_lifetime"});
    auto suite_name = sa_cfg->string("suite");
    auto suite = ipsec::parse_esp_suite(suite_name);
    if (!suite) sa_cfg->fail("suite", "\"" + suite_name + "\" is not a supported ESP suite", suite_names());
    ipsec::Sa::Config common;
    common.suite = *suite;
    common.esn = sa_cfg->boolean_or("esn", false);
    common.replay_window = static_cast<std::size_t>(sa_cfg->integer_or("replay_window", 1024, 32, 4096));
    if (auto soft = sa_cfg->optional_object("soft_lifetime")) common.lifetime.soft = read_lifetime(*soft);
    if (auto hard = sa_cfg->optional_object("hard_lifetime")) common.lifetime.hard = read_lifetime(*hard);

    if (ctx.random == nullptr) throw std::logic_error("stage factory: no random source for ESP");
    crypto::Random& random = *ctx.random;
    const std::size_t key_len = ipsec::keymat_len(*suite);

    struct Direction {
        const char* key;
        ipsec::Sa::Direction direction;
    };
    std::optional<ipsec::Sa> inbound, outbound;
    std::uint32_t spis[2] = {0, 0};
    crypto::SecretBytes keys[2];
    int i = 0;
    for (auto d : {Direction{"inbound", ipsec::Sa::Direction::Inbound}, Direction{"outbound", ipsec::Sa::Direction::Outbound}}) {
        auto dir = sa_cfg->object(d.key);
        dir.only({"spi", "key", "key_file"});
        auto config = common;
        config.spi = read_spi(dir, "spi");
        // KEYMAT: encryption key (+ 4-byte salt for AEAD suites) then integrity key (RFC 4106 §8.1).
        crypto::SecretBytes keymat(dir.secret_hex_bytes("key", key_len, key_len));
        auto sa = ipsec::Sa::create(d.direction, config, keymat, random, ctx.now);
        if (!sa) dir.fail("", "cannot create the SA: " + sa.error().message(), "valid settings for " + suite_name);
        spis[i] = config.spi;
        keys[i] = std::move(keymat);
        (d.direction == ipsec::Sa::Direction::Inbound ? inbound : outbound).emplace(std::move(*sa));
        ++i;
    }
    if (ctx.dry_run) return stage;
    auto installed = stage->install(std::move(*inbound), std::move(*outbound));
    if (!installed) sa_cfg->fail("", "cannot install the SAs: " + installed.error().message(), "distinct, valid SPIs");
    if (auto path = c.optional_string("key_log")) {
        // Inbound SA: peer -> us; outbound: us -> peer (Wireshark matches on addresses and SPI).
        try {
            append_esp_key_log(*path, {cfg.remote, cfg.local, spis[0], *suite, keys[0].span()});
            append_esp_key_log(*path, {cfg.local, cfg.remote, spis[1], *suite, keys[1].span()});
        } catch (const std::runtime_error& e) {
            c.fail("key_log", e.what(), "a writable file path");
        }
    }
    return stage;
}

}  // namespace

void add_ipsec_stage_types(std::vector<StageType>& out) {
    out.push_back({"ipsec.esp_tunnel", "ESP tunnel mode (RFC 4303) with manual or IKE-keyed SAs", build_esp});
}

}  // namespace mipsec::shell
