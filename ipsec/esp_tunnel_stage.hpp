// SPDX-License-Identifier: MIT
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/address.hpp"
#include "core/ipv4.hpp"
#include "core/result.hpp"
#include "core/stage.hpp"
#include "ipsec/sa.hpp"

namespace mipsec::ipsec {

/// ESP in tunnel mode between two fixed outer addresses (RFC 4303, RFC 4301 §5.1.2).
/// Outward: [inner IPv4] becomes [outer IPv4 proto 50 | SPI | Seq | IV | enc(inner | pad |
/// PadLen | NH 4) | ICV], built in place: the outer header and ESP header go into the
/// headroom, padding, trailer and ICV into the tailroom; the inner packet never moves. The
/// outer header copies TOS and DF from the inner one (RFC 4301 §5.1.2.1), TTL from config.
/// Inward: accepts only protocol 50 addressed to `local` from `remote` (any source when the
/// nat.udp_encap directly below unwrapped it, PacketMeta::esp_in_udp, because a NAT rewrites
/// it), finds the SA by SPI, lets it verify and decrypt, and leaves the
/// inner IPv4 packet. Next Header 59 is a dummy packet (dropped as DummyPacket after it has
/// moved the replay window, RFC 4303 §2.6); any NH but 4 is BadNextHeader. An inner source
/// outside `allowed_inner_source` is PolicyMismatch (RFC 4301 §5.2 step 4). A new NAT
/// endpoint seen on an authenticated UDP-encapsulated packet raises PeerFloated.
/// NAT traversal itself is nat.udp_encap, stacked below this stage: outbound packets carry
/// PacketMeta::esp_wants_udp when this SA is UDP-encapsulated.
/// SAs: one outbound, several inbound (make-before-break rekeying keeps the old inbound SA
/// until it is removed or expires). Lifetimes are checked in poll() and after every packet;
/// crossing soft or hard raises SaExpired once each.
/// Not thread-safe; one instance per tunnel.
/// Config: {"type": "ipsec.esp_tunnel", "local": "192.0.2.1", "remote": "192.0.2.2", "ttl": 64,
///          "allowed_inner_source": "10.8.0.0/24", "sa": {...}}
class EspTunnelStage final : public core::Stage {
public:
    struct Config {
        core::Ipv4Address local;   // outer source of what we send, outer destination of what we accept
        core::Ipv4Address remote;  // the peer's tunnel endpoint
        std::uint8_t ttl = 64;
        /// Inbound tunnel policy: inner sources allowed from this peer; nullopt allows any.
        std::optional<core::Ipv4Prefix> allowed_inner_source = std::nullopt;
        /// Outbound packets ask the nat.udp_encap below for RFC 3948 encapsulation (manual
        /// SAs; an IKE-keyed stage sets it per negotiated SA with set_udp_encapsulation()).
        bool udp_encapsulation = false;
    };
    struct Counters {
        std::uint64_t dummies_sent = 0;
        std::uint64_t peer_floats = 0;
        std::uint64_t outbound_fallbacks = 0;  // forget_outbound() went back to the previous SA
    };

    static constexpr std::size_t max_headroom = core::Ipv4Header::len + Sa::max_header_len;  // 20 + 8 + 16
    static constexpr std::size_t max_tailroom = Sa::max_trailer_len;                        // 15 + 2 + 16
    /// How long a rekeyed outbound SA waits for the peer to show it installed the pair before
    /// it is used anyway (a peer that sends nothing). A lost QM3 goes again only when the peer
    /// repeats QM2, 4 s and then 7.2 s later on the usual schedule: switching sooner sealed
    /// packets with an SA the peer did not hold yet, every one of them lost until QM3 got
    /// through. The SA it replaces stays longer (ike::ChildSaSet::rekeyed_grace).
    static constexpr core::Duration outbound_confirmation_wait = std::chrono::seconds(12);
    /// How long an inbound SA we deleted keeps accepting what the peer sent before our Delete
    /// reached it.
    static constexpr core::Duration deleted_inbound_linger = std::chrono::seconds(2);

    explicit EspTunnelStage(Config config);

    std::string_view name() const noexcept override { return "ipsec.esp_tunnel"; }
    std::size_t headroom() const noexcept override { return max_headroom; }
    std::size_t tailroom() const noexcept override { return max_tailroom; }
    /// The outbound SA's: outer IPv4 header, ESP header and IV, padding at its worst, trailer
    /// and ICV (RFC 5265 §5.2), plus the UDP header when the SA is UDP-encapsulated (the
    /// nat.udp_encap below adds it and counts nothing itself). Without an outbound SA, all
    /// that any suite may add.
    std::size_t overhead() const noexcept override;
    core::Verdict encapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    core::Verdict decapsulate(core::PacketBuf& packet, core::StageContext& ctx) override;
    void on_event(const core::RaisedEvent& event, core::StageContext& ctx) override;
    std::optional<core::TimePoint> poll(core::StageContext& ctx) override;
    void report(core::StatusSink& out) const override;

    /// Adds an inbound SA (AlreadyExists for a SPI in use, InvalidArgument for an outbound
    /// SA). With a context, raises SaInstalled{spi_inbound = spi}.
    core::Result<void> install_inbound(Sa sa, core::StageContext* ctx = nullptr);
    /// Replaces the outbound SA (InvalidArgument for an inbound SA). With a context, raises
    /// SaInstalled{spi_outbound = spi}.
    core::Result<void> install_outbound(Sa sa, core::StageContext* ctx = nullptr);
    /// Both directions of one negotiation at once; raises one SaInstalled with both SPIs.
    /// Nothing is installed unless both are acceptable.
    core::Result<void> install(Sa inbound, Sa outbound, core::StageContext* ctx = nullptr);
    bool remove_inbound(std::uint32_t spi) noexcept;
    /// Keeps accepting on an inbound SA until `until`, then removes it: after we send a Delete
    /// the peer may have packets sealed with it in flight, or still be sending on it until
    /// the Delete arrives (the loser of a rekey collision is often the peer's newest SA).
    bool retire_inbound(std::uint32_t spi, core::TimePoint until) noexcept;
    /// A rekey we initiated (IKEv1 Quick Mode): the peer installs the new SA only when our
    /// QM3 reaches it, so packets sealed with it before then would be lost. The current
    /// outbound SA stays in use until the first authenticated packet arrives on
    /// `confirming_inbound_spi` (the peer has installed the pair) or `deadline` passes.
    /// Without a current outbound SA it is installed at once.
    core::Result<void> install_outbound_when_confirmed(Sa sa, bool udp_encapsulation, std::uint32_t confirming_inbound_spi,
                                                       core::TimePoint deadline, core::StageContext* ctx = nullptr);
    /// Whether outbound packets ask the layer below for UDP encapsulation (RFC 3948): what
    /// IKE negotiated for the outbound SA (RFC 3947 NAT detection or a forced encapsulation).
    void set_udp_encapsulation(bool on) noexcept { udp_encapsulation_ = on; }
    bool udp_encapsulation() const noexcept { return udp_encapsulation_; }
    /// Stops sending on the current outbound SA; a rekeyed SA waiting for confirmation takes
    /// its place at once. False when nothing was installed.
    bool remove_outbound() noexcept;
    /// Forgets the outbound SA waiting for confirmation (its CHILD_SA was deleted).
    void remove_pending_outbound() noexcept { pending_.reset(); }
    /// The CHILD_SA whose outbound SPI is `spi` was deleted: forgets that outbound SA wherever
    /// it is (current, waiting for confirmation, or the one the current replaced). When it was
    /// the current one, a waiting SA takes over, else the SA it had replaced, if that one is not
    /// hard-expired and not deleted since — the newest pair both sides still hold. Without that
    /// fallback a peer that negotiated a late extra CHILD_SA and then deleted it (an IKEv1
    /// re-authentication racing a rekey on the old IKE SA) left nothing to send on until the
    /// next rekey, although the previous pair was alive at both ends. False if no SA matched.
    bool forget_outbound(std::uint32_t spi, core::TimePoint now) noexcept;
    /// The outbound SA the current one replaced, kept for forget_outbound(); null if none.
    const Sa* previous_outbound() const noexcept { return previous_ ? &previous_->slot.sa : nullptr; }
    /// The outbound SA waiting to take over after our rekey, if any.
    const Sa* pending_outbound() const noexcept { return pending_ ? &pending_->slot.sa : nullptr; }

    /// Sends an ESP packet with Next Header 59 and payload_len zero bytes (encrypted, so
    /// indistinguishable from data on the wire) through the stages below (RFC 4303 §2.6 MUST).
    core::Verdict send_dummy(core::StageContext& ctx, std::size_t payload_len = 0);

    const Config& config() const noexcept { return config_; }
    const Sa* outbound() const noexcept { return outbound_ ? &outbound_->sa : nullptr; }
    const Sa* find_inbound(std::uint32_t spi) const noexcept;
    std::size_t inbound_count() const noexcept { return inbound_.size(); }
    const Sa& inbound_at(std::size_t i) const noexcept { return inbound_[i].sa; }
    const Counters& counters() const noexcept { return counters_; }
    /// The peer's last NAT endpoint seen on an authenticated UDP-encapsulated packet.
    const std::optional<core::Endpoint>& peer() const noexcept { return peer_; }

private:
    struct Slot {
        Sa sa;
        LifetimeState reported = LifetimeState::Live;
        std::optional<core::TimePoint> retire_at = std::nullopt;  // inbound only
        bool published = false;  // inbound: its key is in the node's AeadOffload
    };
    struct PendingOutbound {
        Slot slot;
        bool udp_encapsulation;
        std::uint32_t confirming_inbound_spi;
        core::TimePoint deadline;
    };
    struct PreviousOutbound {
        Slot slot;
        bool udp_encapsulation;
    };
    void promote_pending() noexcept;
    /// Makes `slot` the current outbound SA, keeping the one it replaces as previous_.
    void replace_outbound(Slot slot) noexcept;
    core::Verdict protect(core::PacketBuf& packet, std::uint8_t next_header, std::uint8_t tos, bool df, bool defer,
                          core::StageContext& ctx);
    static void check_lifetime(Slot& slot, core::StageContext& ctx);
    Slot* find_slot(std::uint32_t spi) noexcept;

    Config config_;
    std::optional<Slot> outbound_;
    std::optional<PendingOutbound> pending_;
    std::optional<PreviousOutbound> previous_;
    std::vector<Slot> inbound_;
    std::optional<core::Endpoint> peer_;
    bool udp_encapsulation_ = false;
    std::uint16_t next_identification_ = 0;
    Counters counters_;
};

}  // namespace mipsec::ipsec
