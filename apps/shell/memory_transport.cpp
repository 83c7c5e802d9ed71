// SPDX-License-Identifier: MIT
#include "apps/shell/memory_transport.hpp"

#include <cerrno>
#include <system_error>

#include <sys/eventfd.h>
#include <unistd.h>

#include "core/ipv4.hpp"
#include "core/udp.hpp"

namespace mipsec::shell {

MemoryTransport::MemoryTransport(std::span<const std::uint16_t> udp_ports, std::span<const std::uint8_t> raw_protocols) {
    auto open = [&](Kind kind, std::uint16_t port, std::uint8_t protocol) {
        int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (fd < 0) throw std::system_error(errno, std::system_category(), "eventfd");
        Socket socket{};
        socket.kind = kind;
        socket.port = port;
        socket.protocol = protocol;
        socket.fd = fd;
        sockets_.push_back(socket);
    };
    for (auto p : udp_ports) open(Kind::Udp, p, 0);
    for (auto p : raw_protocols) open(Kind::Raw, 0, p);
    inbound_.resize(sockets_.size());
    failing_.resize(sockets_.size());
}

MemoryTransport::~MemoryTransport() {
    for (const auto& s : sockets_) ::close(s.fd);
}

void MemoryTransport::set_readable(std::size_t index, bool readable) noexcept {
    // The eventfd counter is 1 while packets wait and 0 otherwise; reading it resets it.
    std::uint64_t v = 1;
    if (readable) (void)!::write(sockets_[index].fd, &v, sizeof v);
    else (void)!::read(sockets_[index].fd, &v, sizeof v);
}

int MemoryTransport::socket_for(std::span<const std::uint8_t> packet) const {
    auto ip = core::Ipv4View::check(packet);
    if (!ip) return -1;
    int any = -1;
    for (std::size_t i = 0; i < sockets_.size(); ++i) {
        const auto& s = sockets_[i];
        if (s.kind == Kind::Udp && ip->protocol() == core::ip_protocol::udp) {
            auto udp = core::UdpView::check(ip->payload());
            if (udp && udp->source_port() == s.port) return static_cast<int>(i);
        } else if (s.kind == Kind::Raw && s.protocol == ip->protocol()) {
            return static_cast<int>(i);
        } else if (s.kind == Kind::Raw && s.protocol == any_protocol) {
            any = static_cast<int>(i);
        }
    }
    return any;
}

void MemoryTransport::send(std::span<core::PacketBuf> packets) {
    for (auto& p : packets) {
        const int owner = socket_for(p.bytes());
        if (owner < 0) {
            ++unroutable_;
            continue;
        }
        auto& sock = sockets_[static_cast<std::size_t>(owner)];
        auto& failing = failing_[static_cast<std::size_t>(owner)];
        if (failing.count > 0) {
            --failing.count;
            ++sock.counters.tx_errors;
            sock.counters.tx_failures.add(tun::classify_write_error(failing.error));
            continue;
        }
        sent_.emplace_back(p.bytes().begin(), p.bytes().end());
        ++sock.counters.tx_packets;
        sock.counters.tx_bytes += p.size();
    }
}

std::size_t MemoryTransport::receive(std::size_t index, std::span<core::PacketBuf> bufs) {
    auto& queue = inbound_[index];
    auto& sock = sockets_[index];
    std::size_t n = 0;
    while (n < bufs.size() && !queue.empty()) {
        auto packet = std::move(queue.front());
        queue.pop_front();
        auto room = bufs[n].writable();
        if (packet.size() > room.size()) {
            ++sock.counters.rx_errors;
            continue;
        }
        std::copy(packet.begin(), packet.end(), room.begin());
        (void)bufs[n].resize(packet.size());
        ++sock.counters.rx_packets;
        sock.counters.rx_bytes += packet.size();
        ++n;
    }
    if (queue.empty()) set_readable(index, false);
    return n;
}

void MemoryTransport::inject(std::size_t index, std::span<const std::uint8_t> packet) {
    auto& queue = inbound_[index];
    const bool was_empty = queue.empty();
    queue.emplace_back(packet.begin(), packet.end());
    if (was_empty) set_readable(index, true);
}

void MemoryTransport::fail_sends(std::size_t index, std::size_t count, int error) { failing_[index] = {count, error}; }

}  // namespace mipsec::shell
