// SPDX-License-Identifier: MIT
#pragma once
// tun::Device: a layer-3 packet device (one IPv4/IPv6 packet per read or write, no link
// header), batch-shaped like wireguard-go's tun.Device even where the kernel hands over one
// packet per system call.
//
// Contract for the shell:
//  - read(bufs): each buffer must be valid and reset() to the pipeline's headroom; a packet is
//    read to data() and its length set with resize(). Returns how many leading buffers now
//    hold packets; 0 means the device would block (wait for readiness on fd()). Buffers past
//    the returned count keep their length, though their bytes may have been overwritten by a
//    packet that was dropped (too big for the buffer).
//  - write(bufs): tries every buffer and returns how many were written. A buffer that could not
//    be written is dropped and counted in tx_errors and, by reason, in tx_failures: that
//    includes "would block" (a full queue is no_buffer_space), because the shell has nowhere
//    to keep packets and a router drops what it cannot queue. Nothing is lost uncounted.
//  - No exceptions on the packet path: read errors other than "would block" bump a counter
//    and are kept in last_error(); a read error ends the batch early. A device whose reads
//    fail persistently (the interface was deleted) shows it in last_error().
// Not thread-safe, except that read() and write() touch disjoint state in every device here:
// one thread may read while one other writes. (A node with several workers gives each a queue
// of its own, read and written by that worker's thread.)
#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>

#include "core/packet_buf.hpp"

namespace mipsec::tun {

/// Why a packet handed to a device or a socket did not leave: the errno classes a user can act
/// on (a full queue, a path MTU below the packet, a missing route, a firewall rule).
enum class WriteFailure : std::uint8_t { NoBufferSpace, MessageTooLong, NetworkUnreachable, NotPermitted, Other };
inline constexpr std::size_t write_failure_count = 5;

constexpr WriteFailure classify_write_error(int err) noexcept {
    switch (err) {
        case ENOBUFS:
        case ENOMEM:
        case EAGAIN:  // the socket's or device's queue is full (EWOULDBLOCK is the same value)
            return WriteFailure::NoBufferSpace;
        case EMSGSIZE: return WriteFailure::MessageTooLong;
        case ENETUNREACH:
        case EHOSTUNREACH:
        case ENETDOWN:
        case EHOSTDOWN:
        case EADDRNOTAVAIL:  // the source address went away (a mobile node moved)
            return WriteFailure::NetworkUnreachable;
        case EPERM:
        case EACCES:  // a netfilter rule or a missing SO_BROADCAST refused it
            return WriteFailure::NotPermitted;
        default: return WriteFailure::Other;
    }
}

/// The name `mipsec status` shows.
constexpr std::string_view to_string(WriteFailure f) noexcept {
    switch (f) {
        case WriteFailure::NoBufferSpace: return "no_buffer_space";
        case WriteFailure::MessageTooLong: return "message_too_long";
        case WriteFailure::NetworkUnreachable: return "network_unreachable";
        case WriteFailure::NotPermitted: return "not_permitted";
        case WriteFailure::Other: return "other";
    }
    return "other";
}

/// Failed writes by reason; their sum is the tx_errors beside them.
struct WriteFailures {
    std::array<std::uint64_t, write_failure_count> by_reason{};
    void add(WriteFailure f) noexcept { ++by_reason[static_cast<std::size_t>(f)]; }
    std::uint64_t operator[](WriteFailure f) const noexcept { return by_reason[static_cast<std::size_t>(f)]; }
    WriteFailures& operator+=(const WriteFailures& more) noexcept {
        for (std::size_t i = 0; i < by_reason.size(); ++i) by_reason[i] += more.by_reason[i];
        return *this;
    }
};

struct DeviceCounters {
    std::uint64_t rx_packets = 0;
    std::uint64_t rx_bytes = 0;
    std::uint64_t rx_errors = 0;  // failed reads, packets larger than the buffer
    std::uint64_t tx_packets = 0;
    std::uint64_t tx_bytes = 0;
    std::uint64_t tx_errors = 0;  // packets not written (failed, short or would block)
    WriteFailures tx_failures;    // the same packets by reason
    /// Adds another queue's counts (a device with several queues counts per queue).
    DeviceCounters& operator+=(const DeviceCounters& more) noexcept {
        rx_packets += more.rx_packets;
        rx_bytes += more.rx_bytes;
        rx_errors += more.rx_errors;
        tx_packets += more.tx_packets;
        tx_bytes += more.tx_bytes;
        tx_errors += more.tx_errors;
        tx_failures += more.tx_failures;
        return *this;
    }
};

class Device {
public:
    virtual ~Device() = default;
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    virtual std::size_t read(std::span<core::PacketBuf> bufs) = 0;
    virtual std::size_t write(std::span<core::PacketBuf> bufs) = 0;
    /// A descriptor that is readable when read() has something; -1 if there is none.
    virtual int fd() const noexcept = 0;
    virtual std::string_view name() const noexcept = 0;
    /// The kernel interface index, 0 for devices without one.
    virtual std::uint32_t ifindex() const noexcept = 0;

    const DeviceCounters& counters() const noexcept { return counters_; }
    /// The most recent error counted in rx_errors/tx_errors; empty if none yet.
    std::error_code last_error() const noexcept {
        return write_error_stamp_.load(std::memory_order_relaxed) > read_error_stamp_.load(std::memory_order_relaxed) ? last_write_error_
                                                                                                                     : last_read_error_;
    }
    /// The most recent write error alone: for the writing thread, while another may read.
    std::error_code last_write_error() const noexcept { return last_write_error_; }

protected:
    Device() = default;
    /// One packet not written because of errno `err`.
    void count_write_failure(int err) noexcept {
        ++counters_.tx_errors;
        counters_.tx_failures.add(classify_write_error(err));
        last_write_error_ = std::error_code(err, std::system_category());
        write_error_stamp_.store(error_clock_.fetch_add(1, std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    /// A failed read (counted in rx_errors by the caller).
    void note_read_error(std::error_code e) noexcept {
        last_read_error_ = e;
        read_error_stamp_.store(error_clock_.fetch_add(1, std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    DeviceCounters counters_;

private:
    // The read side and the write side keep their own last error (and the rx_* and tx_*
    // counters are apart), so one thread may read while another writes; the stamps tell which
    // came last.
    std::error_code last_read_error_;
    std::error_code last_write_error_;
    std::atomic<std::uint64_t> error_clock_{0};
    std::atomic<std::uint64_t> read_error_stamp_{0};
    std::atomic<std::uint64_t> write_error_stamp_{0};
};

}  // namespace mipsec::tun
