// SPDX-License-Identifier: MIT
#pragma once
// Transport: the sockets outer packets leave and arrive through. Stages produce whole IPv4
// packets; an outer UDP packet goes out through the UDP socket bound to its source port (the
// kernel writes the same IP/UDP headers), any other protocol through a raw socket with
// IP_HDRINCL so the header leaves exactly as the stage built it (TOS, DF, TTL). Inbound UDP
// datagrams get their IP/UDP headers rebuilt in the buffer's headroom, so stages always see
// a whole packet. Batch-shaped: recvmmsg/sendmmsg. Not thread-safe.
//
// A host whose address changes (a mobile node) binds to 0.0.0.0: UDP datagrams then leave
// from the IP source the stage wrote (IP_PKTINFO) and inbound ones are rebuilt with the
// address they were sent to. Raw protocol 255 is a send-only socket for any protocol (a mobile
// node at home passes its own packets through unchanged). With a fwmark every socket carries
// it, so policy routing can keep outer packets out of the TUN.
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <sys/socket.h>

#include "apps/shell/node_config.hpp"
#include "core/packet_buf.hpp"

namespace mipsec::shell {

class Transport {
public:
    enum class Kind : std::uint8_t { Udp, Raw };
    struct Counters {
        std::uint64_t rx_packets = 0, rx_bytes = 0, rx_errors = 0;
        std::uint64_t tx_packets = 0, tx_bytes = 0, tx_errors = 0;
    };
    struct Socket {
        Kind kind;
        std::uint16_t port = 0;     // Udp
        std::uint8_t protocol = 0;  // Raw
        int fd = -1;
        Counters counters;
    };
    /// Headroom inbound buffers need in front of a received UDP payload.
    static constexpr std::size_t rebuilt_header_len = 28;

    /// Opens and binds every socket; throws std::runtime_error naming the socket and the fix.
    explicit Transport(const TransportConfig& config, std::size_t batch);
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;
    ~Transport();

    std::vector<Socket>& sockets() noexcept { return sockets_; }
    const std::vector<Socket>& sockets() const noexcept { return sockets_; }
    core::Ipv4Address local() const noexcept { return local_; }

    /// Sends whole outer IPv4 packets, batched per socket. Packets no socket can carry are
    /// counted in unroutable().
    void send(std::span<core::PacketBuf> packets);
    /// Whether socket `index` receives (the any-protocol raw socket only sends).
    bool receives(std::size_t index) const noexcept {
        return sockets_[index].kind == Kind::Udp || sockets_[index].protocol != any_protocol;
    }
    static constexpr std::uint8_t any_protocol = 255;  // IPPROTO_RAW

    /// Receives up to bufs.size() packets from socket `index` into valid, reset buffers;
    /// returns how many (0: would block). Addresses and ports are in the packet itself (rebuilt headers); no metadata is set.
    std::size_t receive(std::size_t index, std::span<core::PacketBuf> bufs);

    std::uint64_t unroutable() const noexcept { return unroutable_; }

private:
    int socket_for(std::span<const std::uint8_t> packet, std::size_t& payload_offset,
                   sockaddr_storage& destination, socklen_t& destination_len) const;

    core::Ipv4Address local_;
    std::vector<Socket> sockets_;
    std::size_t batch_;
    std::uint64_t unroutable_ = 0;
    // Scratch for one batch, sized once: no allocation per packet.
    std::vector<struct mmsghdr> msgs_;
    std::vector<struct iovec> iovs_;
    std::vector<sockaddr_storage> names_;
    std::vector<int> owner_;
    struct alignas(8) Control {  // cmsghdr's alignment
        std::array<std::uint8_t, 64> bytes;
        std::uint8_t* data() noexcept { return bytes.data(); }
        static constexpr std::size_t size() noexcept { return 64; }
    };
    std::vector<Control> controls_;  // IP_PKTINFO / IP_TTL per message
    bool any_local_ = false;
};

}  // namespace mipsec::shell
