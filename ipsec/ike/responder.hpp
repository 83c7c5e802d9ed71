// SPDX-License-Identifier: MIT
#pragma once
// Responder: the gateway's front for IKEv1. It demultiplexes received ISAKMP messages by
// cookie pair to Sessions, creates a Session for each new Main Mode initiator (CKY-R = 0)
// and owns the Mode Config AddressPool the sessions lease from.
//   * CKY-R is a keyed hash of a per-Responder secret, the initiator's endpoint, CKY-I and a
//     counter (RFC 2408 §2.5.3), so cookies are unpredictable and unique.
//   * Anti-clogging: at most `max_half_open` sessions that have not finished Main Mode;
//     further MM1s are dropped (counted) until some complete or time out.
//   * A retransmitted MM1 (same CKY-I from the same endpoint) reaches the existing half-open
//     session, which resends its MM2.
//   * INITIAL-CONTACT (RFC 2407 §4.6.3.3): when a peer authenticates with it, older sessions
//     with the same peer ID are closed.
//   * Sessions that failed or closed are removed (their lease returns to the pool) after
//     their output was collected.
//   * Timers by deadline: each session's and each orphan group's next deadline sits in a
//     DeadlineQueue, refreshed whenever the Responder touches that session; poll() runs only
//     the sessions whose deadline has passed and returns the earliest remaining one, so an idle
//     gateway's poll costs the same with ten clients or ten thousand.
// Events are tagged with the session's owner id. Same I/O contract as Session. Not thread-safe.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/deadline_queue.hpp"
#include "ipsec/ike/address_pool.hpp"
#include "ipsec/ike/session.hpp"

namespace mipsec::ipsec::ike {

struct ResponderConfig {
    std::shared_ptr<const SessionConfig> session;
    std::optional<core::Ipv4Prefix> pool;  // Mode Config addresses (nullopt: no Mode Config)
    std::size_t max_half_open = 32;
    std::size_t max_sessions = 4096;
};

struct TaggedEvent {
    std::uint64_t session = 0;  // Session::owner()
    SessionEvent event;
};

struct ResponderOutput {
    std::vector<OutgoingDatagram> datagrams;
    std::vector<TaggedEvent> events;
};

struct ResponderCounters {
    std::uint64_t sessions_created = 0;
    std::uint64_t sessions_removed = 0;
    std::uint64_t dropped_malformed = 0;   // shorter than a header / not MM1 with CKY-R = 0
    std::uint64_t dropped_unknown_sa = 0;  // cookies of no session
    std::uint64_t dropped_half_open = 0;   // MM1 refused by the half-open limit
};

class Responder {
public:
    Responder(ResponderConfig cfg, crypto::Random& random);

    void on_datagram(std::span<const std::uint8_t> bytes, core::Endpoint local, core::Endpoint remote,
                     core::TimePoint now);
    /// Runs the timers of the sessions (and orphaned CHILD_SAs) whose deadline has passed;
    /// returns the earliest deadline left, which on_datagram() may have moved earlier since.
    std::optional<core::TimePoint> poll(core::TimePoint now);
    /// The earliest deadline of any session or orphan (O(1)).
    std::optional<core::TimePoint> next_deadline() const noexcept;
    ResponderOutput take_output();
    /// Closes every session (Delete payloads to the peers).
    void close_all(core::TimePoint now);
    /// Closes one session (Delete payloads to the peer); false if there is none with this owner.
    bool close(std::uint64_t owner, core::TimePoint now);
    /// Takes new settings while running (a reload): PSKs, proposals and the rest of the
    /// session config apply to sessions created from now on, while each existing session keeps
    /// the settings it was negotiated under (its own shared copy), rekeys included; the limits
    /// apply to the next MM1. The Mode Config pool takes the new range in place (see
    /// AddressPool::set_range: leases stay); a pool cannot appear or go while sessions hold a
    /// pointer to it, so `cfg.pool` must be set exactly when the running one is (asserted; the
    /// running pool state is kept otherwise). Returns how many leases lie outside the new pool.
    std::size_t reconfigure(ResponderConfig cfg);
    /// Inbound ESP from this session's peer authenticated (its DPD idle timer restarts).
    void note_traffic(std::uint64_t owner, core::TimePoint now);

    /// The session with these cookies, or nullptr. The caller may change it (start a rekey,
    /// send DPD): its deadline is refiled at the next poll().
    Session* find(const Cookie& cky_i, const Cookie& cky_r);
    /// The live session with this owner id (TaggedEvent::session), or nullptr.
    const Session* session_of(std::uint64_t owner) const;
    std::size_t session_count() const noexcept { return sessions_.size(); }
    /// CHILD_SAs kept after their IKE SA ended, waiting for the peer's next one.
    std::size_t orphan_count() const noexcept;
    std::size_t half_open_count() const noexcept;
    AddressPool* pool() noexcept { return pool_ ? &*pool_ : nullptr; }
    const AddressPool* pool() const noexcept { return pool_ ? &*pool_ : nullptr; }
    const ResponderCounters& counters() const noexcept { return counters_; }
    /// The owner id the most recently created session got (0 before the first).
    std::uint64_t last_owner() const noexcept { return next_owner_ - 1; }

private:
    using Key = std::pair<Cookie, Cookie>;
    void collect(Session& s, core::TimePoint now);
    /// Runs s's due timers, collects its output and files its next deadline.
    void refresh(Session& s, core::TimePoint now);
    void reap();
    Session* successor_of(const Session& s);
    void adopt_orphans(Session& heir, core::TimePoint now);
    void drop_orphans(const IdPayload& peer);

    // CHILD_SAs whose IKE SA ended before the peer's next one was up (see ChildSasHandedOver),
    // with the ended session's owner (its address lease is kept for them).
    struct Orphans {
        std::uint64_t owner = 0;
        IdPayload peer;
        std::vector<ChildSa> children;
    };
    std::vector<Orphans> orphans_;
    void schedule_orphans(const Orphans& o);
    std::unordered_map<std::uint64_t, Session*> by_owner_;
    core::DeadlineQueue<std::uint64_t> session_timers_;  // by owner
    core::DeadlineQueue<std::uint64_t> orphan_timers_;   // by Orphans::owner: earliest hard lifetime
    std::unordered_set<std::uint64_t> half_open_;            // owners not past Main Mode yet
    std::vector<std::uint64_t> ended_;                      // owners that failed or closed, removed by reap()
    Cookie make_cookie(const Cookie& cky_i, core::Endpoint remote);

    ResponderConfig cfg_;
    crypto::Random& random_;
    std::optional<AddressPool> pool_;
    std::map<Key, std::unique_ptr<Session>> sessions_;
    ResponderOutput out_;
    ResponderCounters counters_;
    std::array<std::uint8_t, 32> secret_{};
    std::uint64_t next_owner_ = 1;
};

}  // namespace mipsec::ipsec::ike
