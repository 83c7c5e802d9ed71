// SPDX-License-Identifier: MIT
#pragma once
// CoreLock: the lock a node's data-path workers take around each batch's pass through the
// stages. Those passes are short (microseconds: headers, sequence numbers, replay windows; the
// AEAD work runs outside, core/aead_offload.hpp), so a worker that finds it taken usually gets
// it within a pass. Sleeping in the kernel instead (a plain std::mutex: futex wait, then a
// wake-up on another core) costs more than the pass itself, and on a virtual machine far more
// (an interprocessor interrupt per hand-off). So a waiter spins a bounded while, pausing the
// core between looks, and only then blocks. Meets BasicLockable (std::lock_guard,
// std::unique_lock).
#include <atomic>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace mipsec::core {

class CoreLock {
public:
    /// Looks at the lock this many times before sleeping on it: about the length of a pass.
    static constexpr int spin_limit = 4000;

    void lock() {
        for (int i = 0; i < spin_limit; ++i) {
            if (!locked_.load(std::memory_order_relaxed) && mutex_.try_lock()) {
                locked_.store(true, std::memory_order_relaxed);
                return;
            }
            pause();
        }
        mutex_.lock();
        locked_.store(true, std::memory_order_relaxed);
    }
    bool try_lock() {
        if (!mutex_.try_lock()) return false;
        locked_.store(true, std::memory_order_relaxed);
        return true;
    }
    void unlock() {
        locked_.store(false, std::memory_order_relaxed);
        mutex_.unlock();
    }

private:
    static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        _mm_pause();
#else
        std::this_thread::yield();
#endif
    }
    std::mutex mutex_;
    // A hint only, read without taking the mutex: spinning on a plain load leaves the cache
    // line shared instead of bouncing it between cores with failed try_lock()s.
    std::atomic<bool> locked_{false};
};

}  // namespace mipsec::core
