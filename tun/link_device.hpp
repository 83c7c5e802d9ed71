// SPDX-License-Identifier: MIT
#pragma once
// LinkDevice: the inner side of a node that serves a link directly instead of a TUN device (a
// foreign agent's visitor link). read() returns every IPv4 packet the link delivers to this
// host (an AF_PACKET socket, link header removed, our own transmissions ignored); the kernel
// keeps its copy, so the shell only acts on what a stage changed. write() puts IPv4 packets on
// that link and no other (a raw socket bound to the interface: a destination that no route on
// the link covers is taken as on-link and resolved with ARP, as RFC 5944 §4.2.3 wants for a
// visitor whose home address is foreign here).
// The socket reads with a virtio-net header (PACKET_VNET_HDR): what a local sender handed to a
// veth with UDP or TCP segmentation offload, or what a NIC merged with GRO, arrives as one
// super-packet, which tun::Segmenter cuts into the packets it stands for (with their checksums
// finished) before the stages see them; a super-packet larger than the batch is finished on the
// next read. A frame the Segmenter refuses is counted in rx_errors, its reason the last error.
#include <memory>
#include <span>
#include <string>

#include "core/result.hpp"
#include "tun/device.hpp"
#include "tun/offload.hpp"

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
    LinkDevice(std::string name, std::uint32_t ifindex, int rx, int tx, std::size_t mtu, std::size_t link_header);
    bool strip_link_header(std::span<std::uint8_t> frame) noexcept;
    std::string name_;
    std::uint32_t ifindex_;
    int rx_;
    int tx_;
    std::size_t link_header_;  // bytes of link header each read carries after the virtio-net header
    FrameCutter cutter_;
};

}  // namespace mipsec::tun
