// SPDX-License-Identifier: MIT
#include "apps/shell/transport.hpp"

#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>

#include <netinet/in.h>
#include <unistd.h>

#include "core/ipv4.hpp"
#include "core/udp.hpp"

namespace mipsec::shell {

namespace {
sockaddr_in to_sockaddr(core::Ipv4Address a, std::uint16_t port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(a.value);
    return sa;
}

[[noreturn]] void fail(const std::string& what, int err) {
    std::string hint;
    if (err == EPERM || err == EACCES) hint = " (needs root or CAP_NET_RAW/CAP_NET_BIND_SERVICE)";
    if (err == EADDRINUSE) hint = " (another process uses it: stop it or pick another port)";
    if (err == EADDRNOTAVAIL) hint = " (the address is not configured on any interface of this host/namespace)";
    throw std::runtime_error(what + ": " + std::strerror(err) + hint);
}
}  // namespace

Transport::Transport(const TransportConfig& config, std::size_t batch)
    : local_(config.local), batch_(batch), any_local_(config.local.is_unspecified()) {
    auto mark = [&](int fd) {
        if (!config.fwmark) return;
        std::uint32_t m = *config.fwmark;
        if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof m) != 0) fail("cannot set SO_MARK " + std::to_string(m), errno);
    };
    try {
        for (auto port : config.udp_ports) {
            int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) fail("cannot create UDP socket", errno);
            sockets_.push_back({Kind::Udp, port, 0, fd, {}});
            int one = 1;
            ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            // The address each datagram was sent to: with a wildcard bind it is the only way
            // to rebuild the IP header (and with a fixed one it costs nothing).
            if (::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) != 0) fail("cannot set IP_PKTINFO", errno);
            mark(fd);
            auto sa = to_sockaddr(local_, port);
            if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
                fail("cannot bind UDP " + local_.to_string() + ":" + std::to_string(port), errno);
        }
        for (auto proto : config.raw_protocols) {
            int fd = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
            if (fd < 0) fail("cannot create raw socket for IP protocol " + std::to_string(proto), errno);
            sockets_.push_back({Kind::Raw, 0, proto, fd, {}});
            int one = 1;
            if (::setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof one) != 0)
                fail("cannot set IP_HDRINCL on raw socket", errno);
            mark(fd);
            // Binding a raw socket filters inbound packets to this destination address.
            auto sa = to_sockaddr(local_, 0);
            if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
                fail("cannot bind raw socket for protocol " + std::to_string(proto) + " to " + local_.to_string(), errno);
        }
    } catch (...) {
        for (auto& s : sockets_) ::close(s.fd);
        throw;
    }
    msgs_.resize(batch_);
    iovs_.resize(batch_);
    names_.resize(batch_);
    owner_.resize(batch_);
    controls_.resize(batch_);
}

Transport::~Transport() {
    for (auto& s : sockets_) ::close(s.fd);
}

int Transport::socket_for(std::span<const std::uint8_t> packet, std::size_t& payload_offset,
                          sockaddr_storage& destination, socklen_t& destination_len) const {
    auto ip = core::Ipv4View::check(packet);
    if (!ip) return -1;
    if (ip->protocol() == core::ip_protocol::udp) {
        auto udp = core::UdpView::check(ip->payload());
        if (!udp) return -1;
        for (std::size_t i = 0; i < sockets_.size(); ++i) {
            if (sockets_[i].kind == Kind::Udp && sockets_[i].port == udp->source_port()) {
                auto sa = to_sockaddr(ip->destination(), udp->destination_port());
                std::memcpy(&destination, &sa, sizeof sa);
                destination_len = sizeof sa;
                payload_offset = ip->header_len() + core::UdpView::header_len;
                return static_cast<int>(i);
            }
        }
    }
    // A socket for the exact protocol first, else the any-protocol one.
    std::optional<std::size_t> chosen;
    for (std::size_t i = 0; i < sockets_.size(); ++i) {
        if (sockets_[i].kind != Kind::Raw) continue;
        if (sockets_[i].protocol == ip->protocol()) {
            chosen = i;
            break;
        }
        if (sockets_[i].protocol == any_protocol) chosen = i;
    }
    if (chosen) {
        auto sa = to_sockaddr(ip->destination(), 0);
        std::memcpy(&destination, &sa, sizeof sa);
        destination_len = sizeof sa;
        payload_offset = 0;
        return static_cast<int>(*chosen);
    }
    return -1;
}

void Transport::send(std::span<core::PacketBuf> packets) {
    // Fill one mmsghdr per packet, then flush runs that share a socket with one sendmmsg.
    std::size_t n = 0;
    auto flush = [&] {
        std::size_t start = 0;
        while (start < n) {
            std::size_t end = start + 1;
            while (end < n && owner_[end] == owner_[start]) ++end;
            auto& sock = sockets_[static_cast<std::size_t>(owner_[start])];
            std::size_t done = start;
            while (done < end) {
                int sent = ::sendmmsg(sock.fd, msgs_.data() + done, static_cast<unsigned>(end - done), 0);
                if (sent <= 0) {
                    // The packet is lost either way (full socket buffer, unreachable); count it.
                    ++sock.counters.tx_errors;
                    ++done;
                    continue;
                }
                for (int k = 0; k < sent; ++k) {
                    ++sock.counters.tx_packets;
                    sock.counters.tx_bytes += msgs_[done + static_cast<std::size_t>(k)].msg_hdr.msg_iov->iov_len;
                }
                done += static_cast<std::size_t>(sent);
            }
            start = end;
        }
        n = 0;
    };
    for (auto& pkt : packets) {
        std::size_t offset = 0;
        socklen_t name_len = 0;
        int owner = socket_for(pkt.bytes(), offset, names_[n], name_len);
        if (owner < 0) {
            ++unroutable_;
            continue;
        }
        auto ip = core::Ipv4View::check(pkt.bytes());
        iovs_[n] = {pkt.data() + offset, ip->total_length() - offset};
        msgs_[n] = {};
        msgs_[n].msg_hdr.msg_name = &names_[n];
        msgs_[n].msg_hdr.msg_namelen = name_len;
        msgs_[n].msg_hdr.msg_iov = &iovs_[n];
        msgs_[n].msg_hdr.msg_iovlen = 1;
        const bool udp = sockets_[static_cast<std::size_t>(owner)].kind == Kind::Udp;
        std::size_t control_len = 0;
        auto add_cmsg = [&](int type, const void* data, std::size_t len) {
            auto* cmsg = reinterpret_cast<cmsghdr*>(controls_[n].data() + control_len);
            cmsg->cmsg_level = IPPROTO_IP;
            cmsg->cmsg_type = type;
            cmsg->cmsg_len = CMSG_LEN(len);
            std::memcpy(CMSG_DATA(cmsg), data, len);
            control_len += CMSG_SPACE(len);
        };
        if ((any_local_ && udp) || pkt.meta().egress_ifindex != 0) {
            // Leave from the source the stage chose (the current care-of address), and by the
            // interface it named, if any (the kernel then takes the destination as on-link
            // when no route through that interface covers it).
            in_pktinfo info{};
            info.ipi_spec_dst.s_addr = udp ? htonl(ip->source().value) : 0;
            info.ipi_ifindex = static_cast<int>(pkt.meta().egress_ifindex);
            add_cmsg(IP_PKTINFO, &info, sizeof info);
        }
        if (udp && ip->ttl() != 64) {
            // The kernel writes the header of a UDP socket's datagram; keep the stage's TTL
            // (a reverse-tunnelling registration request must have 255, RFC 3024 §4.1.1).
            const int ttl = ip->ttl();
            add_cmsg(IP_TTL, &ttl, sizeof ttl);
        }
        if (control_len != 0) {
            msgs_[n].msg_hdr.msg_control = controls_[n].data();
            msgs_[n].msg_hdr.msg_controllen = control_len;
        }
        owner_[n] = owner;
        if (++n == batch_) flush();
    }
    flush();
}

std::size_t Transport::receive(std::size_t index, std::span<core::PacketBuf> bufs) {
    auto& sock = sockets_[index];
    std::size_t n = std::min(bufs.size(), batch_);
    const bool udp = sock.kind == Kind::Udp;
    for (std::size_t i = 0; i < n; ++i) {
        auto room = bufs[i].writable();
        std::size_t skip = udp ? rebuilt_header_len : 0;
        if (room.size() <= skip) return 0;
        iovs_[i] = {room.data() + skip, room.size() - skip};
        msgs_[i] = {};
        msgs_[i].msg_hdr.msg_name = &names_[i];
        msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
        msgs_[i].msg_hdr.msg_iov = &iovs_[i];
        msgs_[i].msg_hdr.msg_iovlen = 1;
        if (udp) {
            msgs_[i].msg_hdr.msg_control = controls_[i].data();
            msgs_[i].msg_hdr.msg_controllen = controls_[i].size();
        }
    }
    int got = ::recvmmsg(sock.fd, msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
    if (got <= 0) {
        if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ++sock.counters.rx_errors;
        return 0;
    }
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(got); ++i) {
        auto& buf = bufs[accepted];
        std::size_t len = msgs_[i].msg_len;
        const bool truncated = (msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        sockaddr_in from{};
        std::memcpy(&from, &names_[i], sizeof from);
        core::Endpoint source{{ntohl(from.sin_addr.s_addr)}, ntohs(from.sin_port)};
        if (truncated || len + (udp ? rebuilt_header_len : 0) > 0xFFFF) {
            ++sock.counters.rx_errors;
            continue;
        }
        if (accepted != i) std::swap(bufs[accepted], bufs[i]);
        core::Ipv4Address destination = local_;
        for (auto* c = CMSG_FIRSTHDR(&msgs_[i].msg_hdr); udp && c != nullptr; c = CMSG_NXTHDR(&msgs_[i].msg_hdr, c)) {
            if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                in_pktinfo info{};
                std::memcpy(&info, CMSG_DATA(c), sizeof info);
                destination = core::Ipv4Address{ntohl(info.ipi_addr.s_addr)};
            }
        }
        if (udp) {
            // Rebuild the IP/UDP headers the socket consumed, so stages see a whole packet.
            if (!buf.resize(rebuilt_header_len + len)) {
                ++sock.counters.rx_errors;
                continue;
            }
            core::Ipv4Header ip;
            ip.total_length = static_cast<std::uint16_t>(rebuilt_header_len + len);
            ip.protocol = core::ip_protocol::udp;
            ip.source = source.address;
            ip.destination = destination;
            ip.emit(buf.bytes());
            core::UdpHeader u{source.port, sock.port, static_cast<std::uint16_t>(len + core::UdpHeader::len), 0};
            u.emit(buf.bytes().subspan(core::Ipv4Header::len));
        } else {
            if (!buf.resize(len)) {
                ++sock.counters.rx_errors;
                continue;
            }
        }
        ++sock.counters.rx_packets;
        sock.counters.rx_bytes += len;
        ++accepted;
    }
    return accepted;
}

}  // namespace mipsec::shell
