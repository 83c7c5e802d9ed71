// SPDX-License-Identifier: MIT
#pragma once
// Control events. A stage raises one through its context; the pipeline queues it and, after
// the current packet, hands it to every stage and to the shell, so no stage is re-entered
// mid-packet. Plain values: cheap to copy, no pointers into packets.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "core/address.hpp"
#include "core/time.hpp"

namespace mipsec::core {

/// The address a layer's outer packets leave from changed (new care-of address, new link).
struct OuterAddressChanged {
    Ipv4Address old_address;
    Ipv4Address new_address;
    std::uint32_t ifindex = 0;
};
/// The operating system reported a link going up or down (rtnetlink RTM_NEWLINK).
struct LinkChanged {
    std::uint32_t ifindex = 0;
    std::string ifname;
    bool up = false;
};
/// An address appeared on or vanished from an interface (rtnetlink RTM_NEWADDR/DELADDR).
struct AddressChanged {
    std::uint32_t ifindex = 0;
    Ipv4Prefix prefix;
    bool added = false;
};
/// A route of the main IPv4 table appeared or went (rtnetlink RTM_NEWROUTE/DELROUTE): a DHCP
/// client adds the default route just after the address, and a request sent in between is lost.
struct RouteChanged {
    std::uint32_t ifindex = 0;  // 0: no single output interface (multipath, unreachable...)
    Ipv4Prefix destination;
    bool added = false;
};
/// The path to `destination` carries at most `mtu` bytes (a send was refused as too big): the
/// layer whose outer packets go there, and the node's TUN MTU, follow it.
struct PathMtuChanged {
    std::size_t mtu = 0;
    Ipv4Address destination{};
};
struct SaInstalled {
    std::uint32_t spi_inbound = 0;
    std::uint32_t spi_outbound = 0;
};
struct SaExpired {
    std::uint32_t spi = 0;
    bool hard = false;  // soft: rekey wanted; hard: the SA is no longer used
};
/// The peer's NAT-visible endpoint changed, seen on an authenticated packet. Addressed by
/// `local`, the endpoint the packet arrived on: only the UDP layer bound there follows it, so
/// a second nat.udp_encap elsewhere in the stack keeps its own peer.
struct PeerFloated {
    Endpoint old_peer;
    Endpoint new_peer;
    Endpoint local;
};
/// A Mobile IP registration or binding changed. `kind` says whose: the shell routes a home
/// agent's bindings into the TUN, follows a mobile node's own foreign agent, and leaves a
/// foreign agent's visitor list alone, without knowing which stage sent it.
struct RegistrationChanged {
    enum class Kind : std::uint8_t {
        OwnRegistration,  // a mobile node's registration with its home agent
        HomeBinding,      // a home agent's binding for a mobile node
        Visitor,          // a foreign agent's visitor entry
    };
    Ipv4Address home_address;
    Ipv4Address care_of_address;
    bool registered = false;
    // Registered through a foreign agent: its address on the link, and that link. The shell
    // then routes the mobile node's traffic via the agent (RFC 5944 §4.2.2).
    Ipv4Address foreign_agent{};
    std::uint32_t link_ifindex = 0;
    Kind kind = Kind::OwnRegistration;
};
/// A layer obtained an inner address (IKE Mode Config, DHCP) that the layer above may use
/// as its care-of address.
struct InnerAddressAssigned {
    Ipv4Prefix prefix;
    /// false: withdrawn (the IKE SA that leased it failed or closed); stop using it.
    bool assigned = true;
};

/// A mobile node layer running RFC 5265 internal-network detection decided where the node is
/// (RFC 5265 §2, §4, §6). The layers below it follow: Inside (modes c and f) they go dormant
/// and pass every packet unchanged both ways (the VPN client starts no IKE and keeps or
/// deletes its SAs as `keep_vpn_sas` says, an x-MIP layer deregisters); Outside (cvc, fvc)
/// they work as configured; Detecting and NoService they keep registering (x-MIP asks the
/// external home agent in parallel), but a VPN layer that has no IKE SA starts none yet.
/// A layer obeys only an event raised by a stage above it (origin < its position).
struct AccessModeChanged {
    enum class Mode : std::uint8_t { Detecting, Inside, Outside, NoService };
    Mode mode = Mode::Detecting;
    std::uint32_t ifindex = 0;  // the interface detection ran on
    bool keep_vpn_sas = true;   // Inside: keep the VPN's SAs for the next outside period
    // Outside: a VPN layer that must negotiate anew waits this long first, in case the
    // internal home agent still answers (RFC 5265 §3.3 "MAY delay IKE"); zero: at once.
    Duration ike_delay{};
};

using ControlEvent = std::variant<OuterAddressChanged, LinkChanged, AddressChanged, RouteChanged, PathMtuChanged,
                                  SaInstalled, SaExpired, PeerFloated, RegistrationChanged,
                                  InnerAddressAssigned, AccessModeChanged>;

/// Index of the stage that raised an event, or `external` for the shell (rtnetlink etc.).
struct RaisedEvent {
    static constexpr std::size_t external = static_cast<std::size_t>(-1);
    std::size_t origin = external;
    ControlEvent event;
};

}  // namespace mipsec::core
