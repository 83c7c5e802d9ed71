// SPDX-License-Identifier: MIT
#pragma once
// rtnetlink sockets: Netlink configures interfaces, addresses and routes with blocking
// request/ack exchanges (the shell's startup and shutdown); NetlinkMonitor watches link and
// IPv4 address changes without blocking (the shell waits on fd() and dispatches the events to
// the pipeline; this is how a mobile node notices it moved). Message bytes come from
// tun/netlink_message.hpp; these classes only move them. All of this is our own code: we never
// run `ip`.
//
// Errors: a kernel refusal comes back as std::error_code(errno, std::system_category()) with
// the kernel's message ("File exists", "No such device"); EPERM as Errc::NotPermitted (which
// compares equal to std::errc::operation_not_permitted). The kernel's extended-ack text, if
// any, is kept in last_error_detail().
// Both classes are move-only owners of one socket and are not thread-safe. They act on the
// network namespace that was current when they were opened.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/events.hpp"
#include "core/result.hpp"
#include "tun/netlink_message.hpp"

namespace mipsec::tun {

class Netlink {
public:
    /// Opens a NETLINK_ROUTE socket; replies are waited for at most 5 s (Errc::Timeout).
    static core::Result<Netlink> open();
    Netlink(Netlink&& other) noexcept;
    Netlink& operator=(Netlink&& other) noexcept;
    Netlink(const Netlink&) = delete;
    Netlink& operator=(const Netlink&) = delete;
    ~Netlink();

    core::Result<void> set_mtu(std::uint32_t ifindex, std::uint32_t mtu);
    core::Result<void> set_up(std::uint32_t ifindex, bool up);
    /// Fails with std::errc::file_exists if the address is already there.
    core::Result<void> add_address(std::uint32_t ifindex, core::Ipv4Prefix prefix);
    core::Result<void> del_address(std::uint32_t ifindex, core::Ipv4Prefix prefix);
    /// Fails with std::errc::file_exists if the route is already there.
    core::Result<void> add_route(const Route& route);
    core::Result<void> del_route(const Route& route);
    core::Result<void> add_rule(const Rule& rule);
    core::Result<void> del_rule(const Rule& rule);
    /// core::Errc::NotFound if there is no such interface.
    core::Result<std::uint32_t> ifindex_of(std::string_view name);
    core::Result<LinkInfo> link(std::uint32_t ifindex);
    core::Result<LinkInfo> link(std::string_view name);
    /// The IPv4 addresses of one interface, or of all with ifindex 0.
    core::Result<std::vector<AddressInfo>> addresses(std::uint32_t ifindex = 0);

    /// The kernel's extended-ack message for the last failed request, e.g. "Nexthop has
    /// invalid gateway"; empty if it sent none.
    const std::string& last_error_detail() const noexcept { return last_detail_; }

private:
    explicit Netlink(int fd) noexcept : fd_(fd) {}
    std::uint32_t next_seq() noexcept { return ++seq_; }
    core::Result<void> send(std::span<const std::uint8_t> request);
    /// Receives one datagram into rx_; Errc::Timeout when none arrives in time.
    core::Result<std::span<const std::uint8_t>> receive();
    /// Sends a request flagged NLM_F_ACK and waits for the ack with its sequence number.
    core::Result<void> transact(core::Result<std::vector<std::uint8_t>> request);
    core::Result<LinkInfo> get_link(core::Result<std::vector<std::uint8_t>> request);
    std::error_code kernel_error(int err);

    int fd_ = -1;
    std::uint32_t seq_ = 0;
    std::vector<std::uint8_t> rx_;
    std::string last_detail_;
};

class NetlinkMonitor {
public:
    /// Opens a non-blocking socket subscribed to RTMGRP_LINK and RTMGRP_IPV4_IFADDR.
    static core::Result<NetlinkMonitor> open();
    NetlinkMonitor(NetlinkMonitor&& other) noexcept;
    NetlinkMonitor& operator=(NetlinkMonitor&& other) noexcept;
    NetlinkMonitor(const NetlinkMonitor&) = delete;
    NetlinkMonitor& operator=(const NetlinkMonitor&) = delete;
    ~NetlinkMonitor();

    /// Readable when notifications wait; then call drain().
    int fd() const noexcept { return fd_; }
    /// Reads every waiting notification and appends the resulting LinkChanged /
    /// AddressChanged events (see NetlinkEventDecoder for which); returns how many. Never
    /// blocks. Errors are counted, not returned.
    std::size_t drain(std::vector<core::ControlEvent>& out);

    /// Times the kernel dropped notifications because we read too slowly (ENOBUFS). After
    /// one, state may have been missed: re-read it with Netlink::link()/addresses().
    std::uint64_t overruns() const noexcept { return overruns_; }
    std::uint64_t errors() const noexcept { return errors_; }
    std::uint64_t malformed_count() const noexcept { return decoder_.malformed_count(); }

private:
    explicit NetlinkMonitor(int fd) noexcept : fd_(fd) {}

    int fd_ = -1;
    std::vector<std::uint8_t> rx_;
    NetlinkEventDecoder decoder_;
    std::uint64_t overruns_ = 0;
    std::uint64_t errors_ = 0;
};

}  // namespace mipsec::tun
