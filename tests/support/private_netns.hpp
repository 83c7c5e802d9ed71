// SPDX-License-Identifier: MIT
#pragma once
// enter_private_netns(): for root-only test binaries (CTest label netns). unshare(CLONE_NEWNET)
// moves this (single-threaded) process into a brand-new network namespace holding only a down
// loopback, so nothing on the host is touched and the namespace disappears with its last
// socket. Without root it prints "SKIPPED: needs root" and exits 77 (CTest SKIP_RETURN_CODE).
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sched.h>
#include <unistd.h>

namespace mipsec::test {

inline void enter_private_netns() {
    if (::geteuid() != 0) {
        std::puts("SKIPPED: needs root");
        std::fflush(stdout);
        std::_Exit(77);
    }
    REQUIRE_MESSAGE(::unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET): ", std::strerror(errno));
}

}  // namespace mipsec::test
