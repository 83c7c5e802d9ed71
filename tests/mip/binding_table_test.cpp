// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <map>
#include <random>

#include "mip/binding_table.hpp"

using namespace mipsec;
using namespace std::chrono_literals;

namespace {
const core::TimePoint t0 = core::TimePoint{} + 1h;

mip::Binding make(std::uint32_t home, core::TimePoint expires) {
    mip::Binding b;
    b.home_address = {home};
    b.care_of_address = {home ^ 0xFF000000u};
    b.expires = expires;
    return b;
}
}  // namespace

TEST_CASE("binding table: insert, find, replace, erase") {
    mip::BindingTable t;
    CHECK(t.find({1}) == nullptr);
    t.upsert(make(1, t0 + 10s));
    t.upsert(make(2, t0 + 5s));
    REQUIRE(t.find({1}));
    CHECK(t.find({1})->care_of_address.value == (1u ^ 0xFF000000u));
    CHECK(t.size() == 2);
    CHECK(t.next_expiry() == t0 + 5s);

    auto b = make(2, t0 + 20s);
    b.care_of_address = {77};
    t.upsert(b);  // replace keeps one record per home address
    CHECK(t.size() == 2);
    CHECK(t.find({2})->care_of_address.value == 77);
    CHECK(t.next_expiry() == t0 + 10s);

    CHECK(t.erase({1}));
    CHECK_FALSE(t.erase({1}));
    CHECK(t.find({1}) == nullptr);
    CHECK(t.next_expiry() == t0 + 20s);
    CHECK(t.reschedule({2}, t0 + 3s));
    CHECK(t.next_expiry() == t0 + 3s);
    CHECK_FALSE(t.reschedule({9}, t0));
}

TEST_CASE("binding table: infinite bindings never expire") {
    mip::BindingTable t;
    t.upsert(make(5, core::TimePoint::max()));
    CHECK_FALSE(t.next_expiry());
    CHECK(t.expire(core::TimePoint::max() - 1s, [](const mip::Binding&) {}) == 0);
    CHECK(t.size() == 1);
}

TEST_CASE("binding table: 10k bindings insert, renew, erase and expire in order") {
    mip::BindingTable t;
    std::mt19937 rng(42);
    std::map<std::uint32_t, core::TimePoint> model;
    constexpr std::uint32_t n = 10000;
    for (std::uint32_t i = 0; i < n; ++i) {
        const std::uint32_t home = 0x0A000000u + i * 7;  // sequential-ish addresses
        const auto expiry = t0 + std::chrono::seconds(1 + rng() % 1000);
        t.upsert(make(home, expiry));
        model[home] = expiry;
    }
    CHECK(t.size() == n);
    // Renew a third, erase a tenth.
    for (std::uint32_t i = 0; i < n; i += 3) {
        const std::uint32_t home = 0x0A000000u + i * 7;
        const auto expiry = t0 + std::chrono::seconds(1 + rng() % 1000);
        t.upsert(make(home, expiry));
        model[home] = expiry;
    }
    for (std::uint32_t i = 0; i < n; i += 10) {
        const std::uint32_t home = 0x0A000000u + i * 7;
        CHECK(t.erase({home}));
        model.erase(home);
    }
    CHECK(t.size() == model.size());
    for (const auto& [home, expiry] : model) {
        const auto* b = t.find({home});
        REQUIRE(b);
        CHECK(b->expires == expiry);
    }

    // Step a fake clock: each poll removes exactly the bindings the model says are due.
    core::TimePoint last{};
    std::size_t removed = 0;
    for (int s = 0; s <= 1001; s += 7) {
        const auto now = t0 + std::chrono::seconds(s);
        std::size_t due = 0;
        for (auto it = model.begin(); it != model.end();) {
            if (it->second <= now) {
                ++due;
                it = model.erase(it);
            } else {
                ++it;
            }
        }
        std::size_t got = t.expire(now, [&](const mip::Binding& b) {
            CHECK(b.expires <= now);
            CHECK(b.expires >= last);  // min-heap order
            last = b.expires;
        });
        CHECK(got == due);
        removed += got;
        CHECK(t.size() == model.size());
        if (!model.empty()) {
            core::TimePoint earliest = core::TimePoint::max();
            for (const auto& [home, expiry] : model) earliest = std::min(earliest, expiry);
            CHECK(t.next_expiry() == earliest);
        }
    }
    CHECK(t.empty());
    CHECK(removed > 0);
}

TEST_CASE("binding table: one million bindings stay under 200 bytes each") {
    mip::BindingTable t;
    constexpr std::uint32_t n = 1'000'000;
    for (std::uint32_t i = 0; i < n; ++i) t.upsert(make(0x0A000000u + i, t0 + std::chrono::seconds(i % 3600)));
    CHECK(t.size() == n);
    const double per_binding = static_cast<double>(t.memory_bytes()) / n;
    MESSAGE("bytes per binding at 1M: " << per_binding);
    CHECK(per_binding <= 200.0);
    CHECK(t.find({0x0A000000u + 123456})->expires == t0 + std::chrono::seconds(123456 % 3600));
    std::size_t due = 0;
    for (std::uint32_t i = 0; i < n; ++i) due += (i % 3600) <= 1799;
    CHECK(t.expire(t0 + 1799s, [](const mip::Binding&) {}) == due);
    CHECK(t.size() == n - due);
}
