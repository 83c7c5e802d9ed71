// SPDX-License-Identifier: MIT
#include "tun/netlink.hpp"

#include <cerrno>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <utility>

#include "tun/errc.hpp"

namespace mipsec::tun {
namespace {

// Big enough for any single rtnetlink message the kernel sends us (it sizes dump chunks to a
// page or to our buffer, whichever is smaller, and link messages stay well below this).
constexpr std::size_t rx_len = 64 * 1024;
constexpr int reply_timeout_s = 5;
// A bound on datagrams per drain() so one busy netlink socket cannot starve the event loop;
// the fd stays readable and the shell comes back.
constexpr int drain_batch = 256;

std::error_code errno_code(int err) {
    if (err == EPERM || err == EACCES) return Errc::NotPermitted;
    return {err, std::system_category()};
}

struct Received {
    ssize_t len;
    bool from_kernel;
    bool truncated;
};

/// One recvmsg; only the kernel (port 0) may talk to us: any other sender is some local
/// process trying to spoof replies or notifications.
Received receive_one(int fd, std::vector<std::uint8_t>& buf, int flags) {
    sockaddr_nl from{};
    iovec iov{buf.data(), buf.size()};
    msghdr mh{};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    ssize_t n = ::recvmsg(fd, &mh, flags);
    return {n, n >= 0 && from.nl_pid == 0, (mh.msg_flags & MSG_TRUNC) != 0};
}

int open_socket(int type_flags, std::uint32_t groups) {
    int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | type_flags, NETLINK_ROUTE);
    if (fd < 0) return -1;
    sockaddr_nl local{};
    local.nl_family = AF_NETLINK;
    local.nl_groups = groups;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) < 0) {
        int err = errno;
        ::close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

}  // namespace

// --- Netlink ---------------------------------------------------------------------------------

core::Result<Netlink> Netlink::open() {
    int fd = open_socket(0, 0);
    if (fd < 0) return errno_code(errno);
    int on = 1;
    // Extended acks give the kernel's reason in words; capped acks do not echo our request
    // back. Both are optional: a kernel without them refuses the option, which is fine.
    (void)::setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &on, sizeof on);
    (void)::setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &on, sizeof on);
    timeval tv{reply_timeout_s, 0};
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    Netlink nl(fd);
    nl.rx_.resize(rx_len);
    return nl;
}

Netlink::Netlink(Netlink&& other) noexcept { *this = std::move(other); }

Netlink& Netlink::operator=(Netlink&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
        seq_ = other.seq_;
        rx_ = std::move(other.rx_);
        last_detail_ = std::move(other.last_detail_);
    }
    return *this;
}

Netlink::~Netlink() {
    if (fd_ >= 0) ::close(fd_);
}

std::error_code Netlink::kernel_error(int err) { return errno_code(err); }

core::Result<void> Netlink::send(std::span<const std::uint8_t> request) {
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    for (;;) {
        ssize_t n = ::sendto(fd_, request.data(), request.size(), 0, reinterpret_cast<const sockaddr*>(&kernel),
                             sizeof kernel);
        if (n >= 0) return {};
        if (errno != EINTR) return errno_code(errno);
    }
}

core::Result<std::span<const std::uint8_t>> Netlink::receive() {
    for (;;) {
        Received r = receive_one(fd_, rx_, 0);
        if (r.len < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return Errc::Timeout;
            return errno_code(errno);
        }
        if (!r.from_kernel) continue;
        if (r.truncated) return Errc::Protocol;
        return std::span<const std::uint8_t>(rx_.data(), static_cast<std::size_t>(r.len));
    }
}

core::Result<void> Netlink::transact(core::Result<std::vector<std::uint8_t>> request) {
    last_detail_.clear();
    if (!request) return request.error();
    auto msg = NetlinkMessageView::check(*request);
    if (!msg) return core::Errc::InvalidArgument;
    std::uint32_t seq = msg->seq();
    if (auto sent = send(*request); !sent) return sent;
    for (;;) {
        auto datagram = receive();
        if (!datagram) return datagram.error();
        MessageReader reader(*datagram);
        while (auto reply = reader.next()) {
            // Replies to an earlier request that timed out carry an older sequence number.
            if (reply->seq() != seq || reply->type() != NLMSG_ERROR) continue;
            auto ack = parse_ack(*reply);
            if (!ack) return Errc::Protocol;
            if (ack->error == 0) return {};
            last_detail_ = std::move(ack->message);
            return kernel_error(ack->error);
        }
        if (reader.malformed()) return Errc::Protocol;
    }
}

core::Result<void> Netlink::set_mtu(std::uint32_t ifindex, std::uint32_t mtu) {
    return transact(encode_set_link(next_seq(), ifindex, LinkChange{.mtu = mtu, .up = std::nullopt}));
}

core::Result<void> Netlink::set_up(std::uint32_t ifindex, bool up) {
    return transact(encode_set_link(next_seq(), ifindex, LinkChange{.mtu = std::nullopt, .up = up}));
}

core::Result<void> Netlink::add_address(std::uint32_t ifindex, core::Ipv4Prefix prefix) {
    return transact(encode_address(next_seq(), NetlinkOp::Add, ifindex, prefix));
}

core::Result<void> Netlink::del_address(std::uint32_t ifindex, core::Ipv4Prefix prefix) {
    return transact(encode_address(next_seq(), NetlinkOp::Delete, ifindex, prefix));
}

core::Result<void> Netlink::add_route(const Route& route) {
    return transact(encode_route(next_seq(), NetlinkOp::Add, route));
}

core::Result<void> Netlink::del_route(const Route& route) {
    return transact(encode_route(next_seq(), NetlinkOp::Delete, route));
}

core::Result<void> Netlink::add_rule(const Rule& rule) { return transact(encode_rule(next_seq(), NetlinkOp::Add, rule)); }

core::Result<void> Netlink::del_rule(const Rule& rule) { return transact(encode_rule(next_seq(), NetlinkOp::Delete, rule)); }

core::Result<LinkInfo> Netlink::get_link(core::Result<std::vector<std::uint8_t>> request) {
    last_detail_.clear();
    if (!request) return request.error();
    std::uint32_t seq = NetlinkMessageView::check(*request)->seq();
    if (auto sent = send(*request); !sent) return sent.error();
    for (;;) {
        auto datagram = receive();
        if (!datagram) return datagram.error();
        MessageReader reader(*datagram);
        while (auto reply = reader.next()) {
            if (reply->seq() != seq) continue;
            if (reply->type() == RTM_NEWLINK) {
                auto link = parse_link(*reply);
                if (!link) return Errc::Protocol;
                return link;
            }
            if (reply->type() == NLMSG_ERROR) {
                auto ack = parse_ack(*reply);
                if (!ack || ack->error == 0) return Errc::Protocol;
                last_detail_ = std::move(ack->message);
                if (ack->error == ENODEV) return core::Errc::NotFound;
                return kernel_error(ack->error);
            }
        }
        if (reader.malformed()) return Errc::Protocol;
    }
}

core::Result<LinkInfo> Netlink::link(std::uint32_t ifindex) {
    return get_link(encode_get_link(next_seq(), ifindex));
}

core::Result<LinkInfo> Netlink::link(std::string_view name) {
    return get_link(encode_get_link(next_seq(), name));
}

core::Result<std::uint32_t> Netlink::ifindex_of(std::string_view name) {
    auto l = link(name);
    if (!l) return l.error();
    return l->ifindex;
}

core::Result<std::vector<AddressInfo>> Netlink::addresses(std::uint32_t ifindex) {
    last_detail_.clear();
    std::uint32_t seq = next_seq();
    auto request = encode_get_addresses(seq);
    if (auto sent = send(request); !sent) return sent.error();
    std::vector<AddressInfo> found;
    for (;;) {
        auto datagram = receive();
        if (!datagram) return datagram.error();
        MessageReader reader(*datagram);
        while (auto reply = reader.next()) {
            if (reply->seq() != seq) continue;
            if (reply->type() == NLMSG_DONE) return found;
            if (reply->type() == NLMSG_ERROR) {
                auto ack = parse_ack(*reply);
                if (!ack || ack->error == 0) return Errc::Protocol;
                last_detail_ = std::move(ack->message);
                return kernel_error(ack->error);
            }
            if (reply->type() != RTM_NEWADDR) continue;
            auto addr = parse_address(*reply);
            if (!addr) {
                if (addr.error() == core::Errc::Unsupported) continue;
                return Errc::Protocol;
            }
            if (ifindex == 0 || addr->ifindex == ifindex) found.push_back(*addr);
        }
        if (reader.malformed()) return Errc::Protocol;
    }
}

// --- NetlinkMonitor --------------------------------------------------------------------------

core::Result<NetlinkMonitor> NetlinkMonitor::open() {
    int fd = open_socket(SOCK_NONBLOCK, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE);
    if (fd < 0) return errno_code(errno);
    // A larger receive buffer makes overruns rarer when many interfaces change at once
    // (the kernel caps it at net.core.rmem_max).
    int rcvbuf = 1 << 20;
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    NetlinkMonitor m(fd);
    m.rx_.resize(rx_len);
    return m;
}

NetlinkMonitor::NetlinkMonitor(NetlinkMonitor&& other) noexcept { *this = std::move(other); }

NetlinkMonitor& NetlinkMonitor::operator=(NetlinkMonitor&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = std::exchange(other.fd_, -1);
        rx_ = std::move(other.rx_);
        decoder_ = std::move(other.decoder_);
        overruns_ = other.overruns_;
        errors_ = other.errors_;
    }
    return *this;
}

NetlinkMonitor::~NetlinkMonitor() {
    if (fd_ >= 0) ::close(fd_);
}

std::size_t NetlinkMonitor::drain(std::vector<core::ControlEvent>& out) {
    std::size_t added = 0;
    for (int i = 0; i < drain_batch; ++i) {
        Received r = receive_one(fd_, rx_, MSG_DONTWAIT);
        if (r.len < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == ENOBUFS) {
                ++overruns_;
                continue;
            }
            ++errors_;
            break;
        }
        if (!r.from_kernel) continue;
        if (r.truncated) {
            ++errors_;
            continue;
        }
        added += decoder_.decode(std::span<const std::uint8_t>(rx_.data(), static_cast<std::size_t>(r.len)), out);
    }
    return added;
}

}  // namespace mipsec::tun
