// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <mutex>
#include <thread>
#include <vector>

#include "core/core_lock.hpp"

TEST_CASE("CoreLock: mutual exclusion under contention, spinning and sleeping waiters alike") {
    mipsec::core::CoreLock lock;
    // Not atomic on purpose: only the lock keeps the increments whole (ThreadSanitizer sees a
    // race here if it does not).
    std::uint64_t counter = 0;
    constexpr int per_thread = 200000;
    auto work = [&](bool long_holds) {
        for (int i = 0; i < per_thread; ++i) {
            std::lock_guard g(lock);
            ++counter;
            // Now and then a hold longer than the spin, so waiters go to sleep in the mutex too.
            if (long_holds && i % 20000 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) threads.emplace_back(work, t == 0);
    for (auto& t : threads) t.join();
    CHECK(counter == 3ull * per_thread);
    CHECK(lock.try_lock());
    CHECK_FALSE(lock.try_lock());
    lock.unlock();
}
