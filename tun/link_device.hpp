// SPDX-License-Identifier: MIT
#pragma once
// LinkDevice: the inner side of a node that serves a link directly instead of a TUN device (a
// foreign agent's visitor link). read() returns every IPv4 packet the link delivers to this
// host (an AF_PACKET socket, link header removed, our own transmissions ignored); the kernel
// keeps its copy, so the shell only acts on what a stage changed. write() puts IPv4 packets on
// that link and no other (a raw socket bound to the interface: a destination that no route on
// the link covers is taken as on-link and resolved with ARP, as RFC 5944 §4.2.3 wants for a
// visitor whose home address is foreign here).
#include <memory>
#include <string>

#include "core/result.hpp"
#include "tun/device.hpp"

namespace mipsec::tun {

class LinkDevice final : public Device {
public:
    static core::Result<std::unique_ptr<LinkDevice>> open(std::string_view interface);
    ~LinkDevice() override;

    std::size_t read(std::span<core::PacketBuf> bufs) override;
    std::size_t write(std::span<core::PacketBuf> bufs) override;
    int fd() const noexcept override { return rx_; }
    std::string_view name() const noexcept override { return name_; }
    std::uint32_t ifindex() const noexcept override { return ifindex_; }

private:
    LinkDevice(std::string name, std::uint32_t ifindex, int rx, int tx) noexcept
        : name_(std::move(name)), ifindex_(ifindex), rx_(rx), tx_(tx) {}
    std::string name_;
    std::uint32_t ifindex_;
    int rx_;
    int tx_;
};

}  // namespace mipsec::tun
