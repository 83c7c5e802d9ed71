// SPDX-License-Identifier: MIT
#include "tun/memory_device.hpp"

#include <algorithm>
#include <cerrno>
#include <sys/eventfd.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace mipsec::tun {

MemoryDevice::MemoryDevice(std::string name, std::uint32_t ifindex)
    : name_(std::move(name)), ifindex_(ifindex) {
    event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (event_fd_ < 0) throw std::system_error(errno, std::system_category(), "eventfd");
}

MemoryDevice::~MemoryDevice() {
    if (event_fd_ >= 0) ::close(event_fd_);
}

void MemoryDevice::set_readable(bool readable) noexcept {
    // The eventfd counter is 1 while packets wait and 0 otherwise; reading it resets it.
    std::uint64_t v = 1;
    if (readable) {
        (void)!::write(event_fd_, &v, sizeof v);
    } else {
        (void)!::read(event_fd_, &v, sizeof v);
    }
}

void MemoryDevice::inject(std::span<const std::uint8_t> packet) {
    bool was_empty = inbound_.empty();
    inbound_.emplace_back(packet.begin(), packet.end());
    if (was_empty) set_readable(true);
}

std::size_t MemoryDevice::read(std::span<core::PacketBuf> bufs) {
    std::size_t n = 0;
    while (n < bufs.size() && !inbound_.empty()) {
        core::PacketBuf& buf = bufs[n];
        if (!buf.valid()) break;
        std::vector<std::uint8_t> packet = std::move(inbound_.front());
        inbound_.pop_front();
        std::span<std::uint8_t> room = buf.writable();
        // Same as LinuxDevice: a packet that does not fit is dropped and counted.
        if (packet.size() > room.size()) {
            ++counters_.rx_errors;
            note_read_error(std::make_error_code(std::errc::message_size));
            continue;
        }
        std::copy(packet.begin(), packet.end(), room.begin());
        (void)buf.resize(packet.size());
        ++counters_.rx_packets;
        counters_.rx_bytes += packet.size();
        ++n;
    }
    if (inbound_.empty()) set_readable(false);
    return n;
}

std::size_t MemoryDevice::write(std::span<core::PacketBuf> bufs) {
    std::size_t written = 0;
    for (auto& buf : bufs) {
        if (failing_writes_ != 0) {
            --failing_writes_;
            count_write_failure(failure_errno_);
            continue;
        }
        std::span<const std::uint8_t> bytes = std::as_const(buf).bytes();
        written_.emplace_back(bytes.begin(), bytes.end());
        ++counters_.tx_packets;
        counters_.tx_bytes += bytes.size();
        ++written;
    }
    return written;
}

}  // namespace mipsec::tun
