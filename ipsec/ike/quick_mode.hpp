// SPDX-License-Identifier: MIT
#pragma once
// QuickMode: the phase-2 exchange that creates one tunnel-mode ESP SA pair (RFC 2409 §5.5,
// RFC 2407 §4.5):
//   I->R  *HASH(1), SA, Ni [, KE], IDci, IDcr
//   R->I  *HASH(2), SA, Nr [, KE], IDci, IDcr
//   I->R  *HASH(3)
// HASH first, SA second; the hashes cover the exact payload bytes after the HASH payload,
// padding excluded (RFC 2409 §5.5). Encapsulation mode 3 (UDP tunnel) when NAT-T is in use,
// else 1; no NAT-OA (tunnel mode, RFC 3947 §5). IDs always sent: ID_IPV4_ADDR for /32, else
// ID_IPV4_ADDR_SUBNET. The initiator has its ChildSa after message 2, the responder after
// message 3 (take_child()). A message that does not authenticate gives Dropped and leaves the
// task unchanged. Both roles in one class. Not thread-safe.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/diffie_hellman.hpp"
#include "crypto/random.hpp"
#include "ipsec/ike/child_sa.hpp"
#include "ipsec/ike/ike_sa.hpp"
#include "ipsec/ike/message.hpp"
#include "ipsec/ike/session_config.hpp"

namespace mipsec::ipsec::ike {

class QuickMode {
public:
    struct InitiatorParams {
        std::vector<EspProposal> proposals;
        std::optional<crypto::ModpGroup> pfs_group;
        core::Ipv4Prefix local_ts;   // IDci
        core::Ipv4Prefix remote_ts;  // IDcr
        std::uint32_t spi_in = 0;
        core::Duration rekey_time{};            // soft lifetime of the result
        std::optional<std::uint32_t> replaces;  // spi_in of the SA this one rekeys
    };
    /// Responder policy: may a tunnel between the initiator's `remote_ts` and our `local_ts` be set up?
    using TsPolicy = std::function<bool(core::Ipv4Prefix remote_ts, core::Ipv4Prefix local_ts)>;

    static QuickMode initiator(IkeSa& sa, crypto::Random& random, std::uint32_t message_id, InitiatorParams p);
    static QuickMode responder(IkeSa& sa, const SessionConfig& cfg, crypto::Random& random,
                               std::uint32_t message_id, std::uint32_t spi_in, TsPolicy policy);

    TaskStatus build(Message& out);
    TaskStatus process(const Message& in);

    std::uint32_t message_id() const noexcept { return message_id_; }
    bool is_initiator() const noexcept { return initiator_; }
    unsigned step() const noexcept { return step_; }
    const TaskFailure& failure() const noexcept { return failure_; }
    std::optional<std::uint32_t> replaces() const noexcept { return params_.replaces; }
    std::uint32_t spi_in() const noexcept { return params_.spi_in; }
    /// Initiator: what this exchange offers, for failure details ("aes128gcm16 (no PFS)").
    std::string describe_our_offer() const { return describe(params_.proposals, params_.pfs_group); }
    /// The negotiated SA once the exchange is done (moves it out; empty optional afterwards).
    std::optional<ChildSa> take_child() { return std::exchange(child_, std::nullopt); }

private:
    QuickMode(IkeSa& sa, crypto::Random& random, std::uint32_t mid, bool initiator)
        : sa_(&sa), random_(&random), message_id_(mid), initiator_(initiator) {}
    TaskStatus fail(FailReason r, std::uint16_t notify, std::string detail);
    TaskStatus process_qm1(const Message& in);
    TaskStatus process_qm2(const Message& in);
    TaskStatus process_qm3(const Message& in);
    bool make_ke();
    bool derive_child(const EspOffer& offer, std::uint32_t spi_out);
    bool udp_encap() const noexcept { return sa_->peer_nat_t && sa_->nat_detected(); }

    IkeSa* sa_;
    crypto::Random* random_;
    std::uint32_t message_id_;
    bool initiator_;
    unsigned step_ = 0;
    bool failed_ = false;
    TaskFailure failure_;

    InitiatorParams params_;  // responder: spi_in, pfs and the echoed selectors land here too
    const SessionConfig* cfg_ = nullptr;  // responder
    TsPolicy policy_;
    std::unique_ptr<crypto::DiffieHellman> dh_;
    crypto::SecretBytes g_qm_xy_;
    Bytes ni_, nr_, peer_ke_;
    SaPayload reply_sa_;
    std::vector<Payload> reply_ids_;
    std::optional<EspOffer> chosen_;
    std::uint32_t spi_out_ = 0;
    std::optional<ChildSa> child_;
};

}  // namespace mipsec::ipsec::ike
