// SPDX-License-Identifier: MIT
#pragma once
// ModeConfig: the Transaction exchange in pull mode (draft-dukes-ike-mode-cfg §3,
// strongSwan mode_config.c), run after Main Mode and before Quick Mode:
//   client  -> *HASH, ATTR(CFG_REQUEST, id, INTERNAL_IP4_ADDRESS (empty or the old address)
//                          [, INTERNAL_IP4_NETMASK] [, INTERNAL_IP4_DNS])
//   gateway -> *HASH, ATTR(CFG_REPLY, same id, INTERNAL_IP4_ADDRESS = lease [, netmask] [, DNS...])
// HASH = prf(SKEYID_a, M-ID | ATTR payload). The gateway leases from an AddressPool under the
// session's owner key; no address means a failed exchange (and no reply). Not thread-safe.
#include <cstdint>
#include <optional>
#include <vector>

#include "ipsec/ike/address_pool.hpp"
#include "ipsec/ike/ike_sa.hpp"
#include "ipsec/ike/message.hpp"
#include "ipsec/ike/session_config.hpp"

namespace mipsec::ipsec::ike {

struct ModeConfigResult {
    core::Ipv4Address address;
    std::optional<core::Ipv4Address> netmask;
    std::vector<core::Ipv4Address> dns;
};

class ModeConfig {
public:
    static ModeConfig client(IkeSa& sa, const SessionConfig& cfg, std::uint32_t message_id,
                             std::optional<core::Ipv4Address> previous = std::nullopt);
    static ModeConfig gateway(IkeSa& sa, const SessionConfig& cfg, std::uint32_t message_id, AddressPool* pool,
                              std::uint64_t owner);

    TaskStatus build(Message& out);
    TaskStatus process(const Message& in);

    std::uint32_t message_id() const noexcept { return message_id_; }
    bool is_client() const noexcept { return client_; }
    const TaskFailure& failure() const noexcept { return failure_; }
    const std::optional<ModeConfigResult>& result() const noexcept { return result_; }

private:
    ModeConfig(IkeSa& sa, const SessionConfig& cfg, std::uint32_t mid, bool client)
        : sa_(&sa), cfg_(&cfg), message_id_(mid), client_(client) {}
    TaskStatus fail(FailReason r, std::string detail);

    IkeSa* sa_;
    const SessionConfig* cfg_;
    std::uint32_t message_id_;
    bool client_;
    unsigned step_ = 0;
    TaskFailure failure_;
    std::optional<core::Ipv4Address> previous_;
    AddressPool* pool_ = nullptr;
    std::uint64_t owner_ = 0;
    std::uint16_t identifier_ = 0;
    AttributeList requested_;
    std::optional<ModeConfigResult> result_;
};

}  // namespace mipsec::ipsec::ike
