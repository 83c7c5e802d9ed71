// SPDX-License-Identifier: MIT
// tun::LinkDevice against the real kernel, in a throw-away network namespace (exits 77 without
// root): a UDP socket on one end of a veth pair sends with segmentation offload (UDP_SEGMENT),
// as our own transport does, and the veth hands the other end one super-packet, as a NIC's GRO
// would. A foreign agent serving that end must see the datagrams the sender meant: each its
// own IP and UDP header, length and checksum, the payload in order — not one oversized frame,
// which it used to drop as too long for a buffer or answer with "fragmentation needed".
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <chrono>
#include <cstdlib>
#include <linux/udp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "core/buffer_pool.hpp"
#include "core/checksum.hpp"
#include "core/endian.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "tests/support/private_netns.hpp"
#include "tun/link_device.hpp"

using namespace mipsec;
using namespace std::chrono_literals;

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif

TEST_CASE("LinkDevice: a UDP GSO super-packet from the link is read as the datagrams it stands for") {
    test::enter_private_netns();
    // A visitor's end (va) and the agent's end (vb); 10.203.0.9 is reached through vb's MAC.
    REQUIRE(std::system("ip link set lo up && ip link add va type veth peer name vb && ip addr add 10.203.0.1/24 dev va"
                        " && ip link set va up && ip link set vb up"
                        " && ip neigh add 10.203.0.9 lladdr $(ip -br link show vb | awk '{print $3}') dev va") == 0);
    auto opened = tun::LinkDevice::open("vb");
    REQUIRE(opened);
    auto& dev = **opened;

    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    const int gso_size = 1000;
    REQUIRE(::setsockopt(fd, IPPROTO_UDP, UDP_SEGMENT, &gso_size, sizeof gso_size) == 0);
    std::vector<std::uint8_t> payload(2500);
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 7 + 3);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(4500);
    to.sin_addr.s_addr = htonl(0x0ACB0009);
    REQUIRE(::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof to) ==
            static_cast<ssize_t>(payload.size()));
    ::close(fd);

    core::BufferPool pool{16, 2048};
    std::vector<core::PacketBuf> batch(2);  // fewer than the datagrams: the rest comes on the next read
    std::vector<std::vector<std::uint8_t>> datagrams;
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (datagrams.size() < 3 && std::chrono::steady_clock::now() < deadline) {
        pollfd p{dev.fd(), POLLIN, 0};
        (void)::poll(&p, 1, 100);
        for (auto& b : batch) {
            if (!b.valid()) b = pool.acquire(64);
            b.reset(64);
        }
        const std::size_t got = dev.read(batch);
        for (std::size_t i = 0; i < got; ++i) {
            auto bytes = std::as_const(batch[i]).bytes();
            auto ip = core::Ipv4View::check(bytes);
            if (!ip || ip->protocol() != core::ip_protocol::udp || ip->destination().value != 0x0ACB0009) continue;
            datagrams.emplace_back(bytes.begin(), bytes.end());
        }
    }
    CHECK(dev.counters().rx_errors == 0);
    REQUIRE(datagrams.size() == 3);
    std::vector<std::uint8_t> stream;
    for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        const auto& d = datagrams[i];
        const std::size_t want = i < 2 ? 1000 : 500;
        REQUIRE(d.size() == 28 + want);
        auto ip = core::Ipv4View::check(d);
        REQUIRE(ip);
        CHECK(ip->checksum_valid());
        CHECK(core::load_be16(d.data() + 24) == 8 + want);
        const auto l4 = std::span<const std::uint8_t>(d).subspan(20);
        CHECK(core::checksum_finish(core::checksum_partial(
                  l4, core::pseudo_header_sum(ip->source(), ip->destination(), core::ip_protocol::udp,
                                              static_cast<std::uint16_t>(l4.size())))) == 0);
        stream.insert(stream.end(), d.begin() + 28, d.end());
    }
    CHECK(stream == payload);
}
