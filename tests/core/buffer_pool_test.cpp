// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/buffer_pool.hpp"

using namespace mipsec::core;

TEST_CASE("push/pull/put/trim stay inside the block and never move the payload") {
    BufferPool pool(1, 256);
    auto buf = pool.acquire(64);
    REQUIRE(buf.valid());
    CHECK(buf.headroom() == 64);
    CHECK(buf.tailroom() == 256 - 64);
    REQUIRE(buf.put(10));
    auto* payload = buf.data();
    REQUIRE(buf.push(20));
    CHECK(buf.data() + 20 == payload);
    CHECK(buf.size() == 30);
    CHECK_FALSE(buf.push(45));  // only 44 bytes of headroom left
    CHECK(buf.size() == 30);    // a refused push changes nothing
    REQUIRE(buf.pull(20));
    CHECK(buf.data() == payload);
    CHECK_FALSE(buf.pull(11));
    CHECK_FALSE(buf.put(buf.tailroom() + 1));
    REQUIRE(buf.trim(4));
    CHECK(buf.size() == 6);
    CHECK_FALSE(buf.trim(7));
    CHECK(buf.resize(buf.writable().size()));
    CHECK_FALSE(buf.resize(buf.writable().size() + 1));
}

TEST_CASE("an empty pool gives invalid buffers (back-pressure) and counts it") {
    BufferPool pool(2, 128);
    {
        auto a = pool.acquire(0);
        auto b = pool.acquire(0);
        CHECK(a.valid());
        CHECK(b.valid());
        CHECK(pool.available() == 0);
        auto c = pool.acquire(0);
        CHECK_FALSE(c.valid());
        CHECK(pool.exhausted_count() == 1);
        PacketBuf moved = std::move(a);
        CHECK_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
        CHECK(moved.valid());
        CHECK(pool.available() == 0);
    }
    CHECK(pool.available() == 2);  // destruction returned both blocks
}

TEST_CASE("move assignment returns the overwritten block") {
    BufferPool pool(2, 128);
    auto a = pool.acquire(0);
    auto b = pool.acquire(0);
    a = std::move(b);
    CHECK(pool.available() == 1);
}

TEST_CASE("pool refuses a zero-sized configuration") {
    CHECK_THROWS_AS(BufferPool(0, 128), std::invalid_argument);
    CHECK_THROWS_AS(BufferPool(4, 0), std::invalid_argument);
}

TEST_CASE("a pool shared by threads hands each block to one owner at a time and gets every one back") {
    // Two threads take and release buffers as fast as they can, and each hands half of what it
    // takes to the other to release (a packet read on one data-path thread and dropped on
    // another). A block handed out twice at once would show as a second owner writing its mark.
    constexpr std::size_t blocks = 64;
    BufferPool pool(blocks, 128, BufferPool::Sharing::Threads);
    REQUIRE(pool.shared());
    std::atomic<bool> handed_out_twice = false;
    std::atomic<std::uint64_t> acquired = 0;
    std::vector<PacketBuf> mailbox[2];
    std::atomic_flag mailbox_lock[2] = {ATOMIC_FLAG_INIT, ATOMIC_FLAG_INIT};
    auto work = [&](int me) {
        std::vector<PacketBuf> held;
        for (int round = 0; round < 20000; ++round) {
            auto buf = pool.acquire(0);
            if (buf.valid()) {
                ++acquired;
                REQUIRE(buf.put(8));
                // Our mark in the block; whoever else owned it at the same time overwrites it.
                for (int i = 0; i < 8; ++i) buf.data()[i] = static_cast<std::uint8_t>(me + 1);
                for (int i = 0; i < 8; ++i)
                    if (buf.data()[i] != me + 1) handed_out_twice = true;
                if (round % 2 == 0) {
                    while (mailbox_lock[1 - me].test_and_set()) {}
                    mailbox[1 - me].push_back(std::move(buf));
                    mailbox_lock[1 - me].clear();
                } else {
                    held.push_back(std::move(buf));
                }
            }
            if (held.size() > 8) held.clear();  // released on this thread
            while (mailbox_lock[me].test_and_set()) {}
            mailbox[me].clear();  // released on this thread, taken on the other
            mailbox_lock[me].clear();
        }
    };
    std::thread other(work, 1);
    work(0);
    other.join();
    mailbox[0].clear();
    mailbox[1].clear();
    CHECK_FALSE(handed_out_twice);
    CHECK(acquired > 0);
    CHECK(pool.available() == blocks);
}
