// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

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
