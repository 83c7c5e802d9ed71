// SPDX-License-Identifier: MIT
#pragma once
// Transports on 127.0.0.1 with kernel-picked UDP ports, outer packets as a stage builds them,
// and a receive that waits: shared by the transport's unit and root tests.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "apps/shell/transport.hpp"
#include "core/buffer_pool.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"

namespace mipsec::test {

inline const core::Ipv4Address loopback{0x7F000001};
inline constexpr std::size_t headroom = 64;

inline shell::SocketTransport open_loopback(std::size_t receive_buffer = 4 << 20) {
    shell::TransportConfig config;
    config.local = loopback;
    config.receive_buffer = receive_buffer;
    config.udp_ports = {0};  // the kernel picks a free port
    return shell::SocketTransport(config, 8);
}

inline std::uint16_t port_of(const shell::Transport& t) { return t.sockets()[0].port; }

struct Outer {
    std::uint8_t tos = 0;
    bool dont_fragment = false;
    std::uint8_t ttl = 64;
    std::uint16_t source_port = 0;
    std::uint16_t destination_port = 0;
    bool checksum = false;  // compute one, as IKE does; else leave it zero, as ESP-in-UDP does
    std::string payload = "payload";
    core::Ipv4Address destination = loopback;
};

inline core::PacketBuf outer_packet(core::BufferPool& pool, const Outer& o) {
    auto buf = pool.acquire(headroom);
    const std::size_t len = core::Ipv4Header::len + core::UdpHeader::len + o.payload.size();
    REQUIRE(buf.put(len));
    core::Ipv4Header ip;
    ip.tos = o.tos;
    ip.total_length = static_cast<std::uint16_t>(len);
    ip.flags_fragment = o.dont_fragment ? core::Ipv4View::flag_df : 0;
    ip.ttl = o.ttl;
    ip.protocol = core::ip_protocol::udp;
    ip.source = loopback;
    ip.destination = o.destination;
    ip.emit(buf.bytes());
    auto udp_bytes = buf.bytes().subspan(core::Ipv4Header::len);
    core::UdpHeader{o.source_port, o.destination_port, static_cast<std::uint16_t>(udp_bytes.size()), 0}.emit(udp_bytes);
    std::copy(o.payload.begin(), o.payload.end(), udp_bytes.begin() + core::UdpHeader::len);
    if (o.checksum) core::UdpMutView::check(udp_bytes)->update_checksum(loopback, o.destination);
    return buf;
}

inline void send(shell::Transport& t, core::BufferPool& pool, const std::vector<Outer>& packets) {
    std::vector<core::PacketBuf> batch;
    for (const auto& o : packets) batch.push_back(outer_packet(pool, o));
    t.send(batch);
}

// Receives up to `count` packets on socket 0, waiting at most a second in all. As the node
// does, it waits for the socket only after a receive filled fewer buffers than offered: a full
// one may have left coalesced segments in the transport that no poll would announce.
inline std::vector<core::PacketBuf> receive(shell::Transport& t, core::BufferPool& pool, std::size_t count) {
    std::vector<core::PacketBuf> got;
    for (int waits = 0; got.size() < count;) {
        std::vector<core::PacketBuf> bufs;
        for (std::size_t i = 0; i < count - got.size(); ++i) bufs.push_back(pool.acquire(headroom));
        const std::size_t n = t.receive(0, bufs);
        for (std::size_t i = 0; i < n; ++i) got.push_back(std::move(bufs[i]));
        if (n == bufs.size()) continue;
        if (++waits > 10) break;
        pollfd p{t.sockets()[0].fd, POLLIN, 0};
        (void)::poll(&p, 1, 100);
    }
    return got;
}

inline int int_option(int fd, int level, int name) {
    int value = -1;
    socklen_t len = sizeof value;
    REQUIRE(::getsockopt(fd, level, name, &value, &len) == 0);
    return value;
}

}  // namespace mipsec::test
