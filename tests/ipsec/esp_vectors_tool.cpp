// SPDX-License-Identifier: MIT
// Test helper for tools/esp_check.py, the independent interop check of ipsec.esp_tunnel.
//   esp_vectors_tool seal   prints JSON: for every suite with ESN off and on, the SA (SPI,
//                           KEYMAT, endpoints, first sequence number) and tunnel packets
//                           sealed by EspTunnelStage, with the inner packets they carry.
//   esp_vectors_tool open   reads the same shape from stdin (packets sealed by Python, field
//                           "wire"), opens each with EspTunnelStage and prints per packet
//                           {"verdict": "pass" | drop reason, "inner": hex}.
// Keys and payloads come from a fixed-seed generator so runs are reproducible; CBC IVs come
// from the system CSPRNG as in production.
#include <cstdint>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/buffer_pool.hpp"
#include "core/ipv4.hpp"
#include "core/logger.hpp"
#include "crypto/random.hpp"
#include "core/detached_stage_context.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "nat/udp_encap_stage.hpp"

using namespace mipsec;
using nlohmann::json;

namespace {

const auto left = *core::Ipv4Address::parse("192.0.2.1");
const auto right = *core::Ipv4Address::parse("198.51.100.2");

std::string hex(std::span<const std::uint8_t> b) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (auto x : b) {
        s += digits[x >> 4];
        s += digits[x & 15];
    }
    return s;
}
std::vector<std::uint8_t> unhex(const std::string& s) {
    std::vector<std::uint8_t> out;
    for (std::size_t i = 0; i + 1 < s.size(); i += 2) out.push_back(static_cast<std::uint8_t>(std::stoul(s.substr(i, 2), nullptr, 16)));
    return out;
}

std::vector<std::uint8_t> inner_packet(std::mt19937& rng, std::size_t payload_len) {
    std::vector<std::uint8_t> p(20 + payload_len);
    core::Ipv4Header ip;
    ip.tos = static_cast<std::uint8_t>(rng() & 0xFC);
    ip.total_length = static_cast<std::uint16_t>(p.size());
    ip.identification = static_cast<std::uint16_t>(rng());
    ip.protocol = core::ip_protocol::udp;
    ip.source = *core::Ipv4Address::parse("10.1.0.5");
    ip.destination = *core::Ipv4Address::parse("10.2.0.9");
    ip.emit(p);
    for (std::size_t i = 20; i < p.size(); ++i) p[i] = static_cast<std::uint8_t>(rng());
    return p;
}

int seal() {
    std::mt19937 rng(0xE5B);
    crypto::SystemRandom system_random;
    core::BufferPool pool(2, 4096);
    core::DetachedStageContext ctx(pool);
    json cases = json::array();
    std::uint32_t spi = 0x1000;
    for (auto suite : ipsec::all_esp_suites) {
      for (bool udp : {false, true}) {
        for (bool esn : {false, true}) {
            ++spi;
            crypto::SecretBytes keymat(ipsec::keymat_len(suite));
            for (auto& b : keymat.mutable_span()) b = static_cast<std::uint8_t>(rng());
            // With ESN start just below a 2^32 boundary so the high half changes mid-run.
            const std::uint64_t initial = esn ? 0x1FFFFFFFEull : 0;
            ipsec::Sa::Config cfg{.spi = spi, .suite = suite, .esn = esn, .initial_seq = initial};
            auto sa = ipsec::Sa::create(ipsec::Sa::Direction::Outbound, cfg, keymat, system_random, ctx.now());
            if (!sa) {
                std::cerr << "Sa::create: " << sa.error().message() << "\n";
                return 1;
            }
            ipsec::EspTunnelStage stage({left, right});
            if (!stage.install_outbound(std::move(*sa))) return 1;
            stage.set_udp_encapsulation(udp);
            // RFC 3948: the UDP stage sits below ESP and wraps its output in UDP 4500.
            nat::UdpEncapStage udp_stage({.keepalive = core::Duration::zero()});
            json packets = json::array();
            for (std::size_t len : {0u, 1u, 13u, 50u, 255u}) {
                auto inner = inner_packet(rng, len);
                auto buf = pool.acquire(stage.headroom() + udp_stage.headroom());
                if (!buf.resize(inner.size())) return 1;
                std::copy(inner.begin(), inner.end(), buf.data());
                auto v = stage.encapsulate(buf, ctx);
                if (v.passed() && udp) v = udp_stage.encapsulate(buf, ctx);
                if (!v.passed()) {
                    std::cerr << "encapsulate: " << core::to_string(v.reason) << "\n";
                    return 1;
                }
                packets.push_back({{"seq", stage.outbound()->sequence()}, {"inner", hex(inner)}, {"wire", hex(buf.bytes())}});
            }
            cases.push_back({{"suite", std::string(ipsec::to_string(suite))},
                             {"esn", esn},
                             {"udp", udp},
                             {"spi", spi},
                             {"keymat", keymat.reveal_hex()},
                             {"initial_seq", initial},
                             {"src", left.to_string()},
                             {"dst", right.to_string()},
                             {"packets", packets}});
        }
      }
    }
    std::cout << json{{"cases", cases}}.dump(1) << "\n";
    return 0;
}

int open() {
    json in = json::parse(std::cin);
    crypto::SystemRandom system_random;
    core::BufferPool pool(2, 4096);
    core::DetachedStageContext ctx(pool);
    json out = json::array();
    for (const auto& c : in.at("cases")) {
        auto suite = ipsec::parse_esp_suite(c.at("suite").get<std::string>());
        if (!suite) {
            std::cerr << "unknown suite " << c.at("suite") << "\n";
            return 1;
        }
        crypto::SecretBytes keymat(unhex(c.at("keymat").get<std::string>()));
        ipsec::Sa::Config cfg{.spi = c.at("spi").get<std::uint32_t>(),
                              .suite = *suite,
                              .esn = c.at("esn").get<bool>(),
                              .initial_seq = c.at("initial_seq").get<std::uint64_t>()};
        auto sa = ipsec::Sa::create(ipsec::Sa::Direction::Inbound, cfg, keymat, system_random, ctx.now());
        if (!sa) {
            std::cerr << "Sa::create: " << sa.error().message() << "\n";
            return 1;
        }
        // Python seals from src to dst; this stage is the receiving end.
        ipsec::EspTunnelStage stage({*core::Ipv4Address::parse(c.at("dst").get<std::string>()),
                                     *core::Ipv4Address::parse(c.at("src").get<std::string>())});
        if (!stage.install_inbound(std::move(*sa))) return 1;
        const bool udp = c.value("udp", false);
        nat::UdpEncapStage udp_stage({.keepalive = core::Duration::zero()});
        json results = json::array();
        for (const auto& p : c.at("packets")) {
            auto wire = unhex(p.at("wire").get<std::string>());
            auto buf = pool.acquire(0);
            if (!buf.resize(wire.size())) return 1;
            std::copy(wire.begin(), wire.end(), buf.data());
            auto v = udp ? udp_stage.decapsulate(buf, ctx) : core::Verdict::pass();
            if (v.passed()) v = stage.decapsulate(buf, ctx);
            results.push_back({{"verdict", v.passed() ? std::string("pass") : std::string(core::to_string(v.reason))},
                               {"inner", v.passed() ? hex(buf.bytes()) : std::string()}});
        }
        out.push_back({{"suite", c.at("suite")}, {"esn", c.at("esn")}, {"udp", udp}, {"results", results}});
    }
    std::cout << out.dump(1) << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "seal") return seal();
        if (mode == "open") return open();
    } catch (const std::exception& e) {
        std::cerr << "esp_vectors_tool: " << e.what() << "\n";
        return 1;
    }
    std::cerr << "usage: esp_vectors_tool seal | open < cases.json\n";
    return 2;
}
