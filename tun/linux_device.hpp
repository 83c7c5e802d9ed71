// SPDX-License-Identifier: MIT
#pragma once
// LinuxDevice: a TUN interface from /dev/net/tun (IFF_TUN | IFF_NO_PI), opened non-blocking
// and close-on-exec. Packets are bare IP packets, no packet-information prefix.
// The device exists while this object lives: destruction closes the fd and the kernel then
// removes the interface with its addresses and routes, unless it was made persistent
// beforehand (`ip tuntap add`), in which case we only detach from it.
// Opening needs CAP_NET_ADMIN, or a persistent device owned by our user.
//
// With Options::offload the device is opened with IFF_VNET_HDR and TUNSETOFFLOAD: the kernel
// hands over TCP (and, where it has USO, UDP) super-packets of up to 64 KiB behind a
// virtio-net header, and accepts the same. The Device contract does not change: read() reads
// one frame per system call into a scratch buffer and cuts it with tun::Segmenter into as many
// of the caller's buffers as it takes, keeping the rest for the next read() when the batch is
// full; write() merges consecutive TCP segments of one flow (and, where the kernel granted USO,
// UDP datagrams of one flow) with tun::Coalescer and writes one frame per super-packet. rx/tx counters count the inner packets either way; offload_counters()
// adds what was merged and cut, and the frames dropped per core::DropReason (never cut into
// garbage). A frame that is dropped also counts in rx_errors; a segment the coalescer refused
// (broken checksum) counts in tx_errors as "other", so write()'s contract holds unchanged.
// Not thread-safe; see tun::Device for the read/write contract: read() (the Segmenter, the rx
// counters) and write() (the Coalescer, the tx counters) share no state, so one thread may
// read while another writes. set_mtu() belongs to the reading thread.
//
// Multi-queue (Options::queues > 1): the interface is opened with IFF_MULTI_QUEUE and every
// open_queue() attaches one more descriptor to it, each a LinuxDevice of its own (its own
// FrameCutter, Coalescer, counters and MTU), so one worker thread per queue reads and writes
// without sharing anything with the others. What the kernel does with them (drivers/net/tun.c):
//  - A packet routed into the interface goes to one queue, chosen by tun_select_queue(): the
//    symmetric flow hash of its addresses and ports picks the queue (hash * queues >> 32), unless
//    a packet of the same flow (either direction: the hash is symmetric) was written into a
//    queue in the last 3 s (tun_flow_update, TUN_FLOW_EXPIRE), which then gets it. So the
//    packets of one flow reach one queue, in order, and different flows spread over the queues
//    as the hash falls (a queue may get no flow at all, or most of them). Writing a flow's
//    packets into another queue than the one it arrives on moves the flow there, and the kernel
//    may reorder a packet at the switch: a worker should write a flow's replies into its queue.
//  - A queue whose descriptor closes detaches: the kernel spreads new traffic over the queues
//    left (what sat in the closed queue is lost). The interface lives while any queue is open.
//  - txqueuelen is per device, and every queue's ring holds that many packets: tx_queue_len is
//    set once, by open(); the queues opened later get the same length.
//  - The header flags (IFF_VNET_HDR) and TUNSETOFFLOAD's bits belong to the device, not the
//    queue: each queue is attached with the first one's flags and asks for its offloads again,
//    so the device keeps them whichever queue the kernel takes them from.
// Up to 256 queues per interface (the kernel's MAX_TAP_QUEUES): a TUNSETIFF past that fails
// with E2BIG.
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.hpp"
#include "tun/device.hpp"
#include "tun/offload.hpp"

namespace mipsec::tun {

/// TUNSETOFFLOAD bits (<linux/if_tun.h>; Debian's copy predates the USO ones).
namespace tun_offload {
inline constexpr unsigned csum = 0x01;  // TUN_F_CSUM: checksum-partial packets
inline constexpr unsigned tso4 = 0x02;  // TUN_F_TSO4
inline constexpr unsigned uso4 = 0x20;  // TUN_F_USO4 (Linux 6.2); the kernel takes it only with USO6
inline constexpr unsigned uso6 = 0x40;  // TUN_F_USO6
}  // namespace tun_offload

/// What offloading did, beside DeviceCounters (which count inner packets in both modes).
struct OffloadCounters {
    std::uint64_t rx_super_packets = 0;  // GSO frames read
    std::uint64_t rx_segments = 0;       // packets cut from them
    std::uint64_t tx_super_packets = 0;  // frames written that merge two or more packets
    std::uint64_t tx_coalesced = 0;      // packets merged into them
    OffloadDrops drops{};                // frames (read) and segments (write) dropped, by reason
    /// Adds another queue's counts.
    OffloadCounters& operator+=(const OffloadCounters& more) noexcept {
        rx_super_packets += more.rx_super_packets;
        rx_segments += more.rx_segments;
        tx_super_packets += more.tx_super_packets;
        tx_coalesced += more.tx_coalesced;
        for (std::size_t i = 0; i < drops.size(); ++i) drops[i] += more.drops[i];
        return *this;
    }
};

class LinuxDevice final : public Device {
public:
    static constexpr std::uint32_t default_tx_queue_len = 4096;
    struct Options {
        /// Ask for IFF_VNET_HDR and TUNSETOFFLOAD; false: one bare packet per read/write.
        bool offload = false;
        /// The largest IP packet a segment may be: the MTU the TUN device is given. A
        /// super-packet whose gso_size makes bigger segments is dropped (gso_size_invalid).
        std::size_t mtu = 1500;
        /// The packets the kernel may queue for us to read (the interface's txqueuelen) before
        /// it drops what it routes in (counted in the interface's TX dropped, nowhere else).
        /// The kernel's 500 holds 500 super-packets of TCP it kept whole, but only 500 single
        /// packets of what it cannot (IP-in-IP, ESP-in-UDP it forwards): a few milliseconds at
        /// a gigabit, less than the burst a TSO sender delivers while the reader is busy with one
        /// batch. A longer queue is raised to, never shortened; 0 leaves the kernel's.
        std::uint32_t tx_queue_len = default_tx_queue_len;
        /// 1: one queue, one fd, no IFF_MULTI_QUEUE. More: the interface is opened with
        /// IFF_MULTI_QUEUE, open() attaches the first queue and open_queue() each of the others
        /// (queues - 1 calls, one queue per worker thread). The kernel reserves max_queues for
        /// every multi-queue device, so the number only has to lie in 1..max_queues. A
        /// persistent device is attached only in the mode it was created in (`ip tuntap add
        /// ... multi_queue`); otherwise TUNSETIFF answers EINVAL, reported as NotTunDevice.
        std::size_t queues = 1;
    };
    /// The kernel's limit of queues on one TUN interface (MAX_TAP_QUEUES in drivers/net/tun.c).
    static constexpr std::size_t max_queues = 256;

    /// Creates (or attaches to a persistent) TUN device. An empty name lets the kernel pick
    /// "tunN"; a name may contain one "%d" for the kernel to fill in. Errors: Errc::InvalidName,
    /// NotPermitted, DeviceBusy, NotTunDevice, NoTunDriver, core::Errc::InvalidArgument (queues
    /// outside 1..max_queues), or a system errno. Offloads are
    /// probed, most first (CSUM|TSO4|USO4|USO6, then CSUM|TSO4); where the kernel refuses
    /// both, the device is reopened without a virtio-net header and offloads() is 0.
    static core::Result<std::unique_ptr<LinuxDevice>> open(std::string_view name, Options options);
    static core::Result<std::unique_ptr<LinuxDevice>> open(std::string_view name) { return open(name, Options{}); }
    /// Takes over a descriptor that behaves like a TUN queue (one packet per read and write),
    /// set up by someone else, e.g. a supervisor that passes it, or a SOCK_SEQPACKET socket in
    /// a test. `offloads`: the TUN_F_* bits granted on it; nonzero means every packet carries
    /// a virtio-net header.
    static std::unique_ptr<LinuxDevice> adopt(int fd, std::string name, std::uint32_t ifindex, unsigned offloads,
                                              std::size_t mtu);
    /// One more queue of a device opened with Options::queues > 1: a fresh /dev/net/tun
    /// descriptor attached to the same interface with the same flags and TUNSETOFFLOAD bits,
    /// returned as an independent device (same name, ifindex, offloads, tx_queue_len and MTU;
    /// its own counters). Call it from the thread that owns this queue (it reads this queue's
    /// MTU), or before the workers start. Errors: core::Errc::InvalidArgument on a device not
    /// opened multi-queue (or adopted); a system errno from the kernel (E2BIG past 256 queues).
    core::Result<std::unique_ptr<LinuxDevice>> open_queue() const;
    /// Whether open_queue() can attach more queues (opened with Options::queues > 1).
    bool multi_queue() const noexcept { return multi_queue_; }

    /// The interface name rules of the kernel's dev_valid_name(), minus the empty name.
    static bool valid_name(std::string_view name) noexcept;

    ~LinuxDevice() override;

    std::size_t read(std::span<core::PacketBuf> bufs) override;
    std::size_t write(std::span<core::PacketBuf> bufs) override;
    int fd() const noexcept override { return fd_; }
    std::string_view name() const noexcept override { return name_; }
    std::uint32_t ifindex() const noexcept override { return ifindex_; }

    /// TUN_F_* bits the kernel granted; 0 without a virtio-net header.
    unsigned offloads() const noexcept { return offloads_; }
    /// The interface's txqueuelen after open(): below Options::tx_queue_len only where the
    /// kernel refused to raise it (a persistent device opened without CAP_NET_ADMIN).
    std::uint32_t tx_queue_len() const noexcept { return tx_queue_len_; }
    /// Follows the TUN MTU when the node changes it (path MTU): segments never exceed it.
    void set_mtu(std::size_t mtu) noexcept;
    OffloadCounters offload_counters() const noexcept;

private:
    LinuxDevice(int fd, std::string name, std::uint32_t ifindex, unsigned offloads, std::size_t mtu);

    std::size_t read_plain(std::span<core::PacketBuf> bufs);
    std::size_t write_plain(std::span<core::PacketBuf> bufs);
    std::size_t read_offload(std::span<core::PacketBuf> bufs);
    std::size_t write_offload(std::span<core::PacketBuf> bufs);
    void count_rx_drop(core::DropReason reason) noexcept;

    int fd_;
    std::string name_;
    std::uint32_t ifindex_;
    unsigned offloads_;
    std::uint32_t tx_queue_len_ = 0;
    std::size_t mtu_;           // what the cutter segments for; a new queue starts with it
    bool multi_queue_ = false;  // opened with IFF_MULTI_QUEUE
    FrameCutter cutter_;  // holds no frame without offloads
    Coalescer coalescer_;
    OffloadCounters offload_;  // what the Segmenter and Coalescer do not count themselves
    OffloadDrops tx_drops_{};  // segments write() refused; apart from offload_.drops (read's), see below
};

}  // namespace mipsec::tun
