// SPDX-License-Identifier: MIT
#include "tun/linux_device.hpp"

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

core::Result<std::unique_ptr<LinuxDevice>> LinuxDevice::open(std::string_view name) {
    if (!name.empty() && !valid_name(name)) return Errc::InvalidName;

    int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return open_error(errno);

    ifreq ifr{};
    // IFF_NO_PI: no 4-byte packet-information prefix, so the packet starts at the buffer's
    // headroom exactly. Single queue: one fd, one reader.
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
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
    std::string actual(ifr.ifr_name);

    // The kernel wrote back the final name (it fills in "%d"); SIOCGIFINDEX on any socket of
    // this network namespace turns it into the index rtnetlink requests need.
    int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        int err = errno;
        ::close(fd);
        return std::error_code(err, std::system_category());
    }
    ifreq idx{};
    std::memcpy(idx.ifr_name, ifr.ifr_name, IFNAMSIZ);
    int rc = ::ioctl(sock, SIOCGIFINDEX, &idx);
    int err = errno;
    ::close(sock);
    if (rc < 0) {
        ::close(fd);
        return std::error_code(err, std::system_category());
    }
    return std::unique_ptr<LinuxDevice>(
        new LinuxDevice(fd, std::move(actual), static_cast<std::uint32_t>(idx.ifr_ifindex)));
}

LinuxDevice::~LinuxDevice() {
    if (fd_ >= 0) ::close(fd_);
}

std::size_t LinuxDevice::read(std::span<core::PacketBuf> bufs) {
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
            last_error_ = std::error_code(errno, std::system_category());
            break;
        }
        if (got == 0) continue;
        // The kernel cuts a packet larger than the room and returns min(packet, room), so a
        // read that fills the room may be a cut one: then the IP header's own length decides.
        // A cut packet is useless: drop it, count it, reuse the buffer.
        if (static_cast<std::size_t>(got) >= room.size() &&
            claimed_length(room.first(static_cast<std::size_t>(got))) > static_cast<std::size_t>(got)) {
            ++counters_.rx_errors;
            last_error_ = std::make_error_code(std::errc::message_size);
            continue;
        }
        (void)buf.resize(static_cast<std::size_t>(got));
        ++counters_.rx_packets;
        counters_.rx_bytes += static_cast<std::uint64_t>(got);
        ++n;
    }
    return n;
}

std::size_t LinuxDevice::write(std::span<core::PacketBuf> bufs) {
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

}  // namespace mipsec::tun
