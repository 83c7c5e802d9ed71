// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include "core/endian.hpp"

using namespace mipsec::core;

TEST_CASE("big-endian loads and stores at odd offsets") {
    std::uint8_t b[11] = {};
    store_be16(b + 1, 0x1234);
    store_be32(b + 3, 0xA1B2C3D4);
    CHECK(b[1] == 0x12);
    CHECK(b[2] == 0x34);
    CHECK(b[3] == 0xA1);
    CHECK(b[6] == 0xD4);
    CHECK(load_be16(b + 1) == 0x1234);
    CHECK(load_be32(b + 3) == 0xA1B2C3D4);
    store_be64(b + 3, 0x0102030405060708ull);
    CHECK(load_be64(b + 3) == 0x0102030405060708ull);
    CHECK(b[10] == 0x08);
}
