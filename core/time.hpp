// SPDX-License-Identifier: MIT
#pragma once
// Cores never read a clock: the shell passes `now` in. One monotonic clock for everything.
#include <chrono>

namespace mipsec::core {
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;
}  // namespace mipsec::core
