// SPDX-License-Identifier: MIT
#pragma once
// Session: one IKEv1 ISAKMP SA and its ESP child SAs toward one peer, as a sans-I/O core
// (no I/O of its own). Bytes, endpoints and the time go in through on_datagram();
// poll(now) runs timers and returns the next deadline; take_output() hands over the
// datagrams to send and the events raised since the last call. No clock, socket or global.
//
// Flow (initiator = client):  Main Mode (6) -> [Transaction: Mode Config pull (2)]
//                              -> Quick Mode (3) -> ChildSaInstalled
// The responder side (gateway) is created by Responder for each new initiator.
// Transport rules (RFC 2409 §5-§5.7, RFC 3947, as strongSwan 5.9 applies them):
//   * Datagram bytes are ISAKMP messages: on port 4500 the shell strips/prepends the 4-byte
//     non-ESP marker; OutgoingDatagram::non_esp_marker says when to prepend it.
//   * The initiator floats to nat_t_port from MM5 on when a NAT was detected; the responder
//     answers from where the request arrived to where it came from (RFC 3947 §4).
//   * Retransmission: the identical bytes, after timeout x base^n, `retransmits` times, then
//     the exchange fails (strongSwan: 4 s x 1.8^n, 5 retransmits, ~165 s), each delay at most
//     RetransmitPolicy::limit when one is set. Main Mode, on either side, ends after
//     `half_open_timeout` (30 s): the responder forgets a half-open SA then, so the initiator's
//     later retransmissions could reach no one. A duplicate of the
//     last request is answered with the identical last reply (as strongSwan); other repeats of
//     used Message IDs are dropped as replays.
//   * IVs are committed only after a message authenticated (MessageCipher); a tampered,
//     truncated or replayed message is dropped and counted, the SA is left as it was.
//   * Informationals after phase 1 must be encrypted with HASH(1) first; plaintext ones are
//     ignored (RFC 2408 §5.14 as strongSwan applies it). Before phase 1 completes, plaintext
//     error notifies from the peer end the negotiation.
//   * Child SAs are rekeyed `child_rekey_time` after install (by either side; a gateway
//     config usually leaves it to the client), make-before-break: the new SA is installed
//     (event) before the old one is deleted (Delete sent, event). A Quick Mode from the peer
//     with a live SA's selectors rekeys that SA: it stops being rekeyed and is deleted after
//     a short grace. Rekey collisions (both sides at once) keep the SA with the higher lowest
//     nonce on both sides; the other is installed inbound-only and deleted after the grace.
//     An SA past its negotiated lifetime is deleted.
//   * DPD (RFC 3706) when both sides sent the VID and dpd_delay > 0: R-U-THERE after that
//     long without authenticated traffic (note_traffic() counts inbound ESP too), resent on
//     the retransmission schedule, then the peer is declared dead.
// IKE SA lifetime: a Session never rekeys itself; at the lifetime it fails with
// FailReason::Expired. Re-authentication (a new Session before that, make-before-break) is
// the client stage's job. Not implemented: push-mode Mode Config, XAuth, Aggressive Mode, certificates,
// transport mode, IKE fragmentation, RESPONDER-LIFETIME. Not thread-safe; not movable
// (tasks point into it): create with the factories.
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/address.hpp"
#include "core/time.hpp"
#include "crypto/random.hpp"
#include "ipsec/ike/address_pool.hpp"
#include "ipsec/ike/child_sa.hpp"
#include "ipsec/ike/child_sa_set.hpp"
#include "ipsec/ike/dpd.hpp"
#include "ipsec/ike/exchange_table.hpp"
#include "ipsec/ike/ike_sa.hpp"
#include "ipsec/ike/main_mode.hpp"
#include "ipsec/ike/mode_config.hpp"
#include "ipsec/ike/quick_mode.hpp"
#include "ipsec/ike/session_config.hpp"

namespace mipsec::ipsec::ike {

struct OutgoingDatagram {
    Bytes payload;  // the ISAKMP message
    core::Endpoint local;
    core::Endpoint remote;
    bool non_esp_marker = false;  // prepend 4 zero bytes (RFC 3948 §2.2), port 4500
};

struct Established {
    core::Endpoint local;
    core::Endpoint remote;
    bool udp_encapsulation = false;  // NAT-T in use: ESP goes in UDP from local to remote
    bool local_behind_nat = false;   // we must send NAT keepalives (RFC 3948 §4)
    bool remote_behind_nat = false;
    bool dpd = false;
    std::optional<IdPayload> peer_id;
};
/// Mode Config result: on the client our inner address; on the gateway the peer's lease.
struct InnerAddressAssigned {
    core::Ipv4Prefix address;
    std::vector<core::Ipv4Address> dns;
    bool ours = true;
};
struct ChildSaInstalled {
    ChildSa sa;
    std::optional<std::uint32_t> replaces;  // spi_in of the SA this one rekeys
    /// The losing SA of a rekey collision: accept what the peer still sends on it, but keep
    /// sending on the current outbound SA; it is deleted shortly.
    bool inbound_only = false;
};
struct ChildSaDeleted {
    ChildSa sa;
    bool by_peer = false;
};
struct Failed {
    FailReason reason = FailReason::ProtocolError;
    std::uint16_t notify = 0;  // the peer's error notify for PeerNotified
    std::string detail;
};
struct Closed {
    bool by_peer = false;
};
/// A gateway session ended (its IKE SA expired or the peer deleted it) with CHILD_SAs left: in
/// IKEv1 IPsec SAs outlive the ISAKMP SA that made them, and strongSwan keeps using them while
/// it re-authenticates. The Responder gives them to the peer's newer IKE SA (`successor`, that
/// session's owner), now or when one is established; until then (`successor` 0) they stay
/// installed, orphaned, until their lifetime ends.
struct ChildSasHandedOver {
    std::vector<ChildSa> children;
    std::uint64_t successor = 0;
};
/// A Quick Mode the peer started failed here (no acceptable proposal, PFS or selectors
/// refused; the peer got the error notify): no CHILD_SA came of it, the IKE SA stays.
struct ChildSaRefused {
    FailReason reason = FailReason::ProtocolError;
    std::string detail;
};
using SessionEvent = std::variant<Established, InnerAddressAssigned, ChildSaInstalled, ChildSaDeleted, Failed, Closed, ChildSasHandedOver,
                                  ChildSaRefused>;

struct SessionOutput {
    std::vector<OutgoingDatagram> datagrams;
    std::vector<SessionEvent> events;
};

struct SessionCounters {
    std::uint64_t received = 0;
    std::uint64_t sent = 0;
    std::uint64_t retransmitted = 0;
    std::uint64_t duplicates_answered = 0;  // repeated requests answered with the stored reply
    std::uint64_t dropped_malformed = 0;    // does not parse / wrong cookies / wrong port
    std::uint64_t dropped_auth = 0;         // decryption or HASH failed
    std::uint64_t dropped_replay = 0;       // Message ID already used
    std::uint64_t dropped_unexpected = 0;   // valid but not expected now (incl. plaintext informationals)
    std::uint64_t dpd_sent = 0;
    std::uint64_t dpd_acked = 0;
    std::uint64_t rekey_collisions = 0;  // both peers rekeyed one CHILD_SA at once; one SA dropped
};

enum class SessionState : std::uint8_t { Connecting, Established, Closed, Failed };
std::string_view to_string(SessionState s) noexcept;

class Session {
public:
    /// A client toward `remote` (usually port 500), sending from `local`. Call start().
    static std::unique_ptr<Session> initiator(std::shared_ptr<const SessionConfig> cfg, crypto::Random& random,
                                              core::Endpoint local, core::Endpoint remote);
    /// A gateway session for an initiator whose MM1 carried `cky_i`; `cky_r` is ours.
    /// `pool` (may be null) serves Mode Config under `owner`.
    static std::unique_ptr<Session> responder(std::shared_ptr<const SessionConfig> cfg, crypto::Random& random,
                                              core::Endpoint local, core::Endpoint remote, const Cookie& cky_i,
                                              const Cookie& cky_r, AddressPool* pool, std::uint64_t owner,
                                              core::TimePoint now);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    /// Initiator: sends MM1. `previous_address`: ask Mode Config to keep this inner address (a
    /// re-authentication).
    void start(core::TimePoint now, std::optional<core::Ipv4Address> previous_address = std::nullopt);
    /// One received ISAKMP message (non-ESP marker already removed) and where it travelled.
    void on_datagram(std::span<const std::uint8_t> bytes, core::Endpoint local, core::Endpoint remote,
                     core::TimePoint now);
    /// Runs due timers; the next time poll() wants to run (nullopt once the session is over).
    std::optional<core::TimePoint> poll(core::TimePoint now);
    SessionOutput take_output();
    /// Inbound ESP from the peer was authenticated: the peer is alive (DPD idle timer).
    void note_traffic(core::TimePoint now);
    /// Deletes every child SA and the ISAKMP SA (Delete payloads to the peer).
    void close(core::TimePoint now);
    /// Initiator: negotiates a new CHILD_SA (Quick Mode on this IKE SA, the configured
    /// selectors) when none is left and none is under way, e.g. after the peer deleted the
    /// last one and traffic needs one. False when nothing was started.
    bool request_child(core::TimePoint now);
    /// The path to the peer has just come up (a Mobile IP layer below registered): requests
    /// still awaiting an answer were likely lost on the way, so they go out again now, each
    /// with its back-off restarted from now, instead of waiting out the timer (4 s for MM1).
    /// Counted as retransmissions; a no-op when nothing is awaited.
    void resend_pending(core::TimePoint now);
    /// Starts a rekey of the child with this spi_in now (normally driven by poll()).
    bool rekey_child(std::uint32_t spi_in, core::TimePoint now);
    /// Sends an R-U-THERE now (normally driven by poll()); false without DPD support.
    bool send_dpd(core::TimePoint now);
    /// Sends an R-U-THERE now that must be answered within `answer_within` (retried every
    /// `retry_every`), or the session fails with PeerDead: for an SA kept while the path was
    /// away, which the peer may have dropped meanwhile. False without DPD support.
    bool probe_peer(core::TimePoint now, core::Duration answer_within, core::Duration retry_every);
    /// Takes over CHILD_SAs of an ended IKE SA of the same peer (see ChildSasHandedOver); one
    /// whose selectors a live SA of ours already covers is deleted after a short grace.
    void adopt_children(std::vector<ChildSa> children, core::TimePoint now);

    SessionState state() const noexcept { return state_; }
    /// When phase 1 completed (meaningful once Established was raised).
    core::TimePoint established_at() const noexcept { return established_at_; }
    bool is_initiator() const noexcept { return sa_.initiator; }
    const IkeSa& ike_sa() const noexcept { return sa_; }
    const SessionCounters& counters() const noexcept { return counters_; }
    const std::vector<ChildSa>& children() const noexcept { return children_.all(); }
    const std::optional<ModeConfigResult>& mode_config() const noexcept { return mode_config_; }
    std::uint64_t owner() const noexcept { return owner_; }

private:
    using Exchange = ExchangeTable::Exchange;

    Session(std::shared_ptr<const SessionConfig> cfg, crypto::Random& random, bool initiator, core::Endpoint local,
            core::Endpoint remote);

    // phase 1
    void on_phase1(const Message& header_only, std::span<const std::uint8_t> bytes, core::Endpoint local,
                   core::Endpoint remote, core::TimePoint now);
    void phase1_established(core::TimePoint now);
    void on_plain_informational(const Message& m);
    void on_phase1_informational(const Message& header_only, std::span<const std::uint8_t> bytes);
    struct Refusal {
        FailReason reason;
        std::string detail;
    };
    /// What a peer's error notify during Main Mode tells the user, by where we are.
    Refusal phase1_refusal(std::uint16_t notify) const;
    // phase 2 and informational
    void on_protected(const Message& header_only, std::span<const std::uint8_t> bytes, core::Endpoint local,
                      core::Endpoint remote, core::TimePoint now);
    void on_informational(const Message& m, core::TimePoint now);
    void exchange_done(Exchange& ex, core::TimePoint now);
    void start_mode_config(core::TimePoint now);
    void start_quick_mode(core::TimePoint now, std::optional<std::uint32_t> replaces);
    void install_child(ChildSa child, std::optional<std::uint32_t> replaces, core::TimePoint now);
    void delete_child(std::uint32_t spi_in, bool by_peer, bool notify_peer, core::TimePoint now);
    void send_informational(std::vector<Payload> payloads, core::TimePoint now);
    void send_plain_notify(std::uint16_t type);
    void send_error_notify(std::uint16_t type);
    bool send_dpd(core::TimePoint now, bool retry);

    // transport
    bool send_message(Message& m, Bytes* copy);
    void send_bytes(const Bytes& bytes);
    void arm(Exchange& ex, core::TimePoint now);
    Exchange* find_exchange(std::uint32_t mid);
    Exchange& new_exchange(std::uint32_t mid);
    void prune_exchanges();
    std::uint32_t fresh_message_id();
    std::uint32_t fresh_spi();
    bool seen(std::uint32_t mid) const;
    void remember(std::uint32_t mid);
    void adopt_endpoints(core::Endpoint local, core::Endpoint remote);

    void fail(FailReason reason, std::string detail, bool send_delete, std::uint16_t peer_notify = 0);
    /// A gateway's children may go to the Responder (ChildSasHandedOver) instead of being deleted.
    void end_children(bool by_peer, bool may_hand_over = false);
    void release_lease();

    std::shared_ptr<const SessionConfig> cfg_;
    crypto::Random& random_;
    IkeSa sa_;
    std::unique_ptr<MainMode> mm_;
    SessionState state_ = SessionState::Connecting;
    SessionOutput out_;
    SessionCounters counters_;
    // The Session drives the tasks; its other jobs are types of their own: the exchanges and
    // their retransmission, the CHILD_SAs and their rekey rules, and DPD (dpd_, below).
    ExchangeTable exchanges_;
    ChildSaSet children_;
    std::optional<ModeConfigResult> mode_config_;
    AddressPool* pool_ = nullptr;
    std::uint64_t owner_ = 0;
    core::TimePoint created_{};
    core::TimePoint established_at_{};
    std::optional<core::Ipv4Address> previous_address_;
    bool lease_handed_over_ = false;  // the Responder releases it with the handed-over children
    core::TimePoint last_rx_{};
    bool started_ = false;
    Dpd dpd_;
};

}  // namespace mipsec::ipsec::ike
