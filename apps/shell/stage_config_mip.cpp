// SPDX-License-Identifier: MIT
// JSON -> mip stage configs.
#include "apps/shell/stage_factory.hpp"
#include "mip/ip_in_ip_stage.hpp"

namespace mipsec::shell {

namespace {
std::unique_ptr<core::Stage> build_ipip(const ConfigReader& c, const StageBuildContext&) {
    c.only({"type", "local", "remote", "ttl", "df"});
    mip::IpInIpStage::Config cfg;
    cfg.local = c.address("local");
    cfg.remote = c.address("remote");
    if (cfg.local == cfg.remote) c.fail("remote", "equals local", "the other tunnel endpoint");
    cfg.ttl = static_cast<std::uint8_t>(c.integer_or("ttl", 64, 1, 255));
    cfg.df_when_inner_clear = c.boolean_or("df", false);
    return std::make_unique<mip::IpInIpStage>(cfg);
}
}  // namespace

void add_mip_stage_types(std::vector<StageType>& out) {
    out.push_back({"mip.ipip", "IP-in-IP tunnel between two fixed endpoints (RFC 2003)", build_ipip});
}

}  // namespace mipsec::shell
