// SPDX-License-Identifier: MIT
#include "core/logger.hpp"

#include <algorithm>

namespace mipsec::core {

std::string_view to_string(LogLevel l) noexcept {
    switch (l) {
        case LogLevel::Debug: return "debug";
        case LogLevel::Info: return "info";
        case LogLevel::Warn: return "warn";
        case LogLevel::Error: return "error";
        case LogLevel::Off: return "off";
    }
    return "?";
}

bool parse_log_level(std::string_view text, LogLevel& out) noexcept {
    for (auto l : {LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error, LogLevel::Off}) {
        if (text == to_string(l)) {
            out = l;
            return true;
        }
    }
    return false;
}

int syslog_priority(LogLevel l) noexcept {
    switch (l) {
        case LogLevel::Error: return 3;  // LOG_ERR
        case LogLevel::Warn: return 4;   // LOG_WARNING
        case LogLevel::Info: return 6;   // LOG_INFO
        case LogLevel::Debug:
        case LogLevel::Off: return 7;    // LOG_DEBUG
    }
    return 7;
}

Logger::Logger(std::string component, LogLevel level, Sink sink)
    : component_(std::move(component)),
      level_(std::make_shared<LogLevel>(level)),
      sink_(std::make_shared<const Sink>(std::move(sink))) {}

Logger Logger::child(std::string_view name) const {
    Logger c = *this;
    c.component_ = component_.empty() ? std::string(name) : component_ + "/" + std::string(name);
    c.tokens_ = burst;
    c.suppressed_ = 0;
    return c;
}

void Logger::write(LogLevel l, std::string_view message) const {
    if (*sink_) (*sink_)(l, component_, message);
}

bool Logger::admit(TimePoint now) noexcept {
    if (last_refill_ == TimePoint{}) last_refill_ = now;
    auto elapsed = std::chrono::duration<double>(now - last_refill_).count();
    if (elapsed > 0) {
        tokens_ = std::min(burst, tokens_ + elapsed);
        last_refill_ = now;
    }
    if (tokens_ >= 1.0) {
        tokens_ -= 1.0;
        return true;
    }
    ++suppressed_;
    return false;
}

Logger null_logger() { return Logger("", LogLevel::Off, nullptr); }

}  // namespace mipsec::core
