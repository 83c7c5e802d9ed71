// SPDX-License-Identifier: MIT
// JSON -> IKE-keyed VPN stages. Proposal names follow strongSwan's swanctl syntax.
#include <stdexcept>
#include <string>

#include "apps/shell/stage_factory.hpp"
#include "ipsec/vpn_client_stage.hpp"
#include "ipsec/vpn_gateway_stage.hpp"

namespace mipsec::shell {

namespace {

using ipsec::ike::EspAlgorithm;

// "aes128-sha1-modp2048" style: cipher-hash-group.
std::optional<ipsec::ike::IkeProposal> parse_ike_proposal(std::string_view text) {
    ipsec::ike::IkeProposal p;
    auto dash1 = text.find('-');
    auto dash2 = text.find('-', dash1 == std::string_view::npos ? dash1 : dash1 + 1);
    if (dash1 == std::string_view::npos || dash2 == std::string_view::npos) return std::nullopt;
    auto cipher = text.substr(0, dash1), hash = text.substr(dash1 + 1, dash2 - dash1 - 1), group = text.substr(dash2 + 1);
    if (cipher == "aes128") p.key_bits = 128;
    else if (cipher == "aes256") p.key_bits = 256;
    else return std::nullopt;
    if (hash == "sha1") p.hash = ipsec::ike::IkeHash::Sha1;
    else if (hash == "sha256") p.hash = ipsec::ike::IkeHash::Sha256;
    else return std::nullopt;
    if (group == "modp1024") p.group = crypto::ModpGroup::Modp1024;
    else if (group == "modp2048") p.group = crypto::ModpGroup::Modp2048;
    else return std::nullopt;
    return p;
}

std::optional<EspAlgorithm> parse_esp_algorithm(std::string_view text) {
    for (auto a : {EspAlgorithm::AesGcm128, EspAlgorithm::AesGcm256, EspAlgorithm::AesCbc128HmacSha1, EspAlgorithm::AesCbc256HmacSha1,
                   EspAlgorithm::AesCbc128HmacSha256, EspAlgorithm::AesCbc256HmacSha256})
        if (ipsec::ike::to_string(a) == text) return a;
    return std::nullopt;
}

std::vector<std::string> string_list(const ConfigReader& c, std::string_view key, std::vector<std::string> fallback) {
    if (!c.has(key)) return fallback;
    const auto& v = c.raw(key);
    if (!v.is_array() || v.empty()) c.fail(key, "is not a non-empty array", "an array of names like [\"aes128-sha1-modp2048\"]");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string()) throw ConfigError(c.pointer_of(key) + "/" + std::to_string(i), "is " + v[i].dump(), "a proposal name");
        out.push_back(v[i].get<std::string>());
    }
    return out;
}

ipsec::ike::IdPayload read_id(const ConfigReader& c, std::string_view key) {
    auto text = c.string(key);
    if (text.empty()) c.fail(key, "is empty", "an FQDN like \"cli.lab.example\" or an IPv4 address");
    if (auto a = core::Ipv4Address::parse(text)) return ipsec::ike::IdPayload::ipv4_addr(*a);
    return ipsec::ike::IdPayload::fqdn(text);
}

// Settings both roles share; `peer` restricts the PSK to one peer address (client).
void read_session(const ConfigReader& c, core::Ipv4Address local, std::optional<core::Ipv4Address> peer, ipsec::ike::SessionConfig& s) {
    auto psk = c.secret_string("psk");
    if (psk.size() < 8) c.fail(c.secret_key("psk"), "is shorter than 8 characters", "a pre-shared key of at least 8 characters");
    std::optional<core::Ipv4Prefix> peer_prefix;
    if (peer) peer_prefix = core::Ipv4Prefix{*peer, 32};
    s.psks.push_back({peer_prefix, std::move(psk)});
    s.local_id = c.has("local_id") ? read_id(c, "local_id") : ipsec::ike::IdPayload::ipv4_addr(local);
    if (c.has("remote_id")) s.remote_id = read_id(c, "remote_id");
    s.ike_proposals.clear();
    auto ike_names = string_list(c, "ike_proposals", {"aes128-sha1-modp2048"});
    for (std::size_t i = 0; i < ike_names.size(); ++i) {
        auto p = parse_ike_proposal(ike_names[i]);
        if (!p) throw ConfigError(c.pointer_of("ike_proposals") + "/" + std::to_string(i), "\"" + ike_names[i] + "\" is not a supported IKE proposal",
                                  "aes128|aes256 - sha1|sha256 - modp1024|modp2048, e.g. \"aes128-sha1-modp2048\"");
        s.ike_proposals.push_back(*p);
    }
    // RFC 2407 §4.5 SA Life Duration, offered (client) or the most we accept (gateway).
    const auto ike_lifetime = std::chrono::seconds(c.integer_or("ike_lifetime_s", 15840, 10, 7 * 86400));
    for (auto& p : s.ike_proposals) p.lifetime = ike_lifetime;
    s.esp_proposals.clear();
    auto esp_names = string_list(c, "esp_proposals", {"aes128gcm16"});
    for (std::size_t i = 0; i < esp_names.size(); ++i) {
        const std::string& name = esp_names[i];
        const std::string pointer = c.pointer_of("esp_proposals") + "/" + std::to_string(i);
        if (auto a = parse_esp_algorithm(name)) {
            s.esp_proposals.push_back({*a});
            continue;
        }
        // strongSwan writes the PFS group into the ESP proposal ("aes256gcm16-modp2048");
        // here the algorithm and the group are two keys, as RFC 2409 §5.5 negotiates them.
        if (auto dash = name.rfind('-'); dash != std::string::npos && name.compare(dash + 1, 4, "modp") == 0 &&
                                          parse_esp_algorithm(std::string_view(name).substr(0, dash))) {
            const std::string algorithm = name.substr(0, dash), group = name.substr(dash + 1);
            const bool supported = group == "modp1024" || group == "modp2048";
            throw ConfigError(pointer,
                              "\"" + name + "\" names a Diffie-Hellman group; the PFS group goes in the \"pfs\" key" +
                                  (supported ? "" : " (" + group + " is not supported: modp1024 or modp2048)"),
                              "\"esp_proposals\": [\"" + algorithm + "\"], \"pfs\": \"" + (supported ? group : "modp2048") + "\"");
        }
        throw ConfigError(pointer, "\"" + name + "\" is not a supported ESP proposal",
                          "aes128gcm16, aes256gcm16, aes128-sha1, aes256-sha1, aes128-sha256 or aes256-sha256 "
                          "(the PFS group goes in the \"pfs\" key)");
    }
    if (c.has("pfs")) {
        auto g = c.choice("pfs", {"modp1024", "modp2048"});
        s.pfs_group = g == "modp1024" ? crypto::ModpGroup::Modp1024 : crypto::ModpGroup::Modp2048;
    }
    s.local_ts = c.prefix_list("local_ts");
    s.dpd_delay = std::chrono::seconds(c.integer_or("dpd_delay_s", 30, 0, 86400));
    s.dpd_timeout = std::chrono::seconds(c.integer_or("dpd_timeout_s", 150, 1, 86400));
    s.force_udp_encapsulation = c.boolean_or("force_encapsulation", false);
    s.nat_traversal = c.boolean_or("nat_traversal", true);
    s.child_rekey_time = std::chrono::seconds(c.integer_or("child_rekey_s", 3600, 0, 86400));
    s.ike_port = static_cast<std::uint16_t>(c.integer_or("ike_port", 500, 1, 65535));
    s.nat_t_port = static_cast<std::uint16_t>(c.integer_or("nat_t_port", 4500, 1, 65535));
    if (s.ike_port == s.nat_t_port) c.fail("nat_t_port", "equals ike_port", "a different port (4500)");
}

std::unique_ptr<core::Stage> build_vpn_client(const ConfigReader& c, const StageBuildContext& ctx) {
    c.only({"type", "local", "gateway", "psk", "psk_file", "local_id", "remote_id", "ike_proposals", "esp_proposals", "pfs",
            "request_address", "remote_ts", "local_ts", "dpd_delay_s", "dpd_timeout_s", "force_encapsulation", "nat_traversal",
            "child_rekey_s", "ike_port", "nat_t_port", "restart_s", "ttl", "key_log", "ike_lifetime_s",
            "reauth_margin_s", "wait_for_access_mode"});
    ipsec::VpnClientStage::Config cfg;
    cfg.local = c.address("local");
    cfg.gateway = c.address("gateway");
    read_session(c, cfg.local, cfg.gateway, cfg.session);
    cfg.session.request_virtual_ip = c.boolean_or("request_address", true);
    cfg.session.remote_ts = c.has("remote_ts") ? c.prefix("remote_ts") : core::Ipv4Prefix{core::Ipv4Address{0}, 0};
    cfg.restart_delay = std::chrono::seconds(c.integer_or("restart_s", 5, 1, 3600));
    if (c.has("reauth_margin_s")) {
        cfg.reauth_margin = std::chrono::seconds(c.integer_or("reauth_margin_s", 0, 1, 86400));
        if (cfg.reauth_margin * 2 > cfg.session.ike_proposals.front().lifetime)
            c.fail("reauth_margin_s", "is more than half the IKE lifetime", "at most ike_lifetime_s / 2 (default: a tenth of it)");
    }
    cfg.ttl = static_cast<std::uint8_t>(c.integer_or("ttl", 64, 1, 255));
    if (auto prefix = c.optional_string("key_log")) {
        if (prefix->empty()) c.fail("key_log", "is empty", "a file path prefix (<prefix>.esp_sa and <prefix>.ikev1_decryption_table are written)");
        if (ctx.key_log) cfg.key_log = ctx.key_log(*prefix);
    }
    // RFC 5265 detection above: no IKE until the mobile node layer says the node is outside.
    cfg.wait_for_access_mode = c.boolean_or("wait_for_access_mode", false);
    if (ctx.random == nullptr) throw std::logic_error("stage factory: no random source for IKE");
    return std::make_unique<ipsec::VpnClientStage>(std::move(cfg), *ctx.random);
}

ipsec::VpnGatewayStage::Config read_vpn_gateway(const ConfigReader& c, const StageBuildContext& ctx) {
    c.only({"type", "local", "psk", "psk_file", "local_id", "remote_id", "ike_proposals", "esp_proposals", "pfs", "pool",
            "local_ts", "dpd_delay_s", "dpd_timeout_s", "force_encapsulation", "nat_traversal", "child_rekey_s", "ike_port",
            "nat_t_port", "max_half_open", "max_sessions", "ttl", "ike_lifetime_s", "key_log"});
    ipsec::VpnGatewayStage::Config cfg;
    cfg.local = c.address("local");
    ipsec::ike::SessionConfig session;
    read_session(c, cfg.local, std::nullopt, session);
    if (session.local_ts.empty()) c.fail("local_ts", "is missing", "the protected networks, e.g. [\"10.99.1.0/24\"]");
    // The gateway answers rekeys; the clients (initiators) start them.
    if (!c.has("child_rekey_s")) session.child_rekey_time = core::Duration::zero();
    if (c.has("pool")) {
        auto pool = c.prefix("pool");
        if (pool.length > 30) c.fail("pool", "has no room for clients", "a prefix of /30 or shorter");
        cfg.responder.pool = pool;
    }
    cfg.responder.max_half_open = static_cast<std::size_t>(c.integer_or("max_half_open", 32, 1, 100000));
    cfg.responder.max_sessions = static_cast<std::size_t>(c.integer_or("max_sessions", 4096, 1, 1000000));
    cfg.responder.session = std::make_shared<const ipsec::ike::SessionConfig>(std::move(session));
    cfg.ttl = static_cast<std::uint8_t>(c.integer_or("ttl", 64, 1, 255));
    if (auto prefix = c.optional_string("key_log")) {
        if (prefix->empty()) c.fail("key_log", "is empty", "a file path prefix (<prefix>.esp_sa and <prefix>.ikev1_decryption_table are written)");
        if (ctx.key_log) cfg.key_log = ctx.key_log(*prefix);
    }
    return cfg;
}

std::unique_ptr<core::Stage> build_vpn_gateway(const ConfigReader& c, const StageBuildContext& ctx) {
    auto cfg = read_vpn_gateway(c, ctx);
    if (ctx.random == nullptr) throw std::logic_error("stage factory: no random source for IKE");
    return std::make_unique<ipsec::VpnGatewayStage>(std::move(cfg), *ctx.random);
}

// What a reload may change in a running gateway: what new negotiations use. local and the IKE
// ports are the sockets' and every SA's, ttl and key_log are set up once; those need a restart.
// "pool" may change its range but not appear or go (sessions hold the pool): refused below.
const std::vector<std::string> vpn_gateway_live_keys = {
    "psk", "local_id", "remote_id", "ike_proposals", "esp_proposals", "pfs", "pool", "local_ts", "dpd_delay_s",
    "dpd_timeout_s", "force_encapsulation", "nat_traversal", "child_rekey_s", "max_half_open", "max_sessions", "ike_lifetime_s"};

StageReconfiguration reconfigure_vpn_gateway(core::Stage& stage, const ConfigReader& c, const StageBuildContext& ctx) {
    auto& gateway = dynamic_cast<ipsec::VpnGatewayStage&>(stage);
    auto cfg = std::make_shared<ipsec::VpnGatewayStage::Config>(read_vpn_gateway(c, ctx));
    const auto* pool = gateway.responder().pool();
    if (pool && !cfg->responder.pool) c.fail("pool", "was removed, but clients may hold leases from it", "a restart to apply");
    if (!pool && cfg->responder.pool) c.fail("pool", "was added, but the running gateway has no pool to change", "a restart to apply");
    return [&gateway, cfg] {
        std::vector<std::string> out;
        const auto* running = gateway.responder().pool();
        const auto before = running ? std::optional(running->range()) : std::nullopt;
        const std::size_t outside = gateway.reconfigure(std::move(*cfg));
        if (before && running->range() != *before)
            out.push_back("pool " + before->to_string() + " -> " + running->range().to_string() + ", leases inside it kept" +
                          (outside ? ", " + std::to_string(outside) + " lease(s) outside it kept until their IKE SA ends" : ""));
        out.push_back("new negotiations use the new settings; established IKE and CHILD SAs are unchanged");
        return out;
    };
}

}  // namespace

void add_ike_stage_types(std::vector<StageType>& out) {
    out.push_back({"ipsec.vpn_gateway", "IKEv1 remote-access gateway: many clients, Mode Config pool, per-client ESP (and NAT-T)", build_vpn_gateway,
                   vpn_gateway_live_keys, reconfigure_vpn_gateway});
    out.push_back({"ipsec.vpn_client", "IKEv1 remote-access client (Main Mode PSK, Mode Config, Quick Mode, NAT-T, DPD) keying ESP", build_vpn_client});
}

}  // namespace mipsec::shell
