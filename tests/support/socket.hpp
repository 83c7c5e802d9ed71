// SPDX-License-Identifier: MIT
#pragma once
// A descriptor that closes itself, and an IPv4 socket address, for tests that open sockets
// and devices of their own.
#include <netinet/in.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include "core/address.hpp"

namespace mipsec::test {

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_;
};

inline sockaddr_in to_sockaddr(core::Ipv4Address a, std::uint16_t port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(a.value);
    return sa;
}

}  // namespace mipsec::test
