// SPDX-License-Identifier: MIT
#include "tun/arp.hpp"

#include <cerrno>
#include <cstring>

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace mipsec::tun {

std::array<std::uint8_t, 28> encode_gratuitous_arp(const MacAddress& mac, core::Ipv4Address address) noexcept {
    std::array<std::uint8_t, 28> a{};
    a[0] = 0x00, a[1] = 0x01;  // hardware type Ethernet
    a[2] = 0x08, a[3] = 0x00;  // protocol type IPv4
    a[4] = 6, a[5] = 4;
    a[6] = 0x00, a[7] = 0x01;  // request
    std::memcpy(&a[8], mac.data(), 6);
    for (int i = 0; i < 4; ++i) {
        const auto b = static_cast<std::uint8_t>(address.value >> (24 - 8 * i));
        a[14 + static_cast<std::size_t>(i)] = b;  // sender protocol address
        a[24 + static_cast<std::size_t>(i)] = b;  // target protocol address
    }
    return a;
}

core::Result<void> send_gratuitous_arp(std::uint32_t ifindex, core::Ipv4Address address) {
    char name[IF_NAMESIZE] = {};
    if (::if_indextoname(ifindex, name) == nullptr) return std::error_code(errno, std::system_category());
    int fd = ::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP));
    if (fd < 0) return std::error_code(errno, std::system_category());
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name, sizeof name);
    if (::ioctl(fd, SIOCGIFHWADDR, &ifr) != 0 || ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER) {
        auto e = errno != 0 ? std::error_code(errno, std::system_category()) : std::make_error_code(std::errc::not_supported);
        ::close(fd);
        return e;
    }
    MacAddress mac;
    std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
    const auto frame = encode_gratuitous_arp(mac, address);
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_ARP);
    to.sll_ifindex = static_cast<int>(ifindex);
    to.sll_halen = 6;
    std::memset(to.sll_addr, 0xFF, 6);
    const auto sent = ::sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    const auto err = errno;
    ::close(fd);
    if (sent != static_cast<ssize_t>(frame.size())) return std::error_code(err, std::system_category());
    return {};
}

}  // namespace mipsec::tun
