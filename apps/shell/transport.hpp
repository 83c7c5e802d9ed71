// SPDX-License-Identifier: MIT
#pragma once
// Transport: the sockets outer packets leave and arrive through. Stages produce whole IPv4
// packets; an outer UDP packet goes out through the UDP socket bound to its source port, any
// other protocol through a raw socket with IP_HDRINCL so the header leaves exactly as the
// stage built it. On a UDP socket the kernel writes the IP/UDP headers, so the fields a stage
// chose are handed over per packet: TTL and TOS (DSCP and ECN, RFC 6040) as ancillary data,
// DF and a zero UDP checksum (ESP-in-UDP, RFC 3948 §2.1) as socket state switched only when
// a packet wants it different from the packet before. Inbound UDP datagrams get their IP/UDP
// headers rebuilt in the buffer's headroom with the TOS and TTL they arrived with, so stages
// always see a whole packet. Batch-shaped: recvmmsg/sendmmsg. Not thread-safe.
//
// Nothing is lost uncounted: a packet no socket can carry is counted in unroutable(), a send
// the kernel refuses in its socket's tx_errors and tx_failures (by reason). A packet refused
// as too big (EMSGSIZE: with DF over the path MTU on a UDP socket; over the interface MTU on a
// raw one, which never fragments) teaches the path MTU to its destination (path_mtus()); a
// change is queued for the shell to raise as PathMtuChanged (take_path_mtu_changes()).
//
// A host whose address changes (a mobile node) binds to 0.0.0.0: UDP datagrams then leave
// from the IP source the stage wrote (IP_PKTINFO) and inbound ones are rebuilt with the
// address they were sent to. Raw protocol 255 is a send-only socket for any protocol (a mobile
// node at home passes its own packets through unchanged). With a fwmark every socket carries
// it, so policy routing can keep outer packets out of the TUN.
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <sys/socket.h>

#include "apps/shell/node_config.hpp"
#include "core/packet_buf.hpp"
#include "tun/device.hpp"

namespace mipsec::shell {

/// What the node sends outer packets through and receives them from: the vocabulary (sockets
/// with their counters, path MTUs learned) and the batch-shaped send/receive. SocketTransport
/// is the real one; MemoryTransport (memory_transport.hpp) lets the whole node run in a test.
class Transport {
public:
    enum class Kind : std::uint8_t { Udp, Raw };
    struct Counters {
        std::uint64_t rx_packets = 0, rx_bytes = 0, rx_errors = 0;
        std::uint64_t tx_packets = 0, tx_bytes = 0, tx_errors = 0;
        tun::WriteFailures tx_failures;  // tx_errors by reason
        // Datagrams the kernel dropped because the socket's receive buffer was full
        // (SO_RXQ_OVFL, as of the last receive): lost before we could see them.
        std::uint64_t rx_overflows = 0;
        // Raw: packets that arrived on the node's own TUN device, skipped (see
        // ignore_inbound_from()).
        std::uint64_t rx_own_device = 0;
    };
    struct Socket {
        Kind kind;
        std::uint16_t port = 0;     // Udp
        std::uint8_t protocol = 0;  // Raw
        int fd = -1;                // readable when receive() has something
        Counters counters;
        // Udp: what the socket is set to now (IP_MTU_DISCOVER, SO_NO_CHECK).
        bool dont_fragment = false;
        bool zero_checksum = false;
        // What the kernel granted (SO_RCVBUF / SO_SNDBUF as set; it may cap the request
        // without CAP_NET_ADMIN).
        std::size_t receive_buffer = 0;
        std::size_t send_buffer = 0;
    };
    /// What a refused packet taught about the path to a destination.
    struct PathMtu {
        core::Ipv4Address destination;
        std::size_t mtu = 0;
    };
    /// Destinations whose path MTU is remembered; the oldest entry makes room for a new one.
    static constexpr std::size_t path_mtu_capacity = 64;
    /// Headroom inbound buffers need in front of a received UDP payload.
    static constexpr std::size_t rebuilt_header_len = 28;
    static constexpr std::uint8_t any_protocol = 255;  // IPPROTO_RAW

    virtual ~Transport() = default;
    Transport(const Transport&) = delete;
    Transport& operator=(const Transport&) = delete;

    /// Sends whole outer IPv4 packets, batched per socket. Packets no socket can carry are
    /// counted in unroutable(), refused ones in their socket's tx_failures.
    virtual void send(std::span<core::PacketBuf> packets) = 0;
    /// Receives up to bufs.size() packets from socket `index` into valid, reset buffers;
    /// returns how many (0: would block). Addresses and ports are in the packets' headers; no
    /// metadata is set.
    virtual std::size_t receive(std::size_t index, std::span<core::PacketBuf> bufs) = 0;

    const std::vector<Socket>& sockets() const noexcept { return sockets_; }
    /// Whether socket `index` receives (the any-protocol raw socket only sends).
    bool receives(std::size_t index) const noexcept {
        return sockets_[index].kind == Kind::Udp || sockets_[index].protocol != any_protocol;
    }
    std::uint64_t unroutable() const noexcept { return unroutable_; }
    /// A raw socket sees every packet of its protocol the host receives, including what the
    /// node itself wrote to its TUN device (an ICMP echo reply it decapsulated reaches a raw
    /// ICMP socket too). Those are inner packets, not outer ones: skip and count them.
    void ignore_inbound_from(std::uint32_t ifindex) noexcept { ignored_ifindex_ = ifindex; }
    /// Path MTUs learned from refused sends, oldest first.
    const std::vector<PathMtu>& path_mtus() const noexcept { return path_mtus_; }
    /// Path MTU changes since the last call, for the shell to raise as PathMtuChanged once no
    /// stage is mid-packet.
    std::vector<PathMtu> take_path_mtu_changes() { return std::exchange(path_mtu_changes_, {}); }

protected:
    Transport() = default;
    void note_path_mtu(core::Ipv4Address destination, std::size_t mtu);

    std::vector<Socket> sockets_;
    std::uint32_t ignored_ifindex_ = 0;
    std::uint64_t unroutable_ = 0;
    std::vector<PathMtu> path_mtus_;
    std::vector<PathMtu> path_mtu_changes_;
};

/// The kernel's sockets: UDP bound per port, raw sockets with IP_HDRINCL per protocol.
class SocketTransport final : public Transport {
public:
    /// Opens and binds every socket; throws std::runtime_error naming the socket and the fix.
    /// A UDP port 0 lets the kernel pick one (tests); sockets() then shows the port it got.
    explicit SocketTransport(const TransportConfig& config, std::size_t batch);
    ~SocketTransport() override;

    core::Ipv4Address local() const noexcept { return local_; }
    std::vector<Socket>& sockets() noexcept { return sockets_; }
    using Transport::sockets;
    void send(std::span<core::PacketBuf> packets) override;
    std::size_t receive(std::size_t index, std::span<core::PacketBuf> bufs) override;

private:
    int socket_for(std::span<const std::uint8_t> packet, std::size_t& payload_offset,
                   sockaddr_storage& destination, socklen_t& destination_len) const;
    void set_udp_state(Socket& sock, bool dont_fragment, bool zero_checksum);
    void learn_path_mtu(const sockaddr_storage& destination);

    core::Ipv4Address local_;
    std::size_t batch_;
    std::optional<std::uint32_t> fwmark_;
    // Scratch for one batch, sized once: no allocation per packet.
    std::vector<struct mmsghdr> msgs_;
    std::vector<struct iovec> iovs_;
    std::vector<sockaddr_storage> names_;
    std::vector<int> owner_;
    // Per outbound message: the DF bit and zero UDP checksum its header asks for.
    std::vector<std::uint8_t> dont_fragment_;
    std::vector<std::uint8_t> zero_checksum_;
    struct alignas(8) Control {  // cmsghdr's alignment
        std::array<std::uint8_t, 128> bytes;
        std::uint8_t* data() noexcept { return bytes.data(); }
        static constexpr std::size_t size() noexcept { return 128; }
    };
    std::vector<Control> controls_;  // IP_PKTINFO / IP_TTL / IP_TOS per message
    bool any_local_ = false;
};

}  // namespace mipsec::shell
