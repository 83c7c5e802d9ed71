// SPDX-License-Identifier: MIT
#pragma once
#include <cstdint>
#include <optional>

#include "core/stage.hpp"
#include "crypto/random.hpp"
#include "mip/mobile_node.hpp"

namespace mipsec::mip {

/// The mobile node's data path around a MobileNode core (RFC 5944 co-located or FA care-of
/// mode, RFC 3024 reverse tunnelling, RFC 3519 UDP tunnelling, RFC 5265 i-MIP/x-MIP layers).
///
/// Care-of address: a static address, the address of one interface (AddressChanged events
/// whose ifindex is `care_of_ifindex`; LinkChanged "up" on it re-registers), the address an
/// InnerAddressAssigned event carries (RFC 5265 §4 step 5: i-MIP registers the VPN tunnel
/// inner address as its co-located CoA), or Agent Advertisements (FA care-of mode; the stage
/// solicits until one arrives). A CoA equal to the home address means "at home".
///
/// Registration requests leave through ctx.send_control() as whole IPv4/UDP packets
/// (source CoA or HoA as the core says, source port `node.source_port`, to the HA or FA on
/// port 434, TTL 255 with T set, UDP checksum computed).
///
/// Outward (from the TUN): packets whose source is the home address are reverse-tunnelled to
/// the HA while a co-located registration with T holds (IP-in-IP, or IP-in-UDP from the
/// registration port when the HA assented to RFC 3519 tunnelling); at home, with triangular
/// routing (no T) or through an FA (direct delivery: the FA tunnels) they pass unchanged;
/// away without a registration for the current CoA they are dropped as NotRegistered. Packets
/// from other sources are not this layer's and pass unchanged.
/// Inward: registration replies (UDP from port 434 to the registration port) go to the core;
/// Agent Advertisements (ICMP 9 with the mobility extension) go to the core; IP-in-IP or
/// Tunnel Data from the HA to the CoA is unwrapped when it matches the negotiated mode
/// (else BindingMismatch, or NotRegistered with no registration); RFC 3519 keepalive echo
/// replies from the HA are consumed. Anything else passes unchanged.
///
/// Keepalives (RFC 3519 §3.6): when the core says one is due, an ICMP echo request HoA -> HA
/// (identifier = the registration port) goes out inside the UDP tunnel.
/// Raises RegistrationChanged whenever the core reports one. Not thread-safe.
/// Config: {"type": "mip.mobile_node", "home_address": "10.1.0.77", "home_agent": "10.1.0.1",
///          "spi": 256, "key": "hex", "care_of": "interface", "interface": "eth0", ...}
class MobileNodeStage final : public core::Stage {
public:
    enum class CareOfSource : std::uint8_t {
        Static,        // `static_care_of`
        Interface,     // AddressChanged/LinkChanged with ifindex == care_of_ifindex
        InnerAddress,  // InnerAddressAssigned from a VPN layer (RFC 5265 i-MIP)
        ForeignAgent,  // Agent Advertisements; forces node.colocated = false
    };

    struct Config {
        MobileNode::Config node;
        CareOfSource care_of_source = CareOfSource::Static;
        core::Ipv4Address static_care_of;  // Static: registered at the first poll()
        std::uint32_t care_of_ifindex = 0;  // Interface: filled in by the shell from the name
        std::uint8_t tunnel_ttl = 64;       // outer TTL of tunnelled packets
        bool df_when_inner_clear = false;
        core::Duration solicitation_max_interval = std::chrono::seconds(60);  // FA mode
    };

    struct Counters {
        std::uint64_t requests_sent = 0;
        std::uint64_t replies_received = 0;
        std::uint64_t advertisements_received = 0;
        std::uint64_t solicitations_sent = 0;
        std::uint64_t tunnelled_out = 0;
        std::uint64_t tunnelled_in = 0;
        std::uint64_t passed_plain_out = 0;   // at home, triangular or via an FA
        std::uint64_t passed_unrelated_out = 0;  // source is not the home address
        std::uint64_t dropped_not_registered = 0;
        std::uint64_t dropped_binding_mismatch = 0;
        std::uint64_t keepalives_sent = 0;
        std::uint64_t keepalive_replies = 0;
        std::uint64_t no_buffer = 0;
        std::uint64_t dropped_loop = 0;  // our own registration traffic routed back to us
    };

    /// `random` supplies nonce bits to the core; it must outlive the stage.
    MobileNodeStage(Config config, crypto::Random& random);

    std::string_view name() const noexcept override { return "mip.mobile_node"; }
    std::size_t headroom() const noexcept override;
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    void on_event(const core::RaisedEvent& event, core::StageContext& ctx) override;
    std::optional<core::TimePoint> poll(core::StageContext& ctx) override;
    void report(core::StatusSink& out) const override;
    /// Away from home: deregisters the current binding at the HA (one try).
    void shutdown(core::StageContext& ctx) override;

    const MobileNode& node() const noexcept { return node_; }
    const Counters& counters() const noexcept { return counters_; }
    /// The stage's own settings; the core's (with the key) are node().config().
    const Config& config() const noexcept { return config_; }
    /// The registration the data path uses: accepted, and for the current care-of address.
    const MobileNode::Registration* active_registration() const noexcept;

private:
    void handle(const MobileNode::Output& out, core::StageContext& ctx);
    void transmit(const MobileNode::Transmit& t, core::StageContext& ctx);
    void send_keepalive(core::StageContext& ctx);
    void send_solicitation(core::StageContext& ctx);
    std::optional<core::TimePoint> solicitation_deadline() const noexcept;
    bool at_home() const noexcept;
    bool solicits_without_address() const noexcept;

    Config config_;
    MobileNode node_;
    Counters counters_;
    bool started_ = false;
    std::uint16_t next_identification_ = 0;
    std::uint16_t keepalive_sequence_ = 0;
    // FA mode: Agent Solicitations until an advertisement arrives (RFC 5944 §2.4.1).
    bool advert_heard_ = false;
    core::Ipv4Address announced_care_of_{};  // the care-of address last raised as OuterAddressChanged
    std::optional<core::TimePoint> next_solicitation_;
    core::Duration solicitation_interval_{};
    unsigned solicitations_in_burst_ = 0;
    core::TimePoint last_now_{};  // for report(): lifetime left
};

}  // namespace mipsec::mip
