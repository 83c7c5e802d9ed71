// SPDX-License-Identifier: MIT
#pragma once
#include <cstdint>
#include <optional>

#include "core/address.hpp"
#include "core/stage.hpp"

namespace mipsec::nat {

/// UDP encapsulation of ESP for NAT traversal (RFC 3948). Outward: [IP|ESP..] becomes
/// [IP|UDP|ESP..] when the ESP layer above marked the packet (PacketMeta::esp_wants_udp: its
/// SA was negotiated with NAT-T, or the user forced encapsulation); the 20-60 byte IP header
/// moves 8 bytes into the headroom, the payload stays put, UDP checksum 0 (§2.1 SHOULD for
/// IPv4). Unmarked ESP and other protocols are NotMine (IKE builds its own UDP). Inward, on the local port: a lone 0xFF is a NAT keepalive (consumed,
/// never a liveness signal, §2.2); four zero bytes are the non-ESP marker: IKE, passed up
/// unchanged for the control plane; anything else is ESP and is unwrapped back to [IP|ESP..].
/// The unwrapped packet carries PacketMeta::esp_in_udp (source, local endpoint) for the ESP
/// layer directly above. The peer's endpoint follows a NAT rebinding only when that layer
/// raises PeerFloated for an authenticated packet addressed to this stage's local endpoint;
/// this stage alone never trusts a source port. Once encapsulation is in use, sends a one-byte
/// 0xFF keepalive after `keepalive` without outbound traffic (0 = never; only the side behind
/// a NAT should send them).
/// RFC 5265: packets a mobile node layer above sends directly (PacketMeta::direct) are passed
/// unchanged, and while a mobile node layer above reports the node inside (AccessModeChanged
/// Inside) the stage is dormant: every packet passes unchanged both ways, no keepalives.
/// Not thread-safe; one instance per peer.
/// Config: {"type": "nat.udp_encap", "local_port": 4500, "remote_port": 4500, "keepalive_s": 20}
class UdpEncapStage final : public core::Stage {
public:
    static constexpr std::uint16_t default_port = 4500;
    static constexpr std::uint8_t keepalive_byte = 0xFF;
    static constexpr std::size_t non_esp_marker_len = 4;

    struct Config {
        std::uint16_t local_port = default_port;
        std::uint16_t remote_port = default_port;
        core::Duration keepalive = std::chrono::seconds(20);  // zero: never send keepalives
        std::optional<core::Ipv4Address> local = std::nullopt;   // else learned from the first outbound packet
        std::optional<core::Ipv4Address> remote = std::nullopt;  // likewise
        std::uint8_t ttl = 64;
    };
    struct Counters {
        std::uint64_t keepalives_sent = 0;
        std::uint64_t keepalives_received = 0;
        std::uint64_t ike_passed_up = 0;
        std::uint64_t peer_floats = 0;
        std::uint64_t passed_direct = 0;   // a mobile node layer above sent it around us
        std::uint64_t passed_dormant = 0;  // inside the intranet (RFC 5265 modes c/f)
    };

    explicit UdpEncapStage(Config config);
    std::string_view name() const noexcept override { return "nat.udp_encap"; }
    std::size_t headroom() const noexcept override { return 8; }
    /// 0: the ESP layer above counts the UDP header in its own overhead() for the packets it
    /// asks to have encapsulated (PacketMeta::esp_wants_udp), since it knows per SA whether it does.
    std::size_t overhead() const noexcept override { return 0; }
    /// A UDP header in front with a zero checksum (RFC 3948 §2.1), nothing behind it read.
    bool leaves_payload_alone() const noexcept override { return true; }
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    void on_event(const core::RaisedEvent& event, core::StageContext& ctx) override;
    std::optional<core::TimePoint> poll(core::StageContext& ctx) override;
    void report(core::StatusSink& out) const override;

    const Counters& counters() const noexcept { return counters_; }
    /// Where ESP is sent: the configured/learned remote, or the floated NAT endpoint.
    std::optional<core::Endpoint> peer() const noexcept;
    bool dormant() const noexcept { return dormant_; }

private:
    Config config_;
    Counters counters_;
    std::optional<core::Ipv4Address> local_;
    std::optional<core::Endpoint> peer_;
    core::TimePoint last_sent_{};
    bool active_ = false;  // UDP encapsulation in use: ESP was wrapped or unwrapped here
    bool dormant_ = false;  // RFC 5265 inside: a mobile node layer above needs no VPN
};

}  // namespace mipsec::nat
