// SPDX-License-Identifier: MIT
#pragma once
// MemoryTransport: a Transport in memory, so a whole node (pipeline, I/O loops, status) runs
// in a unit test. Each socket has a non-blocking eventfd as its fd, readable exactly while
// injected packets wait, so the node's readiness loops run unchanged over it. Packets sent are
// collected whole (IPv4 header included) per socket; UDP packets go to the socket bound to
// their source port, anything else to the raw socket of its protocol (or the any-protocol
// one), as SocketTransport routes them. A socket can be told to refuse sends, which counts
// them like the kernel's refusals. Copies packets: a test transport, not a data path.
// Not thread-safe.
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "apps/shell/transport.hpp"

namespace mipsec::shell {

class MemoryTransport final : public Transport {
public:
    /// One socket per UDP port and raw protocol, in that order (as SocketTransport opens them).
    /// Throws std::system_error if no eventfd can be created (test setup only).
    MemoryTransport(std::span<const std::uint16_t> udp_ports, std::span<const std::uint8_t> raw_protocols);
    ~MemoryTransport() override;

    void send(std::span<core::PacketBuf> packets) override;
    std::size_t receive(std::size_t index, std::span<core::PacketBuf> bufs) override;

    /// Queues a whole IPv4 packet on socket `index`, as if it had arrived from the wire.
    void inject(std::size_t index, std::span<const std::uint8_t> packet);
    /// Everything sent so far, oldest first, whole IPv4 packets.
    std::vector<std::vector<std::uint8_t>> take_sent() { return std::exchange(sent_, {}); }
    const std::vector<std::vector<std::uint8_t>>& sent() const noexcept { return sent_; }
    /// The next `count` sends on socket `index` fail with `error` (an errno value).
    void fail_sends(std::size_t index, std::size_t count, int error);

private:
    int socket_for(std::span<const std::uint8_t> packet) const;
    void set_readable(std::size_t index, bool readable) noexcept;

    std::vector<std::deque<std::vector<std::uint8_t>>> inbound_;
    std::vector<std::vector<std::uint8_t>> sent_;
    struct Failing {
        std::size_t count = 0;
        int error = 0;
    };
    std::vector<Failing> failing_;
};

}  // namespace mipsec::shell
