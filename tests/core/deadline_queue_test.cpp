// SPDX-License-Identifier: MIT
#include "core/deadline_queue.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

using namespace mipsec::core;

namespace {

const TimePoint t0 = TimePoint{} + std::chrono::hours(1);
TimePoint at(int seconds) { return t0 + std::chrono::seconds(seconds); }

std::vector<std::uint64_t> pop_all_due(DeadlineQueue<std::uint64_t>& q, TimePoint now) {
    std::vector<std::uint64_t> due;
    while (auto k = q.pop_due(now)) due.push_back(*k);
    return due;
}

}  // namespace

TEST_CASE("deadline queue: only keys whose deadline has passed come out, earliest first") {
    DeadlineQueue<std::uint64_t> q;
    CHECK_FALSE(q.next());
    CHECK_FALSE(q.pop_due(at(1000)));
    q.schedule(1, at(30));
    q.schedule(2, at(10));
    q.schedule(3, at(20));
    q.schedule(4, std::nullopt);  // no deadline: not queued
    CHECK(q.size() == 3);
    CHECK_FALSE(q.contains(4));
    CHECK(q.next() == at(10));
    CHECK(pop_all_due(q, at(9)).empty());
    CHECK(pop_all_due(q, at(20)) == std::vector<std::uint64_t>{2, 3});  // 20 <= now fires
    CHECK(q.next() == at(30));
    CHECK(q.size() == 1);
}

TEST_CASE("deadline queue: rescheduling moves a key both ways, cancelling removes it") {
    DeadlineQueue<std::uint64_t> q;
    for (std::uint64_t k = 1; k <= 5; ++k) q.schedule(k, at(static_cast<int>(10 * k)));
    q.schedule(5, at(1));  // earlier
    CHECK(q.next() == at(1));
    q.schedule(5, at(100));  // later again: one entry per key, no stale one left behind
    CHECK(q.size() == 5);
    CHECK(q.next() == at(10));
    CHECK(q.deadline_of(5) == at(100));
    CHECK(q.cancel(1));
    CHECK_FALSE(q.cancel(1));
    q.schedule(3, std::nullopt);
    CHECK(q.size() == 3);
    CHECK(pop_all_due(q, at(99)) == std::vector<std::uint64_t>{2, 4});
    CHECK(pop_all_due(q, at(100)) == std::vector<std::uint64_t>{5});
    CHECK(q.empty());
}

TEST_CASE("deadline queue: many keys, random operations, always the same as a reference model") {
    std::mt19937 rng(7);
    DeadlineQueue<std::uint64_t> q;
    std::map<std::uint64_t, TimePoint> model;
    TimePoint now = t0;
    for (int step = 0; step < 50000; ++step) {
        const std::uint64_t key = rng() % 2000;
        switch (rng() % 4) {
            case 0:
            case 1: {
                const auto t = now + std::chrono::milliseconds(rng() % 100000);
                q.schedule(key, t);
                model[key] = t;
                break;
            }
            case 2:
                CHECK(q.cancel(key) == (model.erase(key) == 1));
                break;
            case 3: {
                now += std::chrono::milliseconds(rng() % 2000);
                std::vector<std::uint64_t> expected;
                for (const auto& [k, t] : model)
                    if (t <= now) expected.push_back(k);
                auto fired = pop_all_due(q, now);
                std::sort(fired.begin(), fired.end());
                REQUIRE(fired == expected);
                for (auto k : expected) model.erase(k);
                break;
            }
        }
        REQUIRE(q.size() == model.size());
        std::optional<TimePoint> earliest;
        for (const auto& [k, t] : model)
            if (!earliest || t < *earliest) earliest = t;
        REQUIRE(q.next() == earliest);
    }
}
