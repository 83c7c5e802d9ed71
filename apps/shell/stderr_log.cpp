// SPDX-License-Identifier: MIT
#include "apps/shell/stderr_log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace mipsec::shell {

core::Logger make_stderr_logger(core::LogLevel level) {
    return core::Logger("", level, [](core::LogLevel l, std::string_view component, std::string_view message) {
        auto now = std::chrono::system_clock::now();
        auto t = std::chrono::system_clock::to_time_t(now);
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
        std::tm tm{};
        gmtime_r(&t, &tm);
        char stamp[32];
        std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
        std::fprintf(stderr, "%s.%03lld %-5.*s %.*s: %.*s\n", stamp, static_cast<long long>(ms),
                     static_cast<int>(core::to_string(l).size()), core::to_string(l).data(),
                     static_cast<int>(component.size()), component.data(), static_cast<int>(message.size()), message.data());
    });
}

}  // namespace mipsec::shell
