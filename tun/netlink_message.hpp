// SPDX-License-Identifier: MIT
#pragma once
// rtnetlink messages without sockets (RFC 3549 §2.3; linux/rtnetlink.h): encoders for the
// configuration requests we send, and readers for the replies and notifications we receive.
//
// Netlink is the kernel's own format: header fields and integer attributes are in HOST byte
// order (loaded with memcpy, any alignment), while IPv4 addresses inside attributes are in
// network byte order. Every message and attribute is padded to 4 bytes.
//
// Readers never trust a length: MessageReader/AttributeReader stop at the first element that
// does not fit and report malformed(); parse_* return core::Errc::Truncated/Malformed.
// Encoders allocate (configuration path, never per packet).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/address.hpp"
#include "core/events.hpp"
#include "core/result.hpp"

namespace mipsec::tun {

/// One netlink message: nlmsghdr (length, type, flags, sequence, port id) and its payload.
/// check() guarantees the 16-byte header and that nlmsg_len lies in [16, bytes.size()]; the
/// view then covers exactly nlmsg_len bytes.
class NetlinkMessageView {
public:
    static constexpr std::size_t header_len = 16;

    static std::optional<NetlinkMessageView> check(std::span<const std::uint8_t> bytes) noexcept;

    std::uint32_t length() const noexcept;
    std::uint16_t type() const noexcept;
    std::uint16_t flags() const noexcept;
    std::uint32_t seq() const noexcept;
    std::uint32_t port_id() const noexcept;
    std::span<const std::uint8_t> payload() const noexcept { return b_.subspan(header_len); }
    std::span<const std::uint8_t> message() const noexcept { return b_; }

private:
    explicit NetlinkMessageView(std::span<const std::uint8_t> b) noexcept : b_(b) {}
    std::span<const std::uint8_t> b_;
};

/// Walks the messages of one received datagram (a multipart dump reply may hold several).
class MessageReader {
public:
    explicit MessageReader(std::span<const std::uint8_t> datagram) noexcept : rest_(datagram) {}
    std::optional<NetlinkMessageView> next() noexcept;
    /// True if the walk stopped at bytes that are not a whole message.
    bool malformed() const noexcept { return malformed_; }

private:
    std::span<const std::uint8_t> rest_;
    bool malformed_ = false;
};

struct NetlinkAttribute {
    std::uint16_t type = 0;  // NLA_F_NESTED / NLA_F_NET_BYTEORDER bits masked off
    std::span<const std::uint8_t> payload;

    /// A host-order u32, or nullopt if the payload is not 4 bytes.
    std::optional<std::uint32_t> as_u32() const noexcept;
    /// A network-order IPv4 address, or nullopt if the payload is not 4 bytes.
    std::optional<core::Ipv4Address> as_ipv4() const noexcept;
    /// The bytes up to the first NUL (or all of them).
    std::string_view as_string() const noexcept;
};

/// Walks a run of attributes (rtattr/nlattr: u16 length including the 4-byte header, u16 type).
class AttributeReader {
public:
    static constexpr std::size_t header_len = 4;
    explicit AttributeReader(std::span<const std::uint8_t> bytes) noexcept : rest_(bytes) {}
    std::optional<NetlinkAttribute> next() noexcept;
    bool malformed() const noexcept { return malformed_; }

private:
    std::span<const std::uint8_t> rest_;
    bool malformed_ = false;
};

/// Builds one request: nlmsghdr, the family's fixed header, then attributes, each padded to 4.
class NetlinkRequest {
public:
    NetlinkRequest(std::uint16_t type, std::uint16_t flags, std::uint32_t seq);
    /// The fixed header after nlmsghdr (ifinfomsg, ifaddrmsg, rtmsg), zero-filled; write it
    /// with the returned span before adding attributes.
    std::span<std::uint8_t> add_fixed(std::size_t len);
    void add_attr(std::uint16_t type, std::span<const std::uint8_t> payload);
    void add_attr_u32(std::uint16_t type, std::uint32_t value);
    void add_attr_ipv4(std::uint16_t type, core::Ipv4Address address);
    void add_attr_string(std::uint16_t type, std::string_view text);  // NUL-terminated
    /// The finished message, nlmsg_len filled in.
    std::vector<std::uint8_t> finish() &&;

private:
    std::vector<std::uint8_t> b_;
};

// --- What we send ---------------------------------------------------------------------------

enum class NetlinkOp : std::uint8_t { Add, Delete };

/// RTM_NEWLINK on an existing interface: only the given fields change.
struct LinkChange {
    std::optional<std::uint32_t> mtu = std::nullopt;
    std::optional<bool> up = std::nullopt;
};

/// Unicast: out of an interface or via a gateway. Unreachable: the kernel refuses the
/// destination (the sender gets EHOSTUNREACH, a forwarded packet an ICMP unreachable) instead
/// of trying a less specific route, like `ip route add unreachable P`.
enum class RouteType : std::uint8_t { Unicast, Unreachable };

/// An IPv4 route. The destination's host bits are ignored (10.9.1.1/16 means 10.9.0.0/16).
/// A unicast route needs an ifindex, a gateway or both; table defaults to main. Designated
/// initializers read well: Route{.destination = p, .ifindex = tun.ifindex(), .source = home}.
struct Route {
    core::Ipv4Prefix destination{};
    std::uint32_t ifindex = 0;
    std::optional<core::Ipv4Address> gateway = std::nullopt;
    std::optional<std::uint32_t> table = std::nullopt;
    std::optional<core::Ipv4Address> source = std::nullopt;  // preferred source (RTA_PREFSRC)
    bool onlink = false;  // the gateway is on the link even if no address there covers it
    RouteType type = RouteType::Unicast;
    std::optional<std::uint32_t> metric = std::nullopt;  // RTA_PRIORITY; lower wins among equal prefixes
    friend bool operator==(const Route&, const Route&) = default;
};

std::vector<std::uint8_t> encode_set_link(std::uint32_t seq, std::uint32_t ifindex, const LinkChange& change);
std::vector<std::uint8_t> encode_get_link(std::uint32_t seq, std::uint32_t ifindex);
/// Errc::InvalidArgument for an empty name or one longer than 15 characters.
core::Result<std::vector<std::uint8_t>> encode_get_link(std::uint32_t seq, std::string_view name);
/// RTM_NEWADDR (create, fail if it exists) or RTM_DELADDR, like `ip addr add/del A/N dev X`.
core::Result<std::vector<std::uint8_t>> encode_address(std::uint32_t seq, NetlinkOp op, std::uint32_t ifindex,
                                                       core::Ipv4Prefix prefix);
/// RTM_GETADDR dump of all IPv4 addresses.
std::vector<std::uint8_t> encode_get_addresses(std::uint32_t seq);
/// RTM_NEWROUTE (create, fail if it exists) or RTM_DELROUTE, like `ip route add/del`.
core::Result<std::vector<std::uint8_t>> encode_route(std::uint32_t seq, NetlinkOp op, const Route& route);

/// An IPv4 policy rule "[not] fwmark M/mask lookup T", like `ip rule add not fwmark 0x6d69 table
/// 100 priority 32000`. The shell's way of sending only the host's own traffic into the TUN:
/// its outer sockets carry the mark and so keep using the main table.
struct Rule {
    std::uint32_t table = 0;
    std::uint32_t priority = 0;
    std::uint32_t fwmark = 0;
    std::uint32_t fwmask = 0xFFFFFFFF;
    bool invert = false;  // "not fwmark"
    friend bool operator==(const Rule&, const Rule&) = default;
};
/// RTM_NEWRULE (create, fail if it exists) or RTM_DELRULE. Errc::InvalidArgument for table 0
/// or a mark of 0 (the kernel would then ignore the mark match).
core::Result<std::vector<std::uint8_t>> encode_rule(std::uint32_t seq, NetlinkOp op, const Rule& rule);

// --- What we receive ------------------------------------------------------------------------

/// NLMSG_ERROR: an acknowledgement (error 0) or a failure (a positive errno), with the
/// kernel's extended-ack text when it sent one (NETLINK_EXT_ACK).
struct NetlinkAck {
    std::uint32_t seq = 0;
    int error = 0;
    std::string message;
};
core::Result<NetlinkAck> parse_ack(const NetlinkMessageView& msg);

/// RTM_NEWLINK / RTM_DELLINK.
struct LinkInfo {
    std::uint32_t ifindex = 0;
    std::string name;
    std::uint32_t flags = 0;  // IFF_*
    std::uint32_t mtu = 0;    // 0 if the message had none
    bool deleted = false;     // RTM_DELLINK
    /// Administratively up and operational (IFF_UP and IFF_RUNNING): usable for traffic.
    bool up() const noexcept;
};
core::Result<LinkInfo> parse_link(const NetlinkMessageView& msg);

/// RTM_NEWADDR / RTM_DELADDR for IPv4; core::Errc::Unsupported for other families.
struct AddressInfo {
    std::uint32_t ifindex = 0;
    core::Ipv4Prefix prefix;  // the local address (IFA_LOCAL, else IFA_ADDRESS) and its length
    bool deleted = false;     // RTM_DELADDR
};
core::Result<AddressInfo> parse_address(const NetlinkMessageView& msg);

/// RTM_NEWROUTE / RTM_DELROUTE for IPv4; core::Errc::Unsupported for other families.
struct RouteInfo {
    std::uint32_t ifindex = 0;  // RTA_OIF, 0 if absent
    core::Ipv4Prefix destination;
    std::uint32_t table = 0;    // RTA_TABLE, else rtm_table
    std::uint8_t type = 0;      // RTN_*
    bool deleted = false;
};
core::Result<RouteInfo> parse_route(const NetlinkMessageView& msg);

/// Turns rtnetlink notifications (RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE) into
/// control events; routes only for unicast routes of the main table.
/// The kernel repeats RTM_NEWLINK for every attribute change (MTU, carrier, statistics), so a
/// LinkChanged is raised only when an interface's up() state differs from the last one raised
/// for it (or it is seen for the first time); RTM_DELLINK raises up=false and forgets it.
/// Every RTM_NEWADDR/DELADDR for IPv4 raises an AddressChanged. Anything else is ignored;
/// malformed messages are counted, never thrown.
/// Not thread-safe.
class NetlinkEventDecoder {
public:
    /// Appends the events of one datagram to `out`; returns how many were appended.
    std::size_t decode(std::span<const std::uint8_t> datagram, std::vector<core::ControlEvent>& out);
    std::uint64_t malformed_count() const noexcept { return malformed_; }

private:
    std::unordered_map<std::uint32_t, bool> link_up_;
    std::uint64_t malformed_ = 0;
};

}  // namespace mipsec::tun
