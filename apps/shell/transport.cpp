// SPDX-License-Identifier: MIT
#include "apps/shell/transport.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>

#include <netinet/in.h>
#include <netinet/udp.h>
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

namespace {
// Privileged, the FORCE variants go past net.core.rmem_max/wmem_max; otherwise the plain ones
// are capped there. Returns what the kernel granted (it reports double for its own bookkeeping).
std::size_t size_buffer(int fd, int force_option, int option, std::size_t bytes) {
    const int value = static_cast<int>(bytes);
    if (::setsockopt(fd, SOL_SOCKET, force_option, &value, sizeof value) != 0)
        (void)::setsockopt(fd, SOL_SOCKET, option, &value, sizeof value);
    int granted = 0;
    socklen_t len = sizeof granted;
    if (::getsockopt(fd, SOL_SOCKET, option, &granted, &len) != 0) return 0;
    return static_cast<std::size_t>(granted) / 2;
}

// A UDP port nobody holds on `local` (0: one the kernel picks), checked with a socket that
// reuses nothing, so any holder makes its bind fail: a SO_REUSEPORT bind would instead join a
// group of the same user already there, and share its traffic without a word.
std::uint16_t unheld_port(core::Ipv4Address local, std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("cannot create UDP socket", errno);
    auto sa = to_sockaddr(local, port);
    socklen_t len = sizeof sa;
    const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0 &&
                       ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0;
    const int err = errno;
    ::close(fd);
    if (!bound) fail("cannot bind UDP " + local.to_string() + ":" + std::to_string(port), err);
    return ntohs(sa.sin_port);
}
}  // namespace

SocketTransport::Sharing SocketTransport::secondary_of(const SocketTransport& primary) {
    if (!primary.sharing_.reuse_port || primary.sharing_.secondary)
        throw std::invalid_argument("a secondary transport needs a primary opened with SocketTransport::Sharing{.reuse_port = true}: "
                                    "without SO_REUSEPORT on the primary's sockets it cannot bind their ports");
    Sharing sharing{.reuse_port = true, .secondary = true};
    for (const auto& s : primary.sockets_)
        if (s.kind == Kind::Udp) sharing.udp_ports.push_back(s.port);
    return sharing;
}

SocketTransport::SocketTransport(const TransportConfig& config, std::size_t batch, std::optional<core::Logger> log, SendBatch send_batch)
    : SocketTransport(config, batch, Sharing{}, std::move(log), std::move(send_batch)) {}

SocketTransport::SocketTransport(const TransportConfig& config, std::size_t batch, Sharing sharing, std::optional<core::Logger> log,
                                 SendBatch send_batch)
    : local_(config.local), sharing_(std::move(sharing)), batch_(batch), fwmark_(config.fwmark), link_mtu_(config.link_mtu),
      log_(std::move(log)), send_batch_(std::move(send_batch)), any_local_(config.local.is_unspecified()) {
    if (sharing_.secondary) sharing_.reuse_port = true;
    if (sharing_.udp_ports.empty()) sharing_.udp_ports = config.udp_ports;
    const auto& udp_ports = sharing_.udp_ports;
    if (sharing_.secondary && std::find(udp_ports.begin(), udp_ports.end(), std::uint16_t{0}) != udp_ports.end())
        throw std::invalid_argument("a secondary transport cannot bind UDP port 0: the kernel would pick a port of its own, not the "
                                    "primary's; pass the primary's ports (SocketTransport::secondary_of(primary))");
    if (!send_batch_) send_batch_ = [](int fd, mmsghdr* msgs, unsigned count) { return ::sendmmsg(fd, msgs, count, 0); };
    // Offloads are probed per socket: a kernel without them (before 4.18 for UDP_SEGMENT,
    // 5.0 for UDP_GRO) refuses the option, and the socket works as before.
    auto probe_offloads = [&](Socket& s) {
        if (!config.udp_gso) {
            s.gso_off = "off in config";
        } else {
            int size = 0;
            socklen_t len = sizeof size;
            if (::getsockopt(s.fd, SOL_UDP, UDP_SEGMENT, &size, &len) == 0) s.gso = true;
            else s.gso_off = std::string("UDP_SEGMENT refused: ") + std::strerror(errno);
        }
        if (!config.udp_gro) {
            s.gro_off = "off in config";
        } else {
            int one = 1;
            if (::setsockopt(s.fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0) s.gro = true;
            else s.gro_off = std::string("UDP_GRO refused: ") + std::strerror(errno);
        }
    };
    auto mark = [&](int fd) {
        if (!config.fwmark) return;
        std::uint32_t m = *config.fwmark;
        if (::setsockopt(fd, SOL_SOCKET, SO_MARK, &m, sizeof m) != 0) fail("cannot set SO_MARK " + std::to_string(m), errno);
    };
    auto size_buffers = [&](Socket& s) {
        s.receive_buffer = size_buffer(s.fd, SO_RCVBUFFORCE, SO_RCVBUF, config.receive_buffer);
        s.send_buffer = size_buffer(s.fd, SO_SNDBUFFORCE, SO_SNDBUF, config.send_buffer);
        // The count of datagrams dropped for want of buffer space rides on every receive.
        int one = 1;
        if (::setsockopt(s.fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) != 0) fail("cannot set SO_RXQ_OVFL", errno);
    };
    auto open_raw = [&](std::uint8_t proto) {
        int fd = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
        if (fd < 0) fail("cannot create raw socket for IP protocol " + std::to_string(proto), errno);
        sockets_.push_back({Kind::Raw, 0, proto, fd, {}});
        int one = 1;
        if (::setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof one) != 0) fail("cannot set IP_HDRINCL on raw socket", errno);
        // The interface each packet came in on (ignore_inbound_from()).
        if (::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) != 0) fail("cannot set IP_PKTINFO on raw socket", errno);
        mark(fd);
        size_buffers(sockets_.back());
        // Binding a raw socket filters inbound packets to this destination address.
        auto sa = to_sockaddr(local_, 0);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
            fail("cannot bind raw socket for protocol " + std::to_string(proto) + " to " + local_.to_string(), errno);
    };
    try {
        for (auto port : udp_ports) {
            if (sharing_.reuse_port && !sharing_.secondary) port = unheld_port(local_, port);
            int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) fail("cannot create UDP socket", errno);
            sockets_.push_back({Kind::Udp, port, 0, fd, {}});
            int one = 1;
            if (sharing_.reuse_port) {
                // The kernel spreads the port's inbound datagrams over every socket bound to it
                // with SO_REUSEPORT, by a hash of addresses and ports (one flow, one socket).
                if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) fail("cannot set SO_REUSEPORT", errno);
            } else {
                ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            }
            // The address each datagram was sent to: with a wildcard bind it is the only way
            // to rebuild the IP header (and with a fixed one it costs nothing).
            if (::setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one) != 0) fail("cannot set IP_PKTINFO", errno);
            // The TOS byte (DSCP and ECN: RFC 6040 decapsulation needs the outer CE mark) and
            // the TTL each datagram arrived with, for the rebuilt header.
            if (::setsockopt(fd, IPPROTO_IP, IP_RECVTOS, &one, sizeof one) != 0) fail("cannot set IP_RECVTOS", errno);
            if (::setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &one, sizeof one) != 0) fail("cannot set IP_RECVTTL", errno);
            // Start without DF (Linux's default for UDP sets it when the datagram fits the
            // route); send() switches per packet to what the stage's header says.
            const int dont = IP_PMTUDISC_DONT;
            if (::setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &dont, sizeof dont) != 0) fail("cannot set IP_MTU_DISCOVER", errno);
            mark(fd);
            size_buffers(sockets_.back());
            probe_offloads(sockets_.back());
            auto sa = to_sockaddr(local_, port);
            if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
                const int err = errno;
                const std::string what = "cannot bind UDP " + local_.to_string() + ":" + std::to_string(port);
                if (sharing_.secondary && err == EADDRINUSE)
                    throw std::runtime_error(what + " for a secondary transport: " + std::strerror(err) +
                                             " (the socket holding the port has no SO_REUSEPORT: open the primary transport with "
                                             "SocketTransport::Sharing{.reuse_port = true}, or stop the other process using it)");
                fail(what, err);
            }
            if (port == 0) {
                socklen_t len = sizeof sa;
                if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) fail("cannot read the bound UDP port", errno);
                sockets_.back().port = ntohs(sa.sin_port);
            }
        }
        if (!sharing_.secondary) {
            for (auto proto : config.raw_protocols) open_raw(proto);
        } else if (!config.raw_protocols.empty()) {
            // Protocol 255 receives nothing (raw(7)): the primary's raw sockets alone see
            // inbound packets, each once.
            raw_protocols_ = config.raw_protocols;
            open_raw(any_protocol);
        }
    } catch (...) {
        for (auto& s : sockets_) ::close(s.fd);
        throw;
    }
    msgs_.resize(batch_);
    iovs_.resize(batch_);
    names_.resize(batch_);
    owner_.resize(batch_);
    dont_fragment_.resize(batch_);
    zero_checksum_.resize(batch_);
    controls_.resize(batch_);
    rx_msgs_.resize(batch_);
    rx_iovs_.resize(batch_);
    rx_names_.resize(batch_);
    rx_controls_.resize(batch_);
    groups_.reserve(batch_);
    group_msgs_.resize(batch_);
    gro_.resize(sockets_.size());
    for (std::size_t i = 0; i < sockets_.size(); ++i)
        if (sockets_[i].gro) gro_[i].scratch.resize(std::min(batch_, gro_max_messages) * gro_message_len);
}

SocketTransport::~SocketTransport() {
    for (auto& s : sockets_) ::close(s.fd);
}

int SocketTransport::socket_for(std::span<const std::uint8_t> packet, std::size_t& payload_offset,
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
    if (chosen && sharing_.secondary &&
        std::find_if(raw_protocols_.begin(), raw_protocols_.end(),
                     [&](std::uint8_t p) { return p == ip->protocol() || p == any_protocol; }) == raw_protocols_.end())
        chosen.reset();
    if (chosen) {
        auto sa = to_sockaddr(ip->destination(), 0);
        std::memcpy(&destination, &sa, sizeof sa);
        destination_len = sizeof sa;
        payload_offset = 0;
        return static_cast<int>(*chosen);
    }
    return -1;
}

void SocketTransport::set_udp_state(Socket& sock, bool dont_fragment, bool zero_checksum) {
    if (sock.dont_fragment != dont_fragment) {
        // Linux has no per-packet DF for IPv4 (IPV6_DONTFRAG exists only for IPv6, and
        // IP_HDRINCL is for raw sockets), so DF is socket state: IP_PMTUDISC_DO sets DF on every
        // datagram and refuses one larger than the known path MTU with EMSGSIZE, which is how
        // we learn the path MTU; IP_PMTUDISC_DONT never sets DF and lets the kernel fragment,
        // as a router would fragment the outer packet of an inner one without DF (RFC 4301
        // §8.1). Packets of one flow mostly agree, so this costs a system call per change, not
        // per packet; send() groups a batch into runs that agree.
        const int mode = dont_fragment ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT;
        if (::setsockopt(sock.fd, IPPROTO_IP, IP_MTU_DISCOVER, &mode, sizeof mode) == 0) sock.dont_fragment = dont_fragment;
    }
    if (sock.zero_checksum != zero_checksum) {
        // The kernel computes the checksum of every datagram a UDP socket sends unless told
        // not to. A stage that leaves it zero means it: ESP-in-UDP SHOULD carry a zero
        // checksum (RFC 3948 §2.1; ESP has its own integrity check), as may an RFC 3519 data
        // tunnel or a NAT-T keepalive; IKE and registrations compute theirs.
        const int no_check = zero_checksum ? 1 : 0;
        if (::setsockopt(sock.fd, SOL_SOCKET, SO_NO_CHECK, &no_check, sizeof no_check) == 0) sock.zero_checksum = zero_checksum;
    }
}

void SocketTransport::learn_path_mtu(const sockaddr_storage& destination) {
    // IP_MTU is answered only for a connected socket. A throw-away UDP socket connected to the
    // destination (with our fwmark, so policy routing picks the same route) asks the routing
    // table for the path MTU it now knows; connecting sends nothing.
    sockaddr_in to{};
    std::memcpy(&to, &destination, sizeof to);
    if (to.sin_port == 0) to.sin_port = htons(9);  // a raw socket's destination has no port
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    int mtu = 0;
    socklen_t len = sizeof mtu;
    const bool marked = !fwmark_ || ::setsockopt(fd, SOL_SOCKET, SO_MARK, &*fwmark_, sizeof *fwmark_) == 0;
    const bool known = marked && ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 &&
                       ::getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &len) == 0 && mtu > 0;
    ::close(fd);
    if (!known) return;
    note_path_mtu(core::Ipv4Address{ntohl(to.sin_addr.s_addr)}, static_cast<std::size_t>(mtu));
}

void Transport::note_path_mtu(core::Ipv4Address destination, std::size_t mtu) {
    const PathMtu learned{destination, mtu};
    auto it = std::find_if(path_mtus_.begin(), path_mtus_.end(), [&](const PathMtu& p) { return p.destination == destination; });
    if (it != path_mtus_.end()) {
        if (it->mtu == learned.mtu) return;
        path_mtus_.erase(it);
    } else if (path_mtus_.size() == path_mtu_capacity) {
        path_mtus_.erase(path_mtus_.begin());
    }
    path_mtus_.push_back(learned);
    path_mtu_changes_.push_back(learned);
}

void SocketTransport::send_each(Socket& sock, std::size_t from, std::size_t to) {
    std::size_t done = from;
    while (done < to) {
        int sent = send_batch_(sock.fd, msgs_.data() + done, static_cast<unsigned>(to - done));
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) {
            // sendmmsg reports an error only for the first message it could not send; that
            // packet is lost (full socket buffer, no route, too big): count it with its reason
            // and go on with the next one.
            const int err = sent < 0 ? errno : EIO;
            ++sock.counters.tx_errors;
            sock.counters.tx_failures.add(tun::classify_write_error(err));
            if (err == EMSGSIZE) learn_path_mtu(names_[done]);
            ++done;
            continue;
        }
        for (int k = 0; k < sent; ++k) {
            ++sock.counters.tx_packets;
            sock.counters.tx_bytes += msgs_[done + static_cast<std::size_t>(k)].msg_hdr.msg_iov->iov_len;
        }
        done += static_cast<std::size_t>(sent);
    }
}

std::size_t SocketTransport::segment_mtu(const sockaddr_storage& destination) const noexcept {
    sockaddr_in to{};
    std::memcpy(&to, &destination, sizeof to);
    const core::Ipv4Address peer{ntohl(to.sin_addr.s_addr)};
    for (const auto& p : path_mtus_)
        if (p.destination == peer) return std::min(p.mtu, link_mtu_);
    return link_mtu_;
}

bool SocketTransport::group_for_gso(std::size_t from, std::size_t to) {
    // Datagrams join a group while they go to the same peer with the same ancillary data
    // (source, TTL, TOS) and the length of the first; one shorter datagram may end it. The
    // kernel cuts it into gso_size pieces, so any other shape would change the datagrams.
    auto same_destination = [&](std::size_t a, std::size_t b) {
        const auto& ma = msgs_[a].msg_hdr;
        const auto& mb = msgs_[b].msg_hdr;
        return ma.msg_namelen == mb.msg_namelen && std::memcmp(ma.msg_name, mb.msg_name, ma.msg_namelen) == 0 &&
               ma.msg_controllen == mb.msg_controllen &&
               (ma.msg_controllen == 0 || std::memcmp(ma.msg_control, mb.msg_control, ma.msg_controllen) == 0);
    };
    groups_.clear();
    bool coalesced = false;
    for (std::size_t i = from; i < to;) {
        Group g{i, 1, iovs_[i].iov_len};
        // The kernel refuses a GSO send whose segment the route cannot carry whole (EMSGSIZE,
        // DF or not: it never fragments a segment), so such datagrams leave one by one, where
        // it fragments them or refuses them for DF. The limit is the configured link MTU, or
        // the path MTU a refused DF datagram taught for this peer, if smaller: without it,
        // every later batch of a too-big flow would pay a refused GSO send before its fallback.
        const bool fits = g.segment_len != 0 && core::Ipv4Header::len + core::UdpHeader::len + g.segment_len <= segment_mtu(names_[i]);
        std::size_t total = g.segment_len;
        while (fits && i + g.count < to && g.count < gso_max_segments) {
            const std::size_t j = i + g.count;
            const std::size_t len = iovs_[j].iov_len;
            if (len == 0 || len > g.segment_len || total + len > gso_max_payload || !same_destination(i, j)) break;
            ++g.count;
            total += len;
            if (len < g.segment_len) break;
        }
        auto& m = group_msgs_[groups_.size()];
        m = msgs_[i];
        if (g.count > 1) {
            coalesced = true;
            m.msg_hdr.msg_iovlen = g.count;  // iovs_ of consecutive messages are consecutive
            auto* cmsg = reinterpret_cast<cmsghdr*>(controls_[i].data() + m.msg_hdr.msg_controllen);
            cmsg->cmsg_level = SOL_UDP;
            cmsg->cmsg_type = UDP_SEGMENT;
            cmsg->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
            const auto segment = static_cast<std::uint16_t>(g.segment_len);
            std::memcpy(CMSG_DATA(cmsg), &segment, sizeof segment);
            m.msg_hdr.msg_control = controls_[i].data();
            m.msg_hdr.msg_controllen += CMSG_SPACE(sizeof(std::uint16_t));
        }
        groups_.push_back(g);
        i += g.count;
    }
    return coalesced;
}

void SocketTransport::send_groups(Socket& sock) {
    std::size_t done = 0;
    while (done < groups_.size()) {
        int sent = send_batch_(sock.fd, group_msgs_.data() + done, static_cast<unsigned>(groups_.size() - done));
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) {
            const int err = sent < 0 ? errno : EIO;
            const auto& g = groups_[done];
            // Resent one datagram per message, each leaves as it would have without GSO: with
            // the zero checksum its stage left (RFC 3948 §2.1), which the run had to give up
            // only for the GSO sends; the groups after it need checksums again.
            set_udp_state(sock, sock.dont_fragment, zero_checksum_[g.first] != 0);
            if (g.count == 1) {
                send_each(sock, g.first, g.first + 1);  // counts the failure, learns a path MTU
            } else {
                // The kernel refused the group as a whole (a segment over the route's MTU,
                // a device that cannot checksum, a full buffer): resend its datagrams one by
                // one, so each meets its own fate and is counted as it would have been.
                ++sock.counters.gso_fallbacks;
                if (err == EIO) disable_gso(sock, err);
                send_each(sock, g.first, g.first + g.count);
            }
            ++done;
            if (done < groups_.size()) set_udp_state(sock, sock.dont_fragment, false);
            continue;
        }
        for (std::size_t k = 0; k < static_cast<std::size_t>(sent); ++k) {
            const auto& g = groups_[done + k];
            for (std::size_t m = g.first; m < g.first + g.count; ++m) sock.counters.tx_bytes += iovs_[m].iov_len;
            sock.counters.tx_packets += g.count;
            if (g.count > 1) {
                ++sock.counters.gso_sends;
                sock.counters.gso_segments += g.count;
            }
        }
        done += static_cast<std::size_t>(sent);
    }
}

void SocketTransport::disable_gso(Socket& sock, int err) {
    // EIO: the route's device cannot checksum (or segment) for us, or the route goes through
    // an xfrm policy; every later GSO send would fail the same way.
    sock.gso = false;
    sock.gso_off = std::string("refused by the kernel: ") + std::strerror(err);
    if (log_) log_->warn("UDP port ", sock.port, ": segmentation offload (UDP_SEGMENT) ", sock.gso_off, "; sending one datagram per message from now on");
}

void SocketTransport::send(std::span<core::PacketBuf> packets) {
    // Fill one mmsghdr per packet, then flush runs that share a socket (and, on a UDP socket,
    // DF and checksum wishes) with one sendmmsg; with UDP_SEGMENT, datagrams of a run that
    // share a peer and a size leave as one message.
    std::size_t n = 0;
    auto same_run = [&](std::size_t a, std::size_t b) {
        return owner_[a] == owner_[b] && dont_fragment_[a] == dont_fragment_[b] && zero_checksum_[a] == zero_checksum_[b];
    };
    auto flush = [&] {
        std::size_t start = 0;
        while (start < n) {
            std::size_t end = start + 1;
            while (end < n && same_run(start, end)) ++end;
            auto& sock = sockets_[static_cast<std::size_t>(owner_[start])];
            if (sock.kind == Kind::Udp && sock.gso && group_for_gso(start, end)) {
                // The kernel refuses GSO on a socket without checksums (EINVAL): a run that
                // coalesces carries them (RFC 3948 §2.1: receivers MUST NOT depend on zero).
                set_udp_state(sock, dont_fragment_[start] != 0, false);
                send_groups(sock);
            } else {
                if (sock.kind == Kind::Udp) set_udp_state(sock, dont_fragment_[start] != 0, zero_checksum_[start] != 0);
                send_each(sock, start, end);
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
        if (udp && ip->tos() != 0) {
            // The whole TOS byte, ECN bits included: a tunnel copies DSCP and ECN outward
            // (RFC 4301 §5.1.2.1, RFC 6040 §4.1) and the network may mark CE on the way.
            const int tos = ip->tos();
            add_cmsg(IP_TOS, &tos, sizeof tos);
        }
        dont_fragment_[n] = udp && ip->dont_fragment();
        zero_checksum_[n] = udp && core::UdpView::check(ip->payload())->checksum() == 0;
        if (control_len != 0) {
            msgs_[n].msg_hdr.msg_control = controls_[n].data();
            msgs_[n].msg_hdr.msg_controllen = control_len;
        }
        owner_[n] = owner;
        if (++n == batch_) flush();
    }
    flush();
}

SocketTransport::Arrival SocketTransport::read_arrival(Socket& sock, std::size_t message) {
    auto& msg = rx_msgs_[message].msg_hdr;
    Arrival a;
    sockaddr_in from{};
    std::memcpy(&from, &rx_names_[message], sizeof from);
    a.source = core::Endpoint{{ntohl(from.sin_addr.s_addr)}, ntohs(from.sin_port)};
    a.destination = local_;
    const bool udp = sock.kind == Kind::Udp;
    for (auto* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            std::uint32_t dropped = 0;  // since the socket opened
            std::memcpy(&dropped, CMSG_DATA(c), sizeof dropped);
            sock.counters.rx_overflows = dropped;
            continue;
        }
        if (udp && c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int segment = 0;
            std::memcpy(&segment, CMSG_DATA(c), sizeof segment);
            if (segment > 0) a.segment_len = static_cast<std::size_t>(segment);
            continue;
        }
        if (c->cmsg_level != IPPROTO_IP) continue;
        if (c->cmsg_type == IP_PKTINFO) {
            in_pktinfo info{};
            std::memcpy(&info, CMSG_DATA(c), sizeof info);
            a.ifindex = static_cast<std::uint32_t>(info.ipi_ifindex);
            if (udp) a.destination = core::Ipv4Address{ntohl(info.ipi_addr.s_addr)};
        } else if (udp && c->cmsg_type == IP_TOS) {
            a.tos = *CMSG_DATA(c);  // one byte
        } else if (udp && c->cmsg_type == IP_TTL) {
            int value = 0;
            std::memcpy(&value, CMSG_DATA(c), sizeof value);
            a.ttl = static_cast<std::uint8_t>(value);
        }
    }
    return a;
}

bool SocketTransport::rebuild_headers(Socket& sock, core::PacketBuf& buf, const Arrival& a, std::size_t len) {
    // Rebuild the IP/UDP headers the socket consumed, so stages see a whole packet: TOS and
    // TTL as they arrived; DF, identification and the checksum the kernel already verified are
    // not told and stay zero.
    if (len + rebuilt_header_len > 0xFFFF || !buf.resize(rebuilt_header_len + len)) {
        ++sock.counters.rx_errors;
        return false;
    }
    core::Ipv4Header ip;
    ip.tos = a.tos;
    ip.ttl = a.ttl;
    ip.total_length = static_cast<std::uint16_t>(rebuilt_header_len + len);
    ip.protocol = core::ip_protocol::udp;
    ip.source = a.source.address;
    ip.destination = a.destination;
    ip.emit(buf.bytes());
    buf.meta().ingress_ifindex = a.ifindex;
    core::UdpHeader u{a.source.port, sock.port, static_cast<std::uint16_t>(len + core::UdpHeader::len), 0};
    u.emit(buf.bytes().subspan(core::Ipv4Header::len));
    ++sock.counters.rx_packets;
    sock.counters.rx_bytes += len;
    return true;
}

std::size_t SocketTransport::receive(std::size_t index, std::span<core::PacketBuf> bufs) {
    auto& sock = sockets_[index];
    if (sock.gro) return receive_coalesced(sock, gro_[index], bufs);
    std::size_t n = std::min(bufs.size(), batch_);
    const bool udp = sock.kind == Kind::Udp;
    for (std::size_t i = 0; i < n; ++i) {
        auto room = bufs[i].writable();
        std::size_t skip = udp ? rebuilt_header_len : 0;
        if (room.size() <= skip) return 0;
        prepare_receive(i, room.data() + skip, room.size() - skip);
    }
    int got = ::recvmmsg(sock.fd, rx_msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
    if (got <= 0) {
        if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ++sock.counters.rx_errors;
        return 0;
    }
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(got); ++i) {
        std::size_t len = rx_msgs_[i].msg_len;
        const bool truncated = (rx_msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        if (truncated || len + (udp ? rebuilt_header_len : 0) > 0xFFFF) {
            ++sock.counters.rx_errors;
            continue;
        }
        const Arrival arrival = read_arrival(sock, i);
        if (!udp && ignored_ifindex_ != 0 && arrival.ifindex == ignored_ifindex_) {
            ++sock.counters.rx_own_device;
            continue;
        }
        if (accepted != i) std::swap(bufs[accepted], bufs[i]);
        auto& buf = bufs[accepted];
        if (udp) {
            if (!rebuild_headers(sock, buf, arrival, len)) continue;
        } else {
            if (!buf.resize(len)) {
                ++sock.counters.rx_errors;
                continue;
            }
            buf.meta().ingress_ifindex = arrival.ifindex;
            ++sock.counters.rx_packets;
            sock.counters.rx_bytes += len;
        }
        ++accepted;
    }
    return accepted;
}

void SocketTransport::prepare_receive(std::size_t i, std::uint8_t* data, std::size_t len) noexcept {
    rx_iovs_[i] = {data, len};
    rx_msgs_[i] = {};
    rx_msgs_[i].msg_hdr.msg_name = &rx_names_[i];
    rx_msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    rx_msgs_[i].msg_hdr.msg_iov = &rx_iovs_[i];
    rx_msgs_[i].msg_hdr.msg_iovlen = 1;
    rx_msgs_[i].msg_hdr.msg_control = rx_controls_[i].data();
    rx_msgs_[i].msg_hdr.msg_controllen = rx_controls_[i].size();
}

std::size_t SocketTransport::receive_coalesced(Socket& sock, GroQueue& queue, std::span<core::PacketBuf> bufs) {
    // What an earlier read left over goes first; the socket is read again only once it is all
    // handed out, and again while reads come back full, so a call fills fewer buffers than
    // offered only when nothing waits here or in the socket (the caller then waits for the
    // socket to become readable, and the reactor tells only of new arrivals).
    std::size_t filled = split_pending(sock, queue, bufs);
    while (filled < bufs.size()) {
        // Each coalesced datagram may hold up to 64 segments, but one that was not coalesced
        // holds one: read no more messages than there are buffers left.
        const std::size_t n = std::min({bufs.size() - filled, batch_, queue.scratch.size() / gro_message_len});
        for (std::size_t i = 0; i < n; ++i) {
            prepare_receive(i, queue.scratch.data() + i * gro_message_len, gro_message_len);
        }
        int got = ::recvmmsg(sock.fd, rx_msgs_.data(), static_cast<unsigned>(n), MSG_DONTWAIT, nullptr);
        if (got <= 0) {
            if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ++sock.counters.rx_errors;
            return filled;
        }
        queue.datagrams.clear();
        queue.next = 0;
        queue.next_offset = 0;
        for (std::size_t i = 0; i < static_cast<std::size_t>(got); ++i) {
            const std::size_t len = rx_msgs_[i].msg_len;
            if ((rx_msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
                ++sock.counters.rx_errors;
                continue;
            }
            Coalesced d{i * gro_message_len, len, read_arrival(sock, i)};
            if (d.arrival.segment_len == 0 || d.arrival.segment_len >= len) {
                d.arrival.segment_len = len;
            } else {
                ++sock.counters.gro_receives;
                sock.counters.gro_segments += (len + d.arrival.segment_len - 1) / d.arrival.segment_len;
            }
            queue.datagrams.push_back(d);
        }
        filled += split_pending(sock, queue, bufs.subspan(filled));
        if (static_cast<std::size_t>(got) < n) break;  // the socket is drained
    }
    return filled;
}

std::size_t SocketTransport::split_pending(Socket& sock, GroQueue& queue, std::span<core::PacketBuf> bufs) {
    // The kernel coalesced datagrams of one flow at segment_len each, the last possibly
    // shorter: cut them apart at the same boundaries, one buffer per datagram.
    std::size_t filled = 0;
    while (filled < bufs.size() && queue.next < queue.datagrams.size()) {
        const auto& d = queue.datagrams[queue.next];
        const std::size_t len = std::min(d.arrival.segment_len, d.len - queue.next_offset);
        const std::uint8_t* payload = queue.scratch.data() + d.offset + queue.next_offset;
        queue.next_offset += len;
        if (queue.next_offset >= d.len) {
            ++queue.next;
            queue.next_offset = 0;
        }
        auto& buf = bufs[filled];
        if (!rebuild_headers(sock, buf, d.arrival, len)) continue;
        std::memcpy(buf.data() + rebuilt_header_len, payload, len);
        ++filled;
    }
    return filled;
}

}  // namespace mipsec::shell
