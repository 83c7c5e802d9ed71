// SPDX-License-Identifier: MIT
#include "apps/shell/stderr_log.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>

#include <nlohmann/json.hpp>

namespace mipsec::shell {

std::optional<LogFormat> parse_log_format(std::string_view text) noexcept {
    if (text == "text") return LogFormat::Text;
    if (text == "journal") return LogFormat::Journal;
    if (text == "json") return LogFormat::Json;
    return std::nullopt;
}

namespace {
std::string utc_stamp(std::chrono::system_clock::time_point now, const char* pattern) {
    auto t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    if (ms < 0) ms += 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[40];
    std::size_t n = std::strftime(stamp, sizeof stamp, pattern, &tm);
    char millis[8];
    std::snprintf(millis, sizeof millis, ".%03lld", static_cast<long long>(ms));
    return std::string(stamp, n) + millis;
}
}  // namespace

std::string format_log_line(LogFormat format, core::LogLevel level, std::string_view component, std::string_view message,
                            std::chrono::system_clock::time_point now) {
    const auto level_name = core::to_string(level);
    std::string line;
    switch (format) {
        case LogFormat::Text: {
            line = utc_stamp(now, "%H:%M:%S") + " " + std::string(level_name);
            line.append(level_name.size() < 5 ? 5 - level_name.size() : 0, ' ');
            line += " ";
            if (!component.empty()) line += std::string(component) + ": ";  // the root logger has none
            line += message;
            break;
        }
        case LogFormat::Journal: {
            // journald reads the prefix per line, so a line break inside a message gets one too.
            const std::string prefix = "<" + std::to_string(core::syslog_priority(level)) + ">";
            line = prefix + (component.empty() ? std::string() : std::string(component) + ": ");
            for (char c : message) {
                line += c;
                if (c == '\n') line += prefix;
            }
            break;
        }
        case LogFormat::Json: {
            auto slash = component.find('/');
            nlohmann::ordered_json j;
            j["time"] = utc_stamp(now, "%Y-%m-%dT%H:%M:%S") + "Z";
            j["level"] = level_name;
            j["node"] = std::string(slash == std::string_view::npos ? component : component.substr(0, slash));
            j["component"] = std::string(slash == std::string_view::npos ? std::string_view{} : component.substr(slash + 1));
            j["message"] = std::string(message);
            // Messages may quote bytes from the network: replace invalid UTF-8 rather than throw.
            line = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
            break;
        }
    }
    line += '\n';
    return line;
}

bool fd_matches_journal_stream(int fd, const char* journal_stream) {
    if (journal_stream == nullptr) return false;
    unsigned long long dev = 0, ino = 0;
    char tail = 0;
    if (std::sscanf(journal_stream, "%llu:%llu%c", &dev, &ino, &tail) != 2) return false;
    struct stat st{};
    if (::fstat(fd, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

bool stderr_is_journal() { return fd_matches_journal_stream(2, std::getenv("JOURNAL_STREAM")); }

core::Logger make_stderr_logger(core::LogLevel level, std::optional<LogFormat> format) {
    const LogFormat f = format.value_or(stderr_is_journal() ? LogFormat::Journal : LogFormat::Text);
    return core::Logger("", level, [f](core::LogLevel l, std::string_view component, std::string_view message) {
        const auto line = format_log_line(f, l, component, message, std::chrono::system_clock::now());
        std::fwrite(line.data(), 1, line.size(), stderr);
    });
}

}  // namespace mipsec::shell
