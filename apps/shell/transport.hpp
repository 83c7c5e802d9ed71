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
// always see a whole packet. Batch-shaped: recvmmsg/sendmmsg.
//
// Threads. A transport is not thread-safe, except that the send side (send(), path MTUs,
// unroutable(), a socket's tx_* and gso_* counters) and the receive side (receive(), a
// socket's rx_* and gro_* counters) touch disjoint state: one thread may send while another
// receives. A node with several data-path workers gives each its own transport, so no send or
// receive takes a shared lock: worker 0 the primary (a UDP socket per configured port, a raw
// socket per configured protocol), the others secondaries (SocketTransport::Sharing) that bind
// the same UDP ports. Every socket of a port then carries SO_REUSEPORT and they form one
// group: the kernel hashes each inbound datagram's addresses and ports onto one member, so one
// peer's flow always reaches the same worker, in order, and many peers spread over all of
// them; flows move only when a socket joins or leaves the group. Raw sockets are not shared:
// each raw socket of a protocol gets its own copy of every inbound packet of that protocol, so
// a second one would deliver each ESP or IP-in-IP packet twice. They stay in the primary, which
// alone receives them; a secondary sends other protocols through one send-only IPPROTO_RAW
// socket. Sharing sockets go without SO_REUSEADDR: on UDP it lets a socket bind a port another
// one holds without SO_REUSEPORT, and the newer one then takes all the port's unicast traffic,
// so a secondary next to a primary opened without reuse_port would silently starve it; without
// it that bind fails and says why. A SO_REUSEPORT bind also joins any group of the same user
// already on the port (another node), so a primary first makes sure nobody holds it.
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
//
// UDP offloads pay the kernel per batch instead of per datagram. Send (UDP_SEGMENT, "GSO"):
// consecutive datagrams of one batch from one socket to one peer, with the same ancillary
// data and the same length (the last may be shorter), leave as one sendmsg of up to 64
// segments and 64 KiB that the kernel (or the device) cuts back into those datagrams; the
// wire is unchanged except that such datagrams carry a UDP checksum, because the kernel
// refuses GSO on a socket without checksums (ESP-in-UDP SHOULD send zero, and receivers MUST
// NOT depend on it: RFC 3948 §2.1). Receive (UDP_GRO): the kernel hands over consecutive
// datagrams of one flow as one with their segment size; they are split back into one buffer
// each, and what does not fit the caller's buffers waits for the next receive, so nothing is
// lost to a short batch. Both are probed when a socket opens and can be turned off in the
// config; a GSO send the kernel refuses is resent one datagram per message (each with the
// zero checksum its stage left, and fragmented or refused for DF as without GSO), and EIO (the
// device cannot checksum for us) turns GSO off for that socket for good, logged once. The
// kernel never fragments a GSO segment (it refuses the send, DF or not), so datagrams larger
// than the link MTU or a path MTU learned for their peer are not grouped.
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <sys/socket.h>

#include "apps/shell/node_config.hpp"
#include "core/logger.hpp"
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
        // Udp offloads. gso_sends: sendmsg calls that carried several datagrams as one
        // (UDP_SEGMENT), gso_segments: the datagrams they carried; gso_fallbacks: such sends
        // the kernel refused, resent one datagram per message. gro_receives: datagrams the
        // kernel handed over coalesced (UDP_GRO), gro_segments: the datagrams split from them.
        std::uint64_t gso_sends = 0, gso_segments = 0, gso_fallbacks = 0;
        std::uint64_t gro_receives = 0, gro_segments = 0;
        /// Adds another socket's counts (each worker's share of a port counts apart).
        Counters& operator+=(const Counters& more) noexcept {
            rx_packets += more.rx_packets;
            rx_bytes += more.rx_bytes;
            rx_errors += more.rx_errors;
            tx_packets += more.tx_packets;
            tx_bytes += more.tx_bytes;
            tx_errors += more.tx_errors;
            tx_failures += more.tx_failures;
            rx_overflows += more.rx_overflows;
            rx_own_device += more.rx_own_device;
            gso_sends += more.gso_sends;
            gso_segments += more.gso_segments;
            gso_fallbacks += more.gso_fallbacks;
            gro_receives += more.gro_receives;
            gro_segments += more.gro_segments;
            return *this;
        }
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
        // Udp: whether sends use UDP_SEGMENT and receives UDP_GRO; when not, why ("off in
        // config", the kernel's refusal).
        bool gso = false;
        bool gro = false;
        std::string gso_off{};
        std::string gro_off{};
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
    /// returns how many (0: would block). Fewer than bufs.size() means nothing more waits, in
    /// the socket or here: only then need the caller wait for the socket to become readable.
    /// Addresses and ports are in the packets' headers; no metadata is set.
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
    /// The system call a batch of messages leaves through (::sendmmsg without flags); returns
    /// how many messages went, or -1 with errno. Tests put one in front that refuses.
    using SendBatch = std::function<int(int fd, struct mmsghdr* msgs, unsigned count)>;
    /// Most datagrams one GSO send carries (the kernel's UDP_MAX_SEGMENTS).
    static constexpr std::size_t gso_max_segments = 64;
    /// Most payload bytes one GSO send carries: an IPv4 datagram's 64 KiB less IP and UDP headers.
    static constexpr std::size_t gso_max_payload = 0xFFFF - 28;
    /// Coalesced datagrams one GRO receive reads at most, each into 64 KiB of scratch.
    static constexpr std::size_t gro_max_messages = 16;
    static constexpr std::size_t gro_message_len = 1 << 16;

    /// How transports of several workers share the node's UDP ports (see the top of the file).
    struct Sharing {
        /// SO_REUSEPORT (and no SO_REUSEADDR) on every UDP socket, so secondaries can join it;
        /// the primary refuses a port some other socket already holds.
        bool reuse_port = false;
        /// Opens only UDP sockets, with SO_REUSEPORT whatever reuse_port says, and, when the
        /// config names raw protocols, one send-only IPPROTO_RAW socket for those protocols.
        bool secondary = false;
        /// In place of config.udp_ports when not empty. A secondary must bind the primary's
        /// actual ports, never 0 (the kernel would pick a port of its own): secondary_of().
        std::vector<std::uint16_t> udp_ports{};
    };
    /// What a secondary of `primary` needs: its UDP ports as bound (a configured 0 became the
    /// port the kernel picked). Throws std::invalid_argument if `primary` does not reuse ports.
    static Sharing secondary_of(const SocketTransport& primary);

    /// Opens and binds every socket; throws std::runtime_error naming the socket and the fix.
    /// A UDP port 0 lets the kernel pick one (tests); sockets() then shows the port it got.
    /// `log` hears when an offload is turned off at run time.
    explicit SocketTransport(const TransportConfig& config, std::size_t batch, std::optional<core::Logger> log = std::nullopt,
                             SendBatch send_batch = {});
    /// The same, sharing the UDP ports with other transports as `sharing` says; throws
    /// std::invalid_argument for a secondary asked to bind port 0.
    SocketTransport(const TransportConfig& config, std::size_t batch, Sharing sharing, std::optional<core::Logger> log = std::nullopt,
                    SendBatch send_batch = {});
    ~SocketTransport() override;

    core::Ipv4Address local() const noexcept { return local_; }
    const Sharing& sharing() const noexcept { return sharing_; }
    std::vector<Socket>& sockets() noexcept { return sockets_; }
    using Transport::sockets;
    void send(std::span<core::PacketBuf> packets) override;
    std::size_t receive(std::size_t index, std::span<core::PacketBuf> bufs) override;

private:
    int socket_for(std::span<const std::uint8_t> packet, std::size_t& payload_offset,
                   sockaddr_storage& destination, socklen_t& destination_len) const;
    void set_udp_state(Socket& sock, bool dont_fragment, bool zero_checksum);
    void learn_path_mtu(const sockaddr_storage& destination);
    // Sends messages [from, to) one datagram each, counting what the kernel refuses.
    void send_each(Socket& sock, std::size_t from, std::size_t to);
    // Groups messages [from, to) into GSO sends (groups_, group_msgs_); true if any has several.
    bool group_for_gso(std::size_t from, std::size_t to);
    // The largest IP datagram a GSO segment to `destination` may make: the link MTU, or the
    // smaller path MTU learned for it.
    std::size_t segment_mtu(const sockaddr_storage& destination) const noexcept;
    void send_groups(Socket& sock);
    void disable_gso(Socket& sock, int err);

    // What a received datagram's ancillary data and address said.
    struct Arrival {
        core::Endpoint source;
        core::Ipv4Address destination;
        std::uint8_t tos = 0;
        std::uint8_t ttl = 64;
        std::uint32_t ifindex = 0;
        std::size_t segment_len = 0;  // UDP_GRO: the size it was coalesced at; 0: not coalesced
    };
    Arrival read_arrival(Socket& sock, std::size_t message);
    // Rebuilds the IP/UDP headers in front of `len` payload bytes at offset rebuilt_header_len.
    bool rebuild_headers(Socket& sock, core::PacketBuf& buf, const Arrival& a, std::size_t len);

    // Coalesced datagrams read but not yet handed out (a UDP_GRO socket's).
    struct Coalesced {
        std::size_t offset = 0;  // in scratch
        std::size_t len = 0;
        Arrival arrival;
    };
    struct GroQueue {
        std::vector<std::uint8_t> scratch;
        std::vector<Coalesced> datagrams;
        std::size_t next = 0;         // the datagram the next segment comes from
        std::size_t next_offset = 0;  // where in it
    };
    std::size_t receive_coalesced(Socket& sock, GroQueue& queue, std::span<core::PacketBuf> bufs);
    std::size_t split_pending(Socket& sock, GroQueue& queue, std::span<core::PacketBuf> bufs);

    core::Ipv4Address local_;
    Sharing sharing_;
    // A secondary's: the protocols its IPPROTO_RAW socket carries (the config's raw_protocols),
    // so it sends what the primary would and counts the rest as unroutable, as the primary does.
    std::vector<std::uint8_t> raw_protocols_;
    std::size_t batch_;
    std::optional<std::uint32_t> fwmark_;
    std::size_t link_mtu_;
    std::optional<core::Logger> log_;
    SendBatch send_batch_;
    // Scratch for one batch, sized once: no allocation per packet. The send side's and the
    // receive side's are apart, so one thread may send while another receives.
    /// Points message i of the next recvmmsg at [data, data + len), its address and cmsg slots.
    void prepare_receive(std::size_t i, std::uint8_t* data, std::size_t len) noexcept;
    std::vector<struct mmsghdr> msgs_;
    std::vector<struct iovec> iovs_;
    std::vector<sockaddr_storage> names_;
    std::vector<int> owner_;
    // Per outbound message: the DF bit and zero UDP checksum its header asks for.
    std::vector<std::uint8_t> dont_fragment_;
    std::vector<std::uint8_t> zero_checksum_;
    struct alignas(8) Control {  // cmsghdr's alignment
        std::array<std::uint8_t, 192> bytes;
        std::uint8_t* data() noexcept { return bytes.data(); }
        static constexpr std::size_t size() noexcept { return 192; }
    };
    // IP_PKTINFO / IP_TTL / IP_TOS (and UDP_SEGMENT) per outbound message; per inbound one
    // IP_PKTINFO, IP_TOS, IP_TTL, SO_RXQ_OVFL and UDP_GRO.
    std::vector<Control> controls_;
    std::vector<struct mmsghdr> rx_msgs_;
    std::vector<struct iovec> rx_iovs_;
    std::vector<sockaddr_storage> rx_names_;
    std::vector<Control> rx_controls_;
    // One GSO send: messages [first, first + count) of msgs_, all but the last segment_len long.
    struct Group {
        std::size_t first = 0;
        std::size_t count = 0;
        std::size_t segment_len = 0;
    };
    std::vector<Group> groups_;
    std::vector<struct mmsghdr> group_msgs_;
    std::vector<GroQueue> gro_;  // per socket; empty for one without UDP_GRO
    bool any_local_ = false;
};

}  // namespace mipsec::shell
