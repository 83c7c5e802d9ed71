// SPDX-License-Identifier: MIT
#pragma once
// LinuxDevice: a TUN interface from /dev/net/tun (IFF_TUN | IFF_NO_PI, single queue), opened
// non-blocking and close-on-exec. Packets are bare IP packets, no packet-information prefix.
// The device exists while this object lives: destruction closes the fd and the kernel then
// removes the interface with its addresses and routes, unless it was made persistent
// beforehand (`ip tuntap add`), in which case we only detach from it.
// Opening needs CAP_NET_ADMIN, or a persistent device owned by our user.
// Not thread-safe; see tun::Device for the read/write contract.
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "core/result.hpp"
#include "tun/device.hpp"

namespace mipsec::tun {

class LinuxDevice final : public Device {
public:
    /// Creates (or attaches to a persistent) TUN device. An empty name lets the kernel pick
    /// "tunN"; a name may contain one "%d" for the kernel to fill in. Errors: Errc::InvalidName,
    /// NotPermitted, DeviceBusy, NotTunDevice, NoTunDriver, or a system errno.
    static core::Result<std::unique_ptr<LinuxDevice>> open(std::string_view name);
    /// The interface name rules of the kernel's dev_valid_name(), minus the empty name.
    static bool valid_name(std::string_view name) noexcept;

    ~LinuxDevice() override;

    std::size_t read(std::span<core::PacketBuf> bufs) override;
    std::size_t write(std::span<core::PacketBuf> bufs) override;
    int fd() const noexcept override { return fd_; }
    std::string_view name() const noexcept override { return name_; }
    std::uint32_t ifindex() const noexcept override { return ifindex_; }

private:
    LinuxDevice(int fd, std::string name, std::uint32_t ifindex) noexcept
        : fd_(fd), name_(std::move(name)), ifindex_(ifindex) {}

    int fd_;
    std::string name_;
    std::uint32_t ifindex_;
};

}  // namespace mipsec::tun
