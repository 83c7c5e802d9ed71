// SPDX-License-Identifier: MIT
#pragma once
// IkeSa: the state of one ISAKMP SA that the exchange tasks (MainMode, ModeConfig, QuickMode)
// read and fill in: role, cookies, negotiated proposal, Phase1Keys, the MessageCipher, the
// NAT-T/DPD capabilities both VIDs announced, the NAT decision and the endpoints. Owned by a
// Session; tasks hold a reference. Also the task result vocabulary shared by the tasks.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/address.hpp"
#include "ipsec/ike/isakmp_header.hpp"
#include "ipsec/ike/message_cipher.hpp"
#include "ipsec/ike/payloads.hpp"
#include "ipsec/ike/phase1_keys.hpp"
#include "ipsec/ike/proposals.hpp"

namespace mipsec::ipsec::ike {

/// What a task's build()/process() leaves to its driver (each exchange is a task, as in strongSwan).
enum class TaskStatus : std::uint8_t {
    NeedMore,  // build: a reply is expected; process: build the next message
    Done,      // the exchange is complete (after this message)
    Failed,    // the exchange (and, in phase 1, the IKE SA) is over; see failure()
    Dropped,   // process: the message did not authenticate or was malformed; nothing changed
};

enum class FailReason : std::uint8_t {
    Timeout,               // retransmissions exhausted
    NoProposalChosen,      // no common IKE or ESP proposal
    AuthenticationFailed,  // wrong PSK / bad HASH_I / HASH_R / peer ID not allowed
    InvalidId,             // traffic selectors not acceptable
    InvalidKeyInformation, // bad KE value
    ProtocolError,         // missing or malformed payloads
    PeerDead,              // DPD got no R-U-THERE-ACK
    PeerNotified,          // the peer sent an error notify (see Failed::notify)
    NoAddress,             // Mode Config: pool exhausted / no address in the reply
    Expired,               // IKE SA lifetime reached (no re-authentication replaced it in time)
};
std::string_view to_string(FailReason r) noexcept;

struct TaskFailure {
    FailReason reason = FailReason::ProtocolError;
    std::uint16_t notify = 0;  // error notify to send to the peer (0: none)
    std::string detail;
};

struct IkeSa {
    bool initiator = true;
    Cookie cky_i{};
    Cookie cky_r{};
    IkeProposal proposal;
    std::optional<Phase1Keys> keys;
    std::optional<MessageCipher> cipher;
    bool peer_nat_t = false;  // peer sent the RFC 3947 VID
    bool peer_dpd = false;    // peer sent the RFC 3706 VID
    bool local_behind_nat = false;
    bool remote_behind_nat = false;
    core::Endpoint local;
    core::Endpoint remote;
    std::optional<IdPayload> peer_id;
    bool initial_contact_received = false;

    bool nat_detected() const noexcept { return local_behind_nat || remote_behind_nat; }
    IsakmpHeader header(std::uint8_t exchange, std::uint32_t message_id) const noexcept {
        IsakmpHeader h;
        h.initiator_cookie = cky_i;
        h.responder_cookie = cky_r;
        h.exchange_type = exchange;
        h.message_id = message_id;
        return h;
    }
};

}  // namespace mipsec::ipsec::ike
