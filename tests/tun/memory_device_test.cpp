// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <ostream>  // doctest prints std::error_code with it

#include <array>
#include <cerrno>
#include <string_view>
#include <poll.h>
#include <vector>

#include "core/buffer_pool.hpp"
#include "tests/support/hex.hpp"
#include "tun/memory_device.hpp"

using namespace mipsec;
using namespace mipsec::test;

namespace {

bool readable(int fd) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

std::vector<core::PacketBuf> acquire(core::BufferPool& pool, std::size_t n, std::size_t headroom) {
    std::vector<core::PacketBuf> bufs;
    for (std::size_t i = 0; i < n; ++i) bufs.push_back(pool.acquire(headroom));
    return bufs;
}

}  // namespace

TEST_CASE("MemoryDevice reads injected packets at the buffer's headroom, in order") {
    core::BufferPool pool(8, 256);
    tun::MemoryDevice dev("mem7", 7);
    CHECK(dev.name() == "mem7");
    CHECK(dev.ifindex() == 7);
    REQUIRE(dev.fd() >= 0);
    CHECK_FALSE(readable(dev.fd()));

    const Bytes p1 = "45 00 00 14 00 01 00 00 40 11 00 00 0a 00 00 01 0a 00 00 02"_hex;
    const Bytes p2 = "45 00 00 15 00 02 00 00 40 01 00 00 0a 00 00 01 0a 00 00 03 ff"_hex;
    const Bytes p3 = "45"_hex;
    dev.inject(p1);
    dev.inject(p2);
    dev.inject(p3);
    CHECK(dev.pending() == 3);
    CHECK(readable(dev.fd()));

    auto bufs = acquire(pool, 2, 64);
    const std::uint8_t* block0 = bufs[0].block();
    REQUIRE(dev.read(bufs) == 2);
    CHECK(bufs[0].headroom() == 64);
    CHECK(bufs[0].block() == block0);
    CHECK(to_hex(bufs[0].bytes()) == to_hex(p1));
    CHECK(to_hex(bufs[1].bytes()) == to_hex(p2));
    CHECK(readable(dev.fd()));  // p3 still waits

    auto more = acquire(pool, 4, 32);
    REQUIRE(dev.read(more) == 1);
    CHECK(to_hex(more[0].bytes()) == "45");
    CHECK(more[1].empty());
    CHECK_FALSE(readable(dev.fd()));
    CHECK(dev.read(more) == 0);

    CHECK(dev.counters().rx_packets == 3);
    CHECK(dev.counters().rx_bytes == p1.size() + p2.size() + p3.size());
    CHECK(dev.counters().rx_errors == 0);
    CHECK_FALSE(dev.last_error());
}

TEST_CASE("MemoryDevice drops a packet larger than the room behind the headroom") {
    core::BufferPool pool(2, 64);
    tun::MemoryDevice dev;
    dev.inject(Bytes(49, 0xAB));  // 64 - 16 = 48 bytes of room
    dev.inject(Bytes(48, 0xCD));
    auto bufs = acquire(pool, 1, 16);
    REQUIRE(dev.read(bufs) == 1);
    CHECK(bufs[0].size() == 48);
    CHECK(bufs[0].bytes()[0] == 0xCD);
    CHECK(dev.counters().rx_errors == 1);
    CHECK(dev.last_error() == std::errc::message_size);
}

TEST_CASE("MemoryDevice collects written packets; failed writes are counted by reason, never lost silently") {
    core::BufferPool pool(8, 128);
    tun::MemoryDevice dev;
    auto bufs = acquire(pool, 6, 20);
    for (std::size_t i = 0; i < bufs.size(); ++i) {
        REQUIRE(bufs[i].put(i + 1));
        for (auto& b : bufs[i].bytes()) b = static_cast<std::uint8_t>(0x10 + i);
    }

    CHECK(dev.write(std::span(bufs).first(2)) == 2);
    // A full queue does not leave the rest of the batch untried and uncounted.
    dev.fail_writes(2, EAGAIN);
    CHECK(dev.write(std::span(bufs).subspan(2, 3)) == 1);
    dev.fail_writes(1, EIO);
    CHECK(dev.write(std::span(bufs).subspan(5)) == 0);

    REQUIRE(dev.written().size() == 3);
    CHECK(to_hex(dev.written()[0]) == "10");
    CHECK(to_hex(dev.written()[1]) == "1111");
    CHECK(to_hex(dev.written()[2]) == "1414141414");  // the two before it failed
    CHECK(dev.counters().tx_packets == 3);
    CHECK(dev.counters().tx_bytes == 8);
    CHECK(dev.counters().tx_errors == 3);
    CHECK(dev.counters().tx_failures[tun::WriteFailure::NoBufferSpace] == 2);
    CHECK(dev.counters().tx_failures[tun::WriteFailure::Other] == 1);
    CHECK(dev.last_error() == std::errc::io_error);
    auto taken = dev.take_written();
    CHECK(taken.size() == 3);
    CHECK(dev.written().empty());
}

TEST_CASE("write errors fall into the classes status shows") {
    struct Row {
        int err;
        tun::WriteFailure expected;
        std::string_view name;
    };
    const Row rows[] = {
        {ENOBUFS, tun::WriteFailure::NoBufferSpace, "no_buffer_space"},
        {EAGAIN, tun::WriteFailure::NoBufferSpace, "no_buffer_space"},
        {EMSGSIZE, tun::WriteFailure::MessageTooLong, "message_too_long"},
        {ENETUNREACH, tun::WriteFailure::NetworkUnreachable, "network_unreachable"},
        {EHOSTUNREACH, tun::WriteFailure::NetworkUnreachable, "network_unreachable"},
        {EADDRNOTAVAIL, tun::WriteFailure::NetworkUnreachable, "network_unreachable"},
        {EPERM, tun::WriteFailure::NotPermitted, "not_permitted"},
        {EINVAL, tun::WriteFailure::Other, "other"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.err);
        CHECK(tun::classify_write_error(row.err) == row.expected);
        CHECK(tun::to_string(row.expected) == row.name);
    }
}

TEST_CASE("last_error is the latest of the read side's and the write side's; last_write_error the write side's alone") {
    // The two sides keep their own error so one thread may read while another writes (a node
    // with two workers); last_error() still answers with whichever came last.
    core::BufferPool pool(4, 64);
    tun::MemoryDevice dev;
    dev.inject(Bytes(60, 0xAB));  // too big for the room behind 16 bytes of headroom
    auto in = acquire(pool, 1, 16);
    CHECK(dev.read(in) == 0);
    CHECK(dev.last_error() == std::errc::message_size);
    CHECK_FALSE(dev.last_write_error());

    auto out = acquire(pool, 1, 20);
    REQUIRE(out[0].put(1));
    dev.fail_writes(1, EIO);
    CHECK(dev.write(out) == 0);
    CHECK(dev.last_error() == std::errc::io_error);
    CHECK(dev.last_write_error() == std::errc::io_error);

    dev.inject(Bytes(60, 0xCD));
    CHECK(dev.read(in) == 0);
    CHECK(dev.last_error() == std::errc::message_size);
    CHECK(dev.last_write_error() == std::errc::io_error);
}
