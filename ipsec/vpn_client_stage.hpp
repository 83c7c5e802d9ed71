// SPDX-License-Identifier: MIT
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "core/stage.hpp"
#include "crypto/random.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "ipsec/ike/session.hpp"
#include "ipsec/key_log.hpp"

namespace mipsec::ipsec {

/// A remote-access VPN client: an IKEv1 Session (Main Mode PSK, Mode Config, Quick Mode,
/// NAT-T, DPD) keying the ESP tunnel stage it owns. IKE rides on UDP 500, then 4500 with the
/// non-ESP marker; both are sent as whole IPv4/UDP packets through the stages below (put
/// nat.udp_encap below this stage for RFC 3948, which passes IKE through), so the IKE and
/// ESP local address is whatever this layer's outer address is. Inbound IKE (UDP to the IKE
/// ports) is consumed here; ESP goes to the ESP stage. Child SAs are installed as IKE
/// reports them (make-before-break on rekey); the Mode Config address is raised as
/// InnerAddressAssigned for the shell (TUN address) and for a Mobile IP layer above. When
/// the session fails or closes, the address is withdrawn (InnerAddressAssigned, assigned
/// false) and a new session starts after `restart_delay` (dpd_action restart). When the
/// gateway deletes a CHILD_SA both its directions go; the next packet to send then starts
/// a Quick Mode for a new one on the same IKE SA (dropped as NoSa until it is installed).
/// Before the IKE SA's lifetime ends (`reauth_margin` ahead; default a tenth of it) the stage
/// re-authenticates make-before-break, as IKEv1 peers do: a second Session runs Main Mode
/// (without INITIAL-CONTACT), asks Mode Config for the same inner address and installs its own
/// child SA next to the old one; a few seconds later (the gateway may still send on the old
/// one) the old child SAs and the old ISAKMP SA are deleted (Delete payloads under the old SA). If the new one fails, the old one keeps working and the
/// re-authentication is retried after `restart_delay`. So that a re-authentication can retry
/// lost messages inside its margin, no IKE retransmission waits longer than a twentieth of it.
/// RFC 5265 (a mobile node layer above runs internal-network detection): packets that layer
/// sends directly (PacketMeta::direct) pass unchanged, and so do clear Mobile IP registration
/// replies (UDP from port 434) arriving on other ports than IKE's. It raises AccessModeChanged: Inside, this stage is
/// dormant (every packet passes unchanged both ways, no IKE, no DPD) and keeps its SAs for
/// the next outside period or deletes them at the gateway, as the event says; Outside, it
/// works again and starts IKE only if it has no IKE SA; an IKE SA kept while inside is probed
/// with DPD at once (answer within `wake_probe_window`), since the gateway may have dropped it
/// meanwhile, and a new one negotiated if the gateway does not answer. With `wait_for_access_mode` it starts
/// no IKE at all before the first Outside (RFC 5265 §4: x-MIP first, IKE only when outside).
/// Not thread-safe. Config: {"type": "ipsec.vpn_client", "local": ..., "gateway": ..., "psk": ...}
class VpnClientStage final : public core::Stage {
public:
    struct Config {
        core::Ipv4Address local;
        core::Ipv4Address gateway;
        ike::SessionConfig session;
        core::Duration restart_delay = std::chrono::seconds(5);
        core::Duration reauth_margin = core::Duration::zero();  // zero: a tenth of the IKE lifetime
        std::uint8_t ttl = 64;
        KeyLog* key_log = nullptr;  // set only when the user asked for a key log; outlives the stage
        bool wait_for_access_mode = false;  // no IKE until a mobile node layer above says "outside"
        core::Duration wake_probe_window = std::chrono::seconds(6);
    };
    VpnClientStage(Config config, crypto::Random& random);
    ~VpnClientStage() override;

    std::string_view name() const noexcept override { return "ipsec.vpn_client"; }
    std::size_t headroom() const noexcept override { return esp_.headroom(); }
    std::size_t tailroom() const noexcept override { return esp_.tailroom(); }
    /// 0 while dormant (RFC 5265 inside), else the ESP stage's.
    std::size_t overhead() const noexcept override { return access_ == Access::Dormant ? 0 : esp_.overhead(); }
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    void on_event(const core::RaisedEvent& event, core::StageContext& ctx) override;
    std::optional<core::TimePoint> poll(core::StageContext& ctx) override;
    void report(core::StatusSink& out) const override;
    /// Deletes the CHILD_SAs and the IKE SA at the gateway (it frees the address at once).
    void shutdown(core::StageContext& ctx) override;

    const ike::Session* session() const noexcept { return session_.get(); }
    std::uint64_t reauthentications() const noexcept { return reauths_; }
    const EspTunnelStage& esp() const noexcept { return esp_; }
    const std::optional<core::Ipv4Prefix>& inner_address() const noexcept { return inner_address_; }
    /// IKE SAs started from scratch (the first, and one after each failure or close).
    std::uint64_t sessions_started() const noexcept { return sessions_started_; }
    /// RFC 5265 inside: passing everything unchanged, no IKE.
    bool dormant() const noexcept { return access_ == Access::Dormant; }

private:
    enum class Role : std::uint8_t { Current, Next, Retiring };
    // What the mobile node layer above last said (RFC 5265): Awake outside (or without
    // detection), Held while it detects (the IKE SA we have runs on, no new one starts),
    // Dormant inside.
    enum class Access : std::uint8_t { Awake, Held, Dormant };
    void follow_access_mode(const core::AccessModeChanged& access, core::StageContext& ctx);
    void start_session(core::StageContext& ctx);
    void start_reauthentication(core::StageContext& ctx);
    void schedule_reauthentication(const ike::Session& s);
    void promote_next(core::StageContext& ctx);
    void retire(core::StageContext& ctx);
    void drain(core::StageContext& ctx);
    void drain_session(ike::Session& s, Role role, core::StageContext& ctx);
    void send(const ike::OutgoingDatagram& d, core::StageContext& ctx);
    void install(const ike::ChildSa& child, bool inbound_only, core::StageContext& ctx);
    void withdraw_inner_address(core::StageContext& ctx);

    Config config_;
    std::shared_ptr<const ike::SessionConfig> session_config_;
    crypto::Random& random_;
    EspTunnelStage esp_;
    std::shared_ptr<const ike::SessionConfig> reauth_config_;  // the same, without INITIAL-CONTACT
    std::unique_ptr<ike::Session> session_;
    std::unique_ptr<ike::Session> next_session_;  // a re-authentication under way
    std::unique_ptr<ike::Session> retiring_;      // the IKE SA a re-authentication replaced
    std::optional<core::TimePoint> retire_at_;
    std::optional<core::TimePoint> reauth_at_;
    bool promote_pending_ = false;
    std::uint64_t reauths_ = 0;
    std::optional<core::TimePoint> restart_at_;
    std::optional<core::Ipv4Prefix> inner_address_;
    // The address the last IKE SA had: a new one after a failure (say the gateway restarted)
    // asks for it again, so connections bound to it survive where the gateway allows.
    std::optional<core::Ipv4Address> last_inner_address_;
    std::string last_failure_;
    std::uint64_t sessions_started_ = 0;
    std::uint64_t ike_received_ = 0;
    std::uint64_t ike_sent_ = 0;
    std::uint64_t sa_installs_ = 0;
    bool ike_key_logged_ = false;
    core::TimePoint last_now_{};  // for report(): time left on SAs
    Access access_ = Access::Awake;
    bool slept_with_sas_ = false;  // dormant with a kept IKE SA, not yet probed since
    std::optional<core::TimePoint> ike_not_before_;  // outside, no SA: IKE waits until then (§3.3)
    std::uint64_t passed_direct_ = 0;
    std::uint64_t passed_dormant_ = 0;
    std::uint64_t passed_registration_replies_ = 0;
};

/// The ESP suite of a negotiated IKE algorithm.
EspSuite to_esp_suite(ike::EspAlgorithm a) noexcept;

}  // namespace mipsec::ipsec
