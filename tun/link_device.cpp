// SPDX-License-Identifier: MIT
#include "tun/link_device.hpp"

#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/checksum.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"

namespace mipsec::tun {

namespace {
std::error_code last_errno() { return {errno, std::system_category()}; }
}  // namespace

core::Result<std::unique_ptr<LinkDevice>> LinkDevice::open(std::string_view interface) {
    const std::string name(interface);
    const unsigned ifindex = ::if_nametoindex(name.c_str());
    if (ifindex == 0) return last_errno();
    // SOCK_RAW: the kernel gives a virtio-net header only to raw packet sockets; we strip
    // the link header ourselves.
    int rx = ::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_IP));
    if (rx < 0) return last_errno();
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_protocol = htons(ETH_P_IP);
    ll.sll_ifindex = static_cast<int>(ifindex);
    int one = 1;
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (::bind(rx, reinterpret_cast<sockaddr*>(&ll), sizeof ll) != 0 ||
        // Our own writes would come straight back otherwise.
        ::setsockopt(rx, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) != 0 ||
        // Offloaded packets (checksum-partial, GSO) come with what it takes to finish them.
        ::setsockopt(rx, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0 || ::ioctl(rx, SIOCGIFMTU, &ifr) != 0) {
        auto e = last_errno();
        ::close(rx);
        return e;
    }
    const int mtu = ifr.ifr_mtu;
    if (::ioctl(rx, SIOCGIFHWADDR, &ifr) != 0) {
        auto e = last_errno();
        ::close(rx);
        return e;
    }
    // An Ethernet header (VLAN tags are taken off into the metadata), or none on a device
    // without one (a TUN, a point-to-point link).
    const std::size_t link_header = ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER ? ETH_HLEN : 0;
    int tx = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW);
    if (tx < 0 || ::setsockopt(tx, SOL_SOCKET, SO_BINDTODEVICE, name.c_str(), static_cast<socklen_t>(name.size())) != 0 ||
        ::setsockopt(tx, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) != 0) {
        auto e = last_errno();
        ::close(rx);
        if (tx >= 0) ::close(tx);
        return e;
    }
    return std::unique_ptr<LinkDevice>(new LinkDevice(name, ifindex, rx, tx, static_cast<std::size_t>(mtu), link_header));
}

LinkDevice::LinkDevice(std::string name, std::uint32_t ifindex, int rx, int tx, std::size_t mtu, std::size_t link_header)
    : name_(std::move(name)), ifindex_(ifindex), rx_(rx), tx_(tx), link_header_(link_header),
      cutter_(mtu, VirtioNetHeader::len + link_header + Coalescer::max_super_len) {}

// virtio-net header, link header, IP packet → virtio-net header, IP packet (at frame_ +
// link_header_): the header's offsets counted from the link header, now from the IP header.
bool LinkDevice::strip_link_header(std::span<std::uint8_t> frame) noexcept {
    if (link_header_ == 0) return true;
    if (frame.size() < VirtioNetHeader::len + link_header_) return false;
    VirtioNetHeader vh = VirtioNetHeader::parse(frame);
    if (vh.flags & VirtioNetHeader::flag_needs_csum) {
        if (vh.csum_start < link_header_) return false;
        vh.csum_start = static_cast<std::uint16_t>(vh.csum_start - link_header_);
    }
    vh.hdr_len = static_cast<std::uint16_t>(vh.hdr_len > link_header_ ? vh.hdr_len - link_header_ : 0);
    vh.emit(frame.subspan(link_header_));
    return true;
}

LinkDevice::~LinkDevice() {
    ::close(rx_);
    ::close(tx_);
}

std::size_t LinkDevice::read(std::span<core::PacketBuf> bufs) {
    std::size_t n = 0;
    while (n < bufs.size()) {
        if (!cutter_.pending()) {
            const auto frame = cutter_.buffer();
            ssize_t got = ::recv(rx_, frame.data(), frame.size(), MSG_TRUNC);
            if (got < 0) {
                if (errno == EINTR) continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) {
                    ++counters_.rx_errors;
                    note_read_error(last_errno());
                }
                break;
            }
            const auto len = static_cast<std::size_t>(got);
            if (len > frame.size() || !strip_link_header(frame.first(len))) {
                ++counters_.rx_errors;
                note_read_error(std::make_error_code(len > frame.size() ? std::errc::message_size : std::errc::bad_message));
                continue;
            }
            cutter_.load(link_header_, len - link_header_);
        }
        const auto out = bufs.subspan(n);
        const auto r = cutter_.cut(out).outcome;
        const std::size_t count = r.count;
        if (count == 0) {
            ++counters_.rx_errors;
            note_read_error(std::make_error_code(r.reason == core::DropReason::NoTailroom ? std::errc::message_size
                                                                                        : std::errc::bad_message));
            continue;
        }
        for (std::size_t i = 0; i < count; ++i) counters_.rx_bytes += out[i].size();
        counters_.rx_packets += count;
        n += count;
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
