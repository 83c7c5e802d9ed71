// SPDX-License-Identifier: MIT
// mip_tool: a small driver for tools/mip_check.py (independent check with scapy and Python's
// hmac). It is a shell-side program, so it may read the clocks the cores never read.
//   mip_tool emit
//       prints "request <hex>" and "reply <hex>": the worked-example request (D,T, UDP Tunnel
//       Request, MHAE) and the reply a HomeAgent produces for it, NAT detected.
//   mip_tool process <key-hex> <spi> <home> <ha> <ip-src> <request-hex>
//       runs the UDP payload through a HomeAgent serving <home> with that SA (timestamps
//       checked against the system clock) and prints "code <n>" or "discard <reason>".
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "crypto/random.hpp"
#include "mip/home_agent.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;

namespace {

int usage() {
    std::cerr << "usage: mip_tool emit | process <key-hex> <spi> <home> <ha> <ip-src> <request-hex>\n";
    return 2;
}

core::Ipv4Address address(const char* text) {
    auto a = core::Ipv4Address::parse(text);
    if (!a) {
        std::cerr << "bad address: " << text << "\n";
        std::exit(2);
    }
    return *a;
}

mip::HomeAgent::Config ha_config(const test::Bytes& key, std::uint32_t spi, core::Ipv4Address home, core::Ipv4Address ha) {
    mip::HomeAgent::Config c;
    c.address = ha;
    c.home_network = {ha, 24};
    c.max_lifetime = 1800;
    mip::SecurityAssociation sa;
    sa.spi = spi;
    sa.key = crypto::SecretBytes(std::span<const std::uint8_t>(key));
    c.mobile_nodes.push_back({home, std::move(sa), ""});
    return c;
}

const char* discard_name(mip::HomeAgent::Discard d) {
    switch (d) {
    case mip::HomeAgent::Discard::None: return "none";
    case mip::HomeAgent::Discard::Malformed: return "malformed";
    case mip::HomeAgent::Discard::UnknownExtension: return "unknown_extension";
    case mip::HomeAgent::Discard::UnknownMobileNode: return "unknown_mobile_node";
    case mip::HomeAgent::Discard::NoAuthExtension: return "no_auth_extension";
    case mip::HomeAgent::Discard::UnknownSpi: return "unknown_spi";
    case mip::HomeAgent::Discard::UnexpectedFhae: return "unexpected_fhae";
    case mip::HomeAgent::Discard::CryptoFailure: return "crypto_failure";
    case mip::HomeAgent::Discard::UntrustedSource: return "untrusted_source";
    case mip::HomeAgent::Discard::AuthFailureUnanswered: return "auth_failure_unanswered";
    case mip::HomeAgent::Discard::IdentificationUnanswered: return "identification_unanswered";
    }
    return "?";
}

int emit() {
    const auto key = test::from_hex("00112233445566778899aabbccddeeff");
    const auto home = address("10.1.0.77");
    const auto ha = address("10.1.0.1");
    const auto coa = address("192.168.1.23");
    const std::uint64_t id = 0xe7a1b2c300000001u;
    mip::RequestExtensions ext;
    ext.udp_tunnel = mip::UdpTunnelRequest{};
    auto request = mip::build_request({0x22, 600, home, ha, coa, id}, ext, {256, key});
    if (!request) return 1;

    // The HA's clock is set to the request's timestamp so the exchange is reproducible.
    crypto::SystemRandom random;
    auto cfg = ha_config(key, 256, home, ha);
    const core::TimePoint now{};
    cfg.ntp_offset = std::chrono::seconds(id >> 32);
    mip::HomeAgent agent(std::move(cfg), random);
    auto out = agent.process(request->bytes(), {address("203.0.113.5"), ha, 40000, 434}, now);
    if (!out.reply) return 1;
    std::cout << "request " << test::to_hex(request->bytes()) << "\n";
    std::cout << "reply " << test::to_hex(out.reply->bytes()) << "\n";
    return 0;
}

int process(char** argv) {
    const auto key = test::from_hex(argv[0]);
    const auto spi = static_cast<std::uint32_t>(std::stoul(argv[1]));
    const auto home = address(argv[2]);
    const auto ha = address(argv[3]);
    const auto src = address(argv[4]);
    const auto request = test::from_hex(argv[5]);
    crypto::SystemRandom random;
    auto cfg = ha_config(key, spi, home, ha);
    const auto now = core::Clock::now();
    cfg.ntp_offset = mip::ntp_offset(std::chrono::system_clock::now(), now);
    mip::HomeAgent agent(std::move(cfg), random);
    auto out = agent.process(request, {src, ha, 40000, 434}, now);
    if (out.reply) {
        std::cout << "code " << int{out.code} << "\n";
        std::cout << "reply " << test::to_hex(out.reply->bytes()) << "\n";
    } else {
        std::cout << "discard " << discard_name(out.discard) << "\n";
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc == 2 && std::string(argv[1]) == "emit") return emit();
        if (argc == 8 && std::string(argv[1]) == "process") return process(argv + 2);
    } catch (const std::exception& e) {
        std::cerr << "mip_tool: " << e.what() << "\n";
        return 2;
    }
    return usage();
}
