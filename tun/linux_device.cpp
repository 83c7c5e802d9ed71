// SPDX-License-Identifier: MIT
#include "tun/linux_device.hpp"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <utility>

#include "core/endian.hpp"
#include "tun/errc.hpp"

namespace mipsec::tun {
namespace {

std::error_code open_error(int err) {
    switch (err) {
        case EPERM:
        case EACCES: return Errc::NotPermitted;
        case EBUSY: return Errc::DeviceBusy;
        case ENOENT:
        case ENODEV:
        case ENXIO: return Errc::NoTunDriver;
        default: return {err, std::system_category()};
    }
}

/// The length an IPv4 or IPv6 header says its packet has; 0 if it cannot tell.
std::size_t claimed_length(std::span<const std::uint8_t> p) noexcept {
    if (p.size() >= 4 && (p[0] >> 4) == 4) return core::load_be16(p.data() + 2);
    if (p.size() >= 6 && (p[0] >> 4) == 6) return 40 + std::size_t{core::load_be16(p.data() + 4)};
    return 0;
}

}  // namespace

bool LinuxDevice::valid_name(std::string_view name) noexcept {
    // Mirrors net/core/dev.c dev_valid_name(): names are path components under
    // /sys/class/net, and ':' is the old alias separator.
    if (name.empty() || name.size() >= IFNAMSIZ) return false;
    if (name == "." || name == "..") return false;
    for (char c : name) {
        if (c == '/' || c == ':' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
            c == '\f' || c == '\0')
            return false;
    }
    return true;
}

namespace {

/// A fresh /dev/net/tun descriptor attached to `name` with `flags`; the kernel's final name
/// (it fills in "%d") goes to `actual`.
core::Result<int> attach(std::string_view name, short flags, std::string& actual) {
    int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return open_error(errno);
    ifreq ifr{};
    ifr.ifr_flags = flags;
    std::memcpy(ifr.ifr_name, name.data(), name.size());
    if (::ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int err = errno;
        ::close(fd);
        // TUNSETIFF answers EINVAL when the name is taken by a non-TUN interface, or when a
        // "%d" template is not one the kernel accepts.
        if (err == EINVAL && !name.empty()) {
            return name.find('%') == std::string_view::npos ? Errc::NotTunDevice : Errc::InvalidName;
        }
        return open_error(err);
    }
    ifr.ifr_name[IFNAMSIZ - 1] = '\0';
    actual = ifr.ifr_name;
    return fd;
}

// The largest frame a read can return: the virtio-net header and an IPv4 packet of at most
// 65535 bytes (the TUN device's default gso_max_size keeps super-packets below 64 KiB).
constexpr std::size_t max_frame_len = VirtioNetHeader::len + Coalescer::max_super_len;

}  // namespace

core::Result<std::unique_ptr<LinuxDevice>> LinuxDevice::open(std::string_view name, Options options) {
    if (!name.empty() && !valid_name(name)) return Errc::InvalidName;
    if (options.queues < 1 || options.queues > max_queues) return core::Errc::InvalidArgument;
    const bool multi_queue = options.queues > 1;

    // IFF_NO_PI: no 4-byte packet-information prefix, so the packet starts at the buffer's
    // headroom exactly. Single queue: one fd, one reader; multi-queue: one fd per reader, the
    // others attached by open_queue().
    const short plain = static_cast<short>(IFF_TUN | IFF_NO_PI | (multi_queue ? IFF_MULTI_QUEUE : 0));
    std::string actual;
    unsigned granted = 0;
    int fd = -1;
    if (options.offload) {
        auto vnet = attach(name, plain | IFF_VNET_HDR, actual);
        if (!vnet) return vnet.error();
        fd = *vnet;
        // TUNSETOFFLOAD answers EINVAL for any bit it does not know, so the probe goes from
        // most to least; the kernel takes USO only as USO4 and USO6 together (tun_set_offload).
        for (unsigned want : {tun_offload::csum | tun_offload::tso4 | tun_offload::uso4 | tun_offload::uso6,
                              tun_offload::csum | tun_offload::tso4}) {
            if (::ioctl(fd, TUNSETOFFLOAD, want) == 0) {
                granted = want;
                break;
            }
        }
        if (granted == 0) {
            // No segmentation offload: a virtio-net header would only cost a copy per packet.
            ::close(fd);
            fd = -1;
        }
    }
    if (fd < 0) {
        auto bare = attach(name, plain, actual);
        if (!bare) return bare.error();
        fd = *bare;
    }

    // SIOCGIFINDEX on any socket of this network namespace turns the name into the index
    // rtnetlink requests need.
    int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        int err = errno;
        ::close(fd);
        return std::error_code(err, std::system_category());
    }
    ifreq idx{};
    std::memcpy(idx.ifr_name, actual.data(), std::min<std::size_t>(actual.size(), IFNAMSIZ - 1));
    int rc = ::ioctl(sock, SIOCGIFINDEX, &idx);
    int err = errno;
    if (rc < 0) {
        ::close(sock);
        ::close(fd);
        return std::error_code(err, std::system_category());
    }
    // The kernel resizes the TUN's queue (its ptr_ring) when txqueuelen changes. A refusal
    // (EPERM) is not an error: the device works with the queue it has, which tx_queue_len()
    // reports.
    ifreq qlen{};
    std::memcpy(qlen.ifr_name, idx.ifr_name, IFNAMSIZ);
    std::uint32_t queue_len = ::ioctl(sock, SIOCGIFTXQLEN, &qlen) == 0 ? static_cast<std::uint32_t>(qlen.ifr_qlen) : 0;
    if (options.tx_queue_len > queue_len) {
        qlen.ifr_qlen = static_cast<int>(options.tx_queue_len);
        if (::ioctl(sock, SIOCSIFTXQLEN, &qlen) == 0) queue_len = options.tx_queue_len;
    }
    ::close(sock);
    auto device = std::unique_ptr<LinuxDevice>(
        new LinuxDevice(fd, std::move(actual), static_cast<std::uint32_t>(idx.ifr_ifindex), granted, options.mtu));
    device->tx_queue_len_ = queue_len;
    device->multi_queue_ = multi_queue;
    return device;
}

core::Result<std::unique_ptr<LinuxDevice>> LinuxDevice::open_queue() const {
    if (!multi_queue_) return core::Errc::InvalidArgument;
    // The same flags as the first queue. tun_set_iff() refuses a queue whose IFF_MULTI_QUEUE
    // differs, keeps the device's flags when a queue joins others, but takes IFF_VNET_HDR and
    // IFF_NO_PI from a queue that attaches alone: whichever queue they come from, they stay what
    // every LinuxDevice of the interface expects.
    const short flags = static_cast<short>(IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | (offloads_ != 0 ? IFF_VNET_HDR : 0));
    std::string actual;
    auto fd = attach(name_, flags, actual);
    if (!fd) return fd.error();
    // The device's features were set by the first queue's TUNSETOFFLOAD; asking again for the
    // same bits keeps them as they are and confirms this kernel still grants them.
    if (offloads_ != 0 && ::ioctl(*fd, TUNSETOFFLOAD, offloads_) != 0) {
        const int err = errno;
        ::close(*fd);
        return std::error_code(err, std::system_category());
    }
    auto device = std::unique_ptr<LinuxDevice>(new LinuxDevice(*fd, name_, ifindex_, offloads_, mtu_));
    device->tx_queue_len_ = tx_queue_len_;
    device->multi_queue_ = true;
    return device;
}

std::unique_ptr<LinuxDevice> LinuxDevice::adopt(int fd, std::string name, std::uint32_t ifindex, unsigned offloads,
                                                std::size_t mtu) {
    return std::unique_ptr<LinuxDevice>(new LinuxDevice(fd, std::move(name), ifindex, offloads, mtu));
}

LinuxDevice::LinuxDevice(int fd, std::string name, std::uint32_t ifindex, unsigned offloads, std::size_t mtu)
    : fd_(fd),
      name_(std::move(name)),
      ifindex_(ifindex),
      offloads_(offloads),
      mtu_(mtu),
      cutter_(mtu, offloads != 0 ? max_frame_len : 0),
      // A UDP_L4 frame is only written to a device that takes them (TUN_F_USO4).
      coalescer_(Coalescer::max_super_len, (offloads & tun_offload::uso4) != 0) {}

LinuxDevice::~LinuxDevice() {
    if (fd_ >= 0) ::close(fd_);
}

void LinuxDevice::set_mtu(std::size_t mtu) noexcept {
    mtu_ = mtu;
    cutter_.set_mtu(mtu);  // drops are counted here
}

OffloadCounters LinuxDevice::offload_counters() const noexcept {
    OffloadCounters c = offload_;
    for (std::size_t r = 0; r < core::drop_reason_count; ++r) c.drops[r] += tx_drops_[r];
    return c;
}

std::size_t LinuxDevice::read(std::span<core::PacketBuf> bufs) {
    return offloads_ != 0 ? read_offload(bufs) : read_plain(bufs);
}

std::size_t LinuxDevice::write(std::span<core::PacketBuf> bufs) {
    return offloads_ != 0 ? write_offload(bufs) : write_plain(bufs);
}

std::size_t LinuxDevice::read_plain(std::span<core::PacketBuf> bufs) {
    std::size_t n = 0;
    while (n < bufs.size()) {
        core::PacketBuf& buf = bufs[n];
        assert(buf.valid());
        if (!buf.valid()) break;
        std::span<std::uint8_t> room = buf.writable();
        ssize_t got = ::read(fd_, room.data(), room.size());
        if (got < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            ++counters_.rx_errors;
            note_read_error(std::error_code(errno, std::system_category()));
            break;
        }
        if (got == 0) continue;
        // The kernel cuts a packet larger than the room and returns min(packet, room), so a
        // read that fills the room may be a cut one: then the IP header's own length decides.
        // A cut packet is useless: drop it, count it, reuse the buffer.
        if (static_cast<std::size_t>(got) >= room.size() &&
            claimed_length(room.first(static_cast<std::size_t>(got))) > static_cast<std::size_t>(got)) {
            ++counters_.rx_errors;
            note_read_error(std::make_error_code(std::errc::message_size));
            continue;
        }
        (void)buf.resize(static_cast<std::size_t>(got));
        ++counters_.rx_packets;
        counters_.rx_bytes += static_cast<std::uint64_t>(got);
        ++n;
    }
    return n;
}

void LinuxDevice::count_rx_drop(core::DropReason reason) noexcept {
    ++offload_.drops[static_cast<std::size_t>(reason)];
    ++counters_.rx_errors;
    note_read_error(std::make_error_code(reason == core::DropReason::NoTailroom ? std::errc::message_size
                                                                              : std::errc::bad_message));
}

std::size_t LinuxDevice::read_offload(std::span<core::PacketBuf> bufs) {
    std::size_t n = 0;
    while (n < bufs.size()) {
        // Segments go into the leading valid buffers, at the headroom the caller reset them to.
        std::size_t room = n;
        while (room < bufs.size() && bufs[room].valid()) ++room;
        assert(room == bufs.size());
        if (room == n) break;
        if (!cutter_.pending()) {
            const auto frame = cutter_.buffer();
            ssize_t got = ::read(fd_, frame.data(), frame.size());
            if (got < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                ++counters_.rx_errors;
                note_read_error(std::error_code(errno, std::system_category()));
                break;
            }
            if (got == 0) continue;
            cutter_.load(0, static_cast<std::size_t>(got));
        }
        const auto out = bufs.subspan(n, room - n);
        const auto c = cutter_.cut(out);
        const std::size_t count = c.outcome.count;
        if (count == 0) {
            count_rx_drop(c.outcome.reason);
            continue;
        }
        if (c.super) {
            if (c.first) ++offload_.rx_super_packets;
            offload_.rx_segments += count;
        }
        for (std::size_t i = 0; i < count; ++i) counters_.rx_bytes += out[i].size();
        counters_.rx_packets += count;
        n += count;
    }
    return n;
}

std::size_t LinuxDevice::write_plain(std::span<core::PacketBuf> bufs) {
    std::size_t written = 0;
    for (std::size_t n = 0; n < bufs.size();) {
        const core::PacketBuf& buf = bufs[n];
        ssize_t put = ::write(fd_, buf.data(), buf.size());
        if (put < 0) {
            if (errno == EINTR) continue;
            // EAGAIN (the device queue is full), EINVAL (not an IP packet), EIO (interface
            // down) and the like: this packet is lost, counted with its reason.
            count_write_failure(errno);
        } else if (static_cast<std::size_t>(put) != buf.size()) {
            count_write_failure(EMSGSIZE);
        } else {
            ++counters_.tx_packets;
            counters_.tx_bytes += buf.size();
            ++written;
        }
        ++n;
    }
    return written;
}

std::size_t LinuxDevice::write_offload(std::span<core::PacketBuf> bufs) {
    const OffloadDrops before = coalescer_.drops();
    coalescer_.clear();
    for (const core::PacketBuf& buf : bufs) coalescer_.add(buf.bytes());
    // A segment the coalescer refused is not written: a failure of this write like any other.
    for (std::size_t r = 0; r < core::drop_reason_count; ++r) {
        const std::uint64_t refused = coalescer_.drops()[r] - before[r];
        tx_drops_[r] += refused;
        for (std::uint64_t k = 0; k < refused; ++k) count_write_failure(EBADMSG);
    }
    std::size_t written = 0;
    for (std::size_t i = 0; i < coalescer_.frame_count(); ++i) {
        const std::size_t segments = coalescer_.frame_segments(i);
        const auto frame = coalescer_.frame(i);
        ssize_t put;
        do put = ::write(fd_, frame.data(), frame.size());
        while (put < 0 && errno == EINTR);
        if (put < 0 || static_cast<std::size_t>(put) != frame.size()) {
            // Every packet merged into the frame is lost with it.
            const int err = put < 0 ? errno : EMSGSIZE;
            for (std::size_t k = 0; k < segments; ++k) count_write_failure(err);
            continue;
        }
        // The inner packets' own bytes: the merged segments shared one copy of the headers.
        const std::size_t header_len = VirtioNetHeader::parse(frame).hdr_len;
        counters_.tx_packets += segments;
        counters_.tx_bytes += frame.size() - VirtioNetHeader::len + (segments - 1) * header_len;
        if (segments > 1) {
            ++offload_.tx_super_packets;
            offload_.tx_coalesced += segments;
        }
        written += segments;
    }
    coalescer_.clear();  // forget the views of the caller's buffers
    return written;
}

}  // namespace mipsec::tun
