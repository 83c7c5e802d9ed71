// SPDX-License-Identifier: MIT
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/stage.hpp"
#include "crypto/random.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "ipsec/gateway_client_table.hpp"
#include "ipsec/ike/responder.hpp"
#include "ipsec/key_log.hpp"

namespace mipsec::ipsec {

/// A remote-access VPN gateway: an IKEv1 Responder serving many clients at once, each with
/// its own inner address from the Mode Config pool and its own ESP tunnel (and, when NAT-T
/// is negotiated, its own RFC 3948 UDP encapsulation toward the client's NAT endpoint).
/// Outward (from the protected network, the TUN side): the inner destination picks the
/// client by its inner address, O(1). Inward: IKE on the IKE ports goes to the Responder;
/// ESP (raw, or in UDP on the NAT-T port) goes to the client owning the SPI, and the inner
/// source must be that client's address (RFC 3948 §3.1.1; PolicyMismatch otherwise). NAT
/// keepalives are consumed. The half-open limit and cookies are the Responder's.
/// Runs directly over the transport: it does its own UDP encapsulation per client, exactly for
/// the clients whose CHILD_SA negotiated it (RFC 3947 NAT detection, or forced by either side):
/// their ESP goes out in UDP and arrives in UDP; the others' goes out as raw ESP, and UDP ESP
/// from them is UnexpectedProtocol.
/// Timers: the Responder and the client table each keep a deadline queue, so poll() runs only
/// the sessions and ESP tunnels whose deadline has passed (O(log n) each) and costs the same
/// for ten clients or ten thousand idle ones (`mipsec bench gateway-poll`).
/// A client whose first Quick Mode is refused (proposal, PFS or selectors) is logged, its IKE
/// SA deleted, its lease freed and its entry dropped; it starts over with Main Mode.
/// Not thread-safe. Config: {"type": "ipsec.vpn_gateway", "local": ..., "pool": ..., "psk": ...}
class VpnGatewayStage final : public core::Stage {
public:
    struct Config {
        core::Ipv4Address local;
        ike::ResponderConfig responder;  // its session config carries PSKs, proposals, local_ts
        std::uint8_t ttl = 64;
        KeyLog* key_log = nullptr;  // set only when the user asked for a key log; outlives the stage
    };
    VpnGatewayStage(Config config, crypto::Random& random);
    ~VpnGatewayStage() override;

    std::string_view name() const noexcept override { return "ipsec.vpn_gateway"; }
    std::size_t headroom() const noexcept override { return EspTunnelStage::max_headroom + 8; }
    std::size_t tailroom() const noexcept override { return EspTunnelStage::max_tailroom; }
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    std::optional<core::TimePoint> poll(core::StageContext& ctx) override;
    void report(core::StatusSink& out) const override;
    /// A reload: PSKs, proposals, limits and the Mode Config pool apply to new negotiations
    /// (see Responder::reconfigure); established IKE SAs, CHILD_SAs and the ESP tunnels are not
    /// touched, and leases outside a new pool stay with their clients until their IKE SA (and
    /// CHILD_SAs kept after it) end. local, ttl, the IKE ports and the key log stay as started.
    /// Returns how many leases lie outside the new pool.
    std::size_t reconfigure(Config config);
    /// Deletes every client's SAs at the client.
    void shutdown(core::StageContext& ctx) override;

    std::size_t client_count() const noexcept { return clients_.size(); }
    const GatewayClientTable& clients() const noexcept { return clients_; }
    const ike::Responder& responder() const noexcept { return responder_; }

private:
    void drain(core::StageContext& ctx);
    void send(const ike::OutgoingDatagram& d, core::StageContext& ctx);
    void install(std::uint64_t owner, const ike::ChildSa& child, bool inbound_only, core::StageContext& ctx);
    void remove(std::uint64_t owner);
    void release(std::uint64_t owner);
    void hand_over(std::uint64_t from, std::uint64_t to, core::StageContext& ctx);
    /// Refiles the client's ESP deadline after its SAs changed.
    void reschedule(GatewayClient& c, core::StageContext& ctx);
    void child_refused(std::uint64_t owner, const ike::ChildSaRefused& refused, core::StageContext& ctx);
    std::string describe(std::uint64_t owner) const;

    Config config_;
    core::TimePoint last_now_{};  // for report(): time left on SAs
    crypto::Random& random_;
    ike::Responder responder_;
    GatewayClientTable clients_;
    std::vector<std::uint64_t> refused_;  // sessions to close after this drain (first Quick Mode refused)
    /// True the first time a peer address is reported: bad input is logged once per peer
    /// (bounded memory; once full, further peers are counted but not logged).
    bool first_report(core::Ipv4Address peer);
    std::unordered_map<core::Ipv4Address, std::uint64_t> reported_peers_;  // peer -> events seen
    std::uint64_t unreported_ = 0;
    std::unordered_map<std::uint64_t, core::Ipv4Address> session_peer_;  // for logging failures

    std::uint64_t ike_received_ = 0;
    std::uint64_t ike_sent_ = 0;
    std::uint64_t keepalives_ = 0;
    std::uint64_t child_sas_refused_ = 0;
};

}  // namespace mipsec::ipsec
