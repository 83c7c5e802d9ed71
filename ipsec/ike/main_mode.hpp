// SPDX-License-Identifier: MIT
#pragma once
// MainMode: the six-message Identity Protection exchange with pre-shared keys (RFC 2409 §5,
// §5.4), NAT-T detection (RFC 3947 §3) and the VIDs strongSwan needs to see:
//   1 I->R  SA, VID(DPD), VID(RFC 3947)
//   2 R->I  SA (one transform, copied), VID(DPD), VID(RFC 3947)
//   3 I->R  KE, Ni, NAT-D(peer), NAT-D(me)          (NAT-D only when both sent the VID)
//   4 R->I  KE, Nr, NAT-D(peer), NAT-D(me)
//   5 I->R  *ID, HASH_I [, N(INITIAL-CONTACT)]       (encrypted; floated to 4500 on NAT)
//   6 R->I  *ID, HASH_R
// The task fills the IkeSa (proposal, keys, cipher, NAT decision, peer ID); the Session does
// transport: it seals messages whose header has the E flag, opens encrypted replies before
// process(), commits IVs after a message was accepted, and retransmits. Both roles in one
// class, chosen by IkeSa::initiator. Not thread-safe.
#include <cstdint>
#include <memory>
#include <optional>

#include "crypto/diffie_hellman.hpp"
#include "crypto/random.hpp"
#include "ipsec/ike/ike_sa.hpp"
#include "ipsec/ike/message.hpp"
#include "ipsec/ike/session_config.hpp"

namespace mipsec::ipsec::ike {

class MainMode {
public:
    MainMode(IkeSa& sa, const SessionConfig& cfg, crypto::Random& random);

    TaskStatus build(Message& out);
    TaskStatus process(const Message& in);

    /// Messages handled so far (sent or received), 0..6; 6 = established. The initiator
    /// builds at 0/2/4 and processes at 1/3/5, the responder the other way round.
    unsigned step() const noexcept { return step_; }
    bool established() const noexcept { return step_ == 6 && !failed_; }
    bool failed() const noexcept { return failed_; }
    const TaskFailure& failure() const noexcept { return failure_; }
    /// True when the next message we build goes out encrypted (MM5/MM6): from then on the
    /// initiator floats to port 4500 if a NAT was detected (RFC 3947 §4).
    bool next_is_encrypted() const noexcept;

private:
    TaskStatus fail(FailReason r, std::uint16_t notify, std::string detail);
    TaskStatus process_sa(const Message& in);
    TaskStatus process_ke(const Message& in);
    TaskStatus process_auth(const Message& in);
    void build_ke(Message& out);
    void detect_nat(const Message& in);
    bool derive_keys();

    IkeSa& sa_;
    const SessionConfig& cfg_;
    crypto::Random& random_;
    unsigned step_ = 0;
    bool failed_ = false;
    TaskFailure failure_;

    SaPayload reply_sa_;  // responder: MM2's SA, chosen while processing MM1
    Bytes sai_b_;  // initiator's SA payload body from MM1 (both roles hash it, RFC 2409 §5)
    std::unique_ptr<crypto::DiffieHellman> dh_;
    Bytes g_xi_, g_xr_, ni_, nr_;
    crypto::SecretBytes g_xy_;
};

}  // namespace mipsec::ipsec::ike
