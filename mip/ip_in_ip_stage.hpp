// SPDX-License-Identifier: MIT
#pragma once
#include <cstdint>

#include "core/address.hpp"
#include "core/ipv4.hpp"
#include "core/stage.hpp"

namespace mipsec::mip {

/// IP-in-IP tunnel between two fixed endpoints (RFC 2003). Outward: [inner IPv4] becomes
/// [outer IPv4 proto 4 | inner]: TOS copied from the inner header, DF set whenever the inner
/// DF is set (§3.1 MUST), outer TTL from config (not copied), and a packet whose TTL is
/// already 0 is never encapsulated. Inward: accepts only protocol 4 from `remote` to `local`,
/// strips the outer header and drops an inner packet with TTL 0. Inner packets whose source
/// is either tunnel endpoint are refused (§4 loop prevention). The payload never moves.
/// Not thread-safe; one instance per tunnel.
/// Config: {"type": "mip.ipip", "local": "192.0.2.1", "remote": "192.0.2.2", "ttl": 64}
class IpInIpStage final : public core::Stage {
public:
    struct Config {
        core::Ipv4Address local;
        core::Ipv4Address remote;
        std::uint8_t ttl = 64;
        bool df_when_inner_clear = false;  // DF on the outer header even if the inner lacks it
    };
    explicit IpInIpStage(Config config) : config_(config) {}

    std::string_view name() const noexcept override { return "mip.ipip"; }
    std::size_t headroom() const noexcept override { return core::Ipv4Header::len; }
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;

    const Config& config() const noexcept { return config_; }

private:
    Config config_;
    std::uint16_t next_identification_ = 0;
};

}  // namespace mipsec::mip
