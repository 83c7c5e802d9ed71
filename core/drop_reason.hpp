// SPDX-License-Identifier: MIT
#pragma once
// Every reason a stage may drop a packet. One enum for the whole stack so counters and
// `mipsec status` speak one language; append new reasons before Count.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mipsec::core {

enum class DropReason : std::uint8_t {
    None,
    Truncated,          // shorter than its headers say
    Malformed,          // a field holds an impossible value
    NoHeadroom,         // a push() did not fit: configuration bug (headroom sum too small)
    NoTailroom,         // a put() did not fit
    NoBuffer,           // pool empty when a stage needed a new buffer
    TooBig,             // exceeds the MTU of the layer below
    TtlExpired,         // TTL 0 (never encapsulated, RFC 2003 §3.1)
    Fragment,           // a fragment where only whole packets are accepted
    UnexpectedProtocol, // outer protocol is not the one this stage handles
    NotForUs,           // addresses do not match this tunnel's endpoints
    PolicyMismatch,     // inner addresses not allowed by the tunnel's policy/selectors
    Loop,               // would tunnel a packet back into itself
    UnknownSpi,         // ESP: no SA for this SPI
    ReplayedSequence,   // ESP: sequence already seen in the window
    SequenceTooOld,     // ESP: left of the replay window
    AuthFailed,         // ICV / authenticator did not verify
    BadPadding,         // ESP padding bytes or length invalid
    BadNextHeader,      // ESP/MIP next header not allowed here
    DummyPacket,        // ESP next header 59: discarded silently by RFC 4303 §2.6, counted
    SaExpired,          // hard lifetime reached, SA no longer usable
    SequenceExhausted,  // sequence counter would wrap (no ESN): rekey needed
    NoSa,               // outbound: no SA installed yet
    NoBinding,          // MIP: no binding for this address
    BindingMismatch,    // MIP: outer source does not match the binding (RFC 3024)
    NotRegistered,      // MIP: mobile node has no current registration
    MisplacedKeepalive, // NAT keepalive / non-ESP marker where it is not allowed
    UnknownMessage,     // a control message type we do not handle
    RateLimited,        // a control reply suppressed by rate limiting
    Blocked,            // data gated by policy (e.g. RFC 5265 link-change block)
    Internal,           // our invariant broke; never caused by input alone
    UdpEncapMissing,    // an ESP SA wants UDP encapsulation and no nat.udp_encap below took it
    Impaired,           // tap.impair lost it on purpose (loss model or full delay queue)
    NotOnLink,          // a link-only message (IP TTL must be 1) that came from beyond the link
    BadVnetHeader,      // TUN offload: virtio-net header with unknown flags/GSO type or checksum fields off the L4 header
    GsoInconsistent,    // TUN offload: hdr_len/csum_start/lengths disagree with the packet's own headers
    GsoSizeInvalid,     // TUN offload: gso_size 0 or larger than the MTU leaves room for
    BadChecksum,        // TUN offload: a segment offered for coalescing fails its IP or TCP checksum
    Count
};

inline constexpr std::size_t drop_reason_count = static_cast<std::size_t>(DropReason::Count);

/// Stable snake_case name for counters, logs and JSON status.
std::string_view to_string(DropReason r) noexcept;

}  // namespace mipsec::core
