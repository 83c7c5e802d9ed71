// SPDX-License-Identifier: MIT
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/ipv4.hpp"
#include "core/stage.hpp"
#include "core/udp.hpp"
#include "crypto/random.hpp"
#include "mip/binding_store.hpp"
#include "mip/home_agent.hpp"

namespace mipsec::mip {

/// The home agent's data path around a HomeAgent core. The home network is on the inner
/// (TUN) side: packets the kernel routes to a bound home address come in through
/// encapsulate(); packets from mobile nodes leave toward the home network as decapsulate()'s
/// Pass.
///
/// Inward (from the wire):
///  * UDP to port 434 of the HA (or a broadcast address, for RFC 5944 §3.8.2.1 check 6), type
///    1: a non-zero UDP checksum must verify (check 1), then the core; its reply goes out with
///    send_control from the request's destination (the HA unicast address if that was a
///    broadcast) to the request's source, ports swapped. Consumed.
///  * Reverse-tunnelled packets to the HA, IP-in-IP or UDP 434 Tunnel Data: RFC 3024 §4.3 check
///    — a binding for the inner source whose care-of address (RFC 3519: NAT-observed address
///    and port) is the outer source and whose mode is the encapsulation used, else dropped as
///    NoBinding / BindingMismatch — then the inner packet passes toward the home network.
///  * RFC 3519 keepalives (ICMP echo requests HoA -> HA inside the UDP tunnel) are answered
///    with an echo reply through the tunnel and consumed; the first one completes a
///    half-bound binding (RFC 3519 §4.4).
///  * Anything else passes unchanged (another layer's traffic), unless `drop_unrelated`.
/// Outward (from the home network): a packet for a bound home address is tunnelled to the
/// binding's CoA (IP-in-IP from the HA address, or IP-in-UDP from port 434 to the NAT
/// endpoint); no binding: NoBinding (or pass unchanged with `pass_unbound`).
/// Binding changes (registration, deregistration, expiry in poll()) raise RegistrationChanged
/// so the shell can route each bound home address into the TUN. One BindingTable lookup per
/// packet. A request that is discarded or denied is counted under its reason (report():
/// counters.discarded.<reason>, counters.rejected.<reason>, each listed once non-zero) and logged as a warning naming the mobile node
/// (home address, NAI), the sender and the reason: one line per mobile node per
/// `failure_log_interval`, for at most `failure_log_nodes` nodes remembered at a time, under
/// the logger's own rate limit. Not thread-safe.
/// With `trusted_networks` (RFC 5265 internal home agent) a request from another source is
/// dropped without a reply, counted as untrusted_source and logged like the others.
/// With a BindingStore attached, every binding change and every change of a mobile node's
/// replay state is written to it before the reply leaves: group commit, one transaction per
/// poll() (the shell polls after each receive batch) or per `max_held_replies` replies, which
/// wait meanwhile; and
/// what it held at start is restored before the first packet or poll: bindings with what is
/// left of their lifetime, each raising RegistrationChanged as a new registration does (the
/// shell re-creates the host route and proxy ARP), so forwarding resumes without the mobile
/// nodes re-registering. A failed write is counted and logged; the binding still works.
/// Config: {"type": "mip.home_agent", "address": "10.1.0.1", "home_network": "10.1.0.0/24",
///          "mobile_nodes": [{"home_address": "10.1.0.77", "spi": 256, "key": "hex"}]}
class HomeAgentStage final : public core::Stage {
public:
    /// Why a registration request was not accepted. Up to CryptoFailure it was discarded
    /// without a reply (RFC 5944 §3.8.2.1 checks 1, 2 and 5; RFC 5265 §5 untrusted source); from BadAuthenticator on it was
    /// answered with a denial code (131, 133, 136, 134, 137/138, 139/142, 129, 130).
    enum class RequestFailure : std::uint8_t {
        BadUdpChecksum,
        Malformed,
        UnknownExtension,
        UnknownHomeAddress,
        NoAuthExtension,
        UnknownSpi,
        UnexpectedFhae,
        UntrustedSource,
        BadAuthenticatorUnanswered,
        IdentificationUnanswered,
        CryptoFailure,
        BadAuthenticator,
        IdentificationMismatch,
        UnknownHomeAgent,
        PoorlyFormed,
        ReverseTunnel,
        Encapsulation,
        Prohibited,
        InsufficientResources,
        OtherDenial,
        Count_
    };
    static constexpr std::size_t request_failure_count = static_cast<std::size_t>(RequestFailure::Count_);
    /// The status key of a reason ("unknown_spi").
    static std::string_view status_key(RequestFailure f) noexcept;
    static bool is_discard(RequestFailure f) noexcept { return f <= RequestFailure::CryptoFailure; }

    struct Config {
        HomeAgent::Config agent;
        std::uint8_t tunnel_ttl = 64;     // outer TTL of tunnelled packets
        std::uint8_t reply_ttl = 64;      // IP TTL of registration replies
        bool df_when_inner_clear = false;
        bool pass_unbound = false;        // outward packets without a binding pass unchanged
        bool drop_unrelated = false;      // inward non-MIP packets are dropped (UnexpectedProtocol)
        std::size_t report_limit = 100;   // bindings listed by report(); the count is always given
        // The home link, for the shell: it proxies ARP there for away mobile nodes and
        // announces each new binding with a gratuitous ARP (RFC 5944 §4.6). 0: none.
        std::uint32_t home_link_ifindex = 0;
        // Failed requests: one log line per mobile node per interval, for this many nodes.
        core::Duration failure_log_interval = std::chrono::seconds(60);
        std::size_t failure_log_nodes = 1024;
    };

    struct Counters {
        std::uint64_t requests = 0;
        std::uint64_t replies_sent = 0;
        std::uint64_t requests_discarded = 0;  // no reply: unknown MN, no MHAE, malformed...
        std::uint64_t requests_rejected = 0;   // answered with a denial code
        std::array<std::uint64_t, request_failure_count> failures{};  // by RequestFailure
        std::uint64_t tunnelled_out = 0;
        std::uint64_t tunnelled_in = 0;
        std::uint64_t keepalives_answered = 0;
        std::uint64_t half_bound_completed = 0;
        std::uint64_t dropped_no_binding = 0;
        std::uint64_t dropped_binding_mismatch = 0;
        std::uint64_t passed_unrelated = 0;
        std::uint64_t bindings_expired = 0;
        std::uint64_t bindings_removed_by_reload = 0;  // their mobile node left the configuration
        std::uint64_t no_buffer = 0;
        // With a BindingStore (state_file): what the restart found and what writing cost.
        std::uint64_t bindings_restored = 0;
        std::uint64_t bindings_not_restored = 0;  // expired while down, or no such mobile node now
        std::uint64_t state_file_corrupt = 0;     // found unreadable at start: moved aside, started empty
        std::uint64_t store_writes = 0;
        std::uint64_t store_write_errors = 0;
    };

    /// What opening the store found, for the stage to log and count at its first poll.
    struct StoreOpening {
        std::string description;          // e.g. the file's path
        StoredState state;                // restored at the first packet or poll
        std::optional<std::string> corruption;  // set: the file was unreadable and moved aside (why, where)
    };

    /// `random` supplies nonces to the core; it must outlive the stage.
    HomeAgentStage(Config config, crypto::Random& random);

    std::string_view name() const noexcept override { return "mip.home_agent"; }
    std::size_t headroom() const noexcept override;
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    std::optional<core::TimePoint> poll(core::StageContext& ctx) override;
    void report(core::StatusSink& out) const override;

    /// A reload: the core takes the new mobile nodes and registration settings (see
    /// HomeAgent::reconfigure), the stage its TTLs, DF and pass/drop choices. The bindings of
    /// removed mobile nodes are announced as gone (RegistrationChanged) at the next poll(), so
    /// the shell withdraws their routes; bindings of the others are untouched. The home link
    /// and failure log settings stay as started.
    HomeAgent::Reconfigured reconfigure(Config config);
    /// Persists bindings and replay state in `store` from now on; `opening.state` is restored
    /// at the first packet or poll (which has a clock and a place to raise events).
    void attach_store(std::unique_ptr<BindingStore> store, StoreOpening opening);

    const HomeAgent& agent() const noexcept { return agent_; }
    const Counters& counters() const noexcept { return counters_; }
    std::uint64_t failures(RequestFailure f) const noexcept { return counters_.failures[static_cast<std::size_t>(f)]; }
    /// Mobile nodes whose last failure log time is remembered (at most failure_log_nodes).
    std::size_t failure_log_nodes() const noexcept { return failure_log_.size(); }

private:
    /// For a bounded set of mobile nodes, when a failure was last logged and how many were
    /// held back since; the oldest node remembered makes room for a new one.
    class PerNodeLogLimit {
    public:
        PerNodeLogLimit(std::size_t capacity, core::Duration interval) : capacity_(capacity), interval_(interval) {}
        /// True when a line for `node` may be written at `now`; `held_back` is then the
        /// number of failures not logged since the previous line.
        bool admit(std::uint64_t node, core::TimePoint now, std::uint64_t& held_back);
        std::size_t size() const noexcept { return entries_.size(); }

    private:
        struct Entry {
            core::TimePoint logged;
            std::uint64_t held_back = 0;
        };
        std::size_t capacity_;
        core::Duration interval_;
        std::unordered_map<std::uint64_t, Entry> entries_;
        std::deque<std::uint64_t> order_;  // keys of entries_, oldest first
    };

    struct FailedRequest {
        RequestFailure reason;
        core::Endpoint from;
        core::Ipv4Address home_address;
        std::string_view nai;
        std::uint32_t spi = 0;
        std::uint8_t code = 0;  // the denial code sent, for rejections
    };
    void count_and_log(const FailedRequest& failure, core::StageContext& ctx);

    core::Verdict registration(const core::Ipv4View& ip, const core::UdpView& udp, core::StageContext& ctx);
    void answer_keepalive(const core::Ipv4View& inner, const HomeAgent::BindingInfo& b, core::StageContext& ctx);
    void announce(const HomeAgent::BindingChange& change, core::StageContext& ctx);
    bool is_broadcast_to_us(core::Ipv4Address destination) const noexcept;
    void restore_stored(core::StageContext& ctx);
    void store_write(std::span<const StoreChange> changes, core::StageContext& ctx);
    /// Commits what is queued, then sends the replies that waited for it.
    void sync_store(core::StageContext& ctx);
    StoreChange put_binding(const Binding& b) const;

    Config config_;
    HomeAgent agent_;
    Counters counters_;
    std::uint16_t next_identification_ = 0;
    std::vector<Binding> expired_;  // reused by poll()
    std::vector<Binding> removed_by_reload_;  // announced by the next poll()
    core::TimePoint last_now_{};
    PerNodeLogLimit failure_log_;
    std::unique_ptr<BindingStore> store_;
    std::optional<StoreOpening> pending_restore_;
    std::vector<StoreChange> store_changes_;  // reused
    std::vector<StoreChange> unsynced_;       // changes since the last commit
    std::vector<core::PacketBuf> held_replies_;  // replies waiting for that commit
    static constexpr std::size_t max_held_replies = 64;
};

}  // namespace mipsec::mip
