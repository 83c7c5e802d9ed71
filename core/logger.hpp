// SPDX-License-Identifier: MIT
#pragma once
// Logger: levels, a component name and a sink chosen by the shell (stderr in `mipsec run`,
// a vector in tests). No global instance: each pipeline and stage gets its own child, so two
// stacks in one process never share state. limited() is for the packet path: a token bucket
// of `burst` messages refilled at one per second; the count of suppressed messages is
// reported with the next one that passes. Not thread-safe.
#include <cstdint>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>

#include "core/time.hpp"

namespace mipsec::core {

enum class LogLevel : std::uint8_t { Debug, Info, Warn, Error, Off };
std::string_view to_string(LogLevel l) noexcept;
/// "debug", "info", "warn", "error", "off"; false if unknown.
bool parse_log_level(std::string_view text, LogLevel& out) noexcept;
/// The syslog priority journald files a line under (sd-daemon(3) "<N>" prefixes):
/// error 3, warn 4, info 6, debug 7.
int syslog_priority(LogLevel l) noexcept;

class Logger {
public:
    using Sink = std::function<void(LogLevel, std::string_view component, std::string_view message)>;

    Logger(std::string component, LogLevel level, Sink sink);
    /// A logger for a sub-component ("a/ipsec.esp_tunnel") sharing sink and level.
    Logger child(std::string_view name) const;

    bool enabled(LogLevel l) const noexcept { return l >= *level_ && *level_ != LogLevel::Off; }
    void set_level(LogLevel l) noexcept { *level_ = l; }
    LogLevel level() const noexcept { return *level_; }
    const std::string& component() const noexcept { return component_; }

    void write(LogLevel l, std::string_view message) const;
    template <class... Parts>
    void debug(const Parts&... parts) const { emit(LogLevel::Debug, parts...); }
    template <class... Parts>
    void info(const Parts&... parts) const { emit(LogLevel::Info, parts...); }
    template <class... Parts>
    void warn(const Parts&... parts) const { emit(LogLevel::Warn, parts...); }
    template <class... Parts>
    void error(const Parts&... parts) const { emit(LogLevel::Error, parts...); }

    /// Rate-limited logging for the packet path; formats nothing when suppressed.
    template <class... Parts>
    void limited(LogLevel l, TimePoint now, const Parts&... parts) {
        if (!enabled(l) || !admit(now)) return;
        std::ostringstream os;
        (os << ... << parts);
        if (suppressed_ != 0) {
            os << " (" << suppressed_ << " similar messages suppressed)";
            suppressed_ = 0;
        }
        write(l, os.str());
    }

private:
    template <class... Parts>
    void emit(LogLevel l, const Parts&... parts) const {
        if (!enabled(l)) return;
        std::ostringstream os;
        (os << ... << parts);
        write(l, os.str());
    }
    bool admit(TimePoint now) noexcept;

    static constexpr double burst = 10.0;
    std::string component_;
    std::shared_ptr<LogLevel> level_;  // shared with children so `set_level` reaches all
    std::shared_ptr<const Sink> sink_;
    double tokens_ = burst;
    TimePoint last_refill_{};
    std::uint64_t suppressed_ = 0;
};

/// A logger that discards everything; for tests and tools.
Logger null_logger();

}  // namespace mipsec::core
