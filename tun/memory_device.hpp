// SPDX-License-Identifier: MIT
#pragma once
// MemoryDevice: a tun::Device in memory for tests and simulations. Packets inject()ed are
// handed out by read() in order; packets given to write() are collected in written().
// fd() is a non-blocking eventfd that is readable exactly while injected packets wait, so the
// shell's readiness loop runs unchanged over it (it is always writable). Writes succeed unless
// a test asks for failures (fail_writes), which are counted as a real device counts them.
// Copies packets on inject/write: a test device, not a data path.
// Not thread-safe.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

#include "tun/device.hpp"

namespace mipsec::tun {

class MemoryDevice final : public Device {
public:
    /// Throws std::system_error if no eventfd can be created (test setup only).
    explicit MemoryDevice(std::string name = "mem0", std::uint32_t ifindex = 0);
    ~MemoryDevice() override;

    std::size_t read(std::span<core::PacketBuf> bufs) override;
    std::size_t write(std::span<core::PacketBuf> bufs) override;
    int fd() const noexcept override { return event_fd_; }
    std::string_view name() const noexcept override { return name_; }
    std::uint32_t ifindex() const noexcept override { return ifindex_; }

    /// Queues a packet for read(), as if the kernel had routed it into the device.
    void inject(std::span<const std::uint8_t> packet);
    std::size_t pending() const noexcept { return inbound_.size(); }
    /// Everything written so far, oldest first.
    const std::vector<std::vector<std::uint8_t>>& written() const noexcept { return written_; }
    std::vector<std::vector<std::uint8_t>> take_written() { return std::exchange(written_, {}); }
    /// The next `count` packets given to write() fail with errno `err` (EAGAIN: the queue is
    /// full; EIO: the interface is down...): not collected, counted in tx_errors/tx_failures.
    void fail_writes(std::size_t count, int err) noexcept {
        failing_writes_ = count;
        failure_errno_ = err;
    }

private:
    void set_readable(bool readable) noexcept;

    std::string name_;
    std::uint32_t ifindex_;
    int event_fd_ = -1;
    std::deque<std::vector<std::uint8_t>> inbound_;
    std::vector<std::vector<std::uint8_t>> written_;
    std::size_t failing_writes_ = 0;
    int failure_errno_ = 0;
};

}  // namespace mipsec::tun
