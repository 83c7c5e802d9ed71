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
//  - write(bufs): returns how many leading buffers were dealt with: written, or dropped on an
//    error that retrying cannot fix (counted in tx_errors). The rest were not tried because the
//    device would block; offer them again when fd() is writable.
//  - No exceptions on the packet path: errors other than "would block" bump a counter and are
//    kept in last_error(); a read error ends the batch early. A device whose reads fail
//    persistently (the interface was deleted) shows it in last_error().
// Not thread-safe; one reader/writer thread per device.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>

#include "core/packet_buf.hpp"

namespace mipsec::tun {

struct DeviceCounters {
    std::uint64_t rx_packets = 0;
    std::uint64_t rx_bytes = 0;
    std::uint64_t rx_errors = 0;  // failed reads, packets larger than the buffer
    std::uint64_t tx_packets = 0;
    std::uint64_t tx_bytes = 0;
    std::uint64_t tx_errors = 0;  // failed or short writes
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
    std::error_code last_error() const noexcept { return last_error_; }

protected:
    Device() = default;
    DeviceCounters counters_;
    std::error_code last_error_;
};

}  // namespace mipsec::tun
