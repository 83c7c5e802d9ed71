// SPDX-License-Identifier: MIT
// JSON -> nat stage configs.
#include "apps/shell/stage_factory.hpp"
#include "nat/udp_encap_stage.hpp"

namespace mipsec::shell {

namespace {
std::unique_ptr<core::Stage> build_udp_encap(const ConfigReader& c, const StageBuildContext&) {
    c.only({"type", "local_port", "remote_port", "keepalive_s", "local", "remote", "ttl"});
    nat::UdpEncapStage::Config cfg;
    cfg.local_port = static_cast<std::uint16_t>(c.integer_or("local_port", 4500, 1, 65535));
    cfg.remote_port = static_cast<std::uint16_t>(c.integer_or("remote_port", 4500, 1, 65535));
    cfg.keepalive = std::chrono::seconds(c.integer_or("keepalive_s", 20, 0, 3600));
    cfg.local = c.optional_address("local");
    cfg.remote = c.optional_address("remote");
    cfg.ttl = static_cast<std::uint8_t>(c.integer_or("ttl", 64, 1, 255));
    return std::make_unique<nat::UdpEncapStage>(cfg);
}
}  // namespace

void add_nat_stage_types(std::vector<StageType>& out) {
    out.push_back({"nat.udp_encap", "UDP encapsulation of ESP for NAT traversal, keepalives (RFC 3948)", build_udp_encap});
}

}  // namespace mipsec::shell
