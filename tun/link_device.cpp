// SPDX-License-Identifier: MIT
#include "tun/link_device.hpp"

#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/checksum.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"

namespace mipsec::tun {

namespace {
std::error_code last_errno() { return {errno, std::system_category()}; }

// A packet a local sender handed to a veth (or any offloading device) may still carry only
// the pseudo-header sum in its UDP/TCP checksum (CHECKSUM_PARTIAL); stages verify checksums,
// so finish it here, as the NIC would have on a real wire.
void finish_partial_checksum(std::span<std::uint8_t> packet) noexcept {
    auto ip = core::Ipv4View::check(packet);
    if (!ip || ip->is_fragment()) return;
    auto l4 = packet.subspan(ip->header_len(), ip->total_length() - ip->header_len());
    std::size_t field = 0;
    if (ip->protocol() == core::ip_protocol::udp && l4.size() >= 8) field = 6;
    else if (ip->protocol() == core::ip_protocol::tcp && l4.size() >= 20) field = 16;
    else return;
    l4[field] = 0;
    l4[field + 1] = 0;
    std::uint16_t sum = core::checksum_finish(
        core::checksum_partial(l4, core::pseudo_header_sum(ip->source(), ip->destination(), ip->protocol(), static_cast<std::uint16_t>(l4.size()))));
    if (sum == 0 && ip->protocol() == core::ip_protocol::udp) sum = 0xFFFF;  // RFC 768: 0 means "none"
    l4[field] = static_cast<std::uint8_t>(sum >> 8);
    l4[field + 1] = static_cast<std::uint8_t>(sum);
}
}  // namespace

core::Result<std::unique_ptr<LinkDevice>> LinkDevice::open(std::string_view interface) {
    const std::string name(interface);
    const unsigned ifindex = ::if_nametoindex(name.c_str());
    if (ifindex == 0) return last_errno();
    int rx = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_IP));
    if (rx < 0) return last_errno();
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_protocol = htons(ETH_P_IP);
    ll.sll_ifindex = static_cast<int>(ifindex);
    int one = 1;
    if (::bind(rx, reinterpret_cast<sockaddr*>(&ll), sizeof ll) != 0 ||
        // Our own writes would come straight back otherwise.
        ::setsockopt(rx, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) != 0 ||
        ::setsockopt(rx, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) != 0) {
        auto e = last_errno();
        ::close(rx);
        return e;
    }
    int tx = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
    if (tx < 0 || ::setsockopt(tx, SOL_SOCKET, SO_BINDTODEVICE, name.c_str(), static_cast<socklen_t>(name.size())) != 0 ||
        ::setsockopt(tx, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) != 0) {
        auto e = last_errno();
        ::close(rx);
        if (tx >= 0) ::close(tx);
        return e;
    }
    return std::unique_ptr<LinkDevice>(new LinkDevice(name, ifindex, rx, tx));
}

LinkDevice::~LinkDevice() {
    ::close(rx_);
    ::close(tx_);
}

std::size_t LinkDevice::read(std::span<core::PacketBuf> bufs) {
    std::size_t n = 0;
    while (n < bufs.size()) {
        auto room = bufs[n].writable();
        iovec iov{room.data(), room.size()};
        alignas(cmsghdr) std::uint8_t control[CMSG_SPACE(sizeof(tpacket_auxdata))];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t got = ::recvmsg(rx_, &msg, MSG_TRUNC);
        if (got < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                ++counters_.rx_errors;
                note_read_error(last_errno());
            }
            break;
        }
        if (static_cast<std::size_t>(got) > room.size() || !bufs[n].resize(static_cast<std::size_t>(got))) {
            ++counters_.rx_errors;
            continue;
        }
        for (auto* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
            tpacket_auxdata aux{};
            std::memcpy(&aux, CMSG_DATA(c), sizeof aux);
            if (aux.tp_status & TP_STATUS_CSUMNOTREADY) finish_partial_checksum(bufs[n].bytes());
        }
        ++counters_.rx_packets;
        counters_.rx_bytes += static_cast<std::size_t>(got);
        ++n;
    }
    return n;
}

std::size_t LinkDevice::write(std::span<core::PacketBuf> bufs) {
    std::size_t written = 0;
    for (std::size_t n = 0; n < bufs.size(); ++n) {
        auto ip = core::Ipv4View::check(bufs[n].bytes());
        if (!ip) {
            count_write_failure(EINVAL);
            continue;
        }
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_addr.s_addr = htonl(ip->destination().value);
        ssize_t sent;
        do {
            sent = ::sendto(tx_, bufs[n].data(), ip->total_length(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        } while (sent < 0 && errno == EINTR);
        if (sent < 0) {
            // A full socket buffer (EAGAIN) loses the packet as surely as an unreachable host.
            count_write_failure(errno);
            continue;
        }
        ++counters_.tx_packets;
        counters_.tx_bytes += static_cast<std::size_t>(sent);
        ++written;
    }
    return written;
}

}  // namespace mipsec::tun
