// SPDX-License-Identifier: MIT
#pragma once
// The root logger of `mipsec run`: one line per message on stderr, in the shape the host
// expects. Text for a terminal; under systemd, journald's "<N>" priority prefixes
// (sd-daemon(3)) without our own timestamp, since the journal stamps each line; JSON, one
// object per line, for log shippers.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "core/logger.hpp"

namespace mipsec::shell {

enum class LogFormat : std::uint8_t { Text, Journal, Json };
/// "text", "journal", "json"; nullopt if unknown.
std::optional<LogFormat> parse_log_format(std::string_view text) noexcept;

/// One log line with its newline. `component` is the logger's path, "node/stage" (the
/// first part is the node; the root logger's is empty).
///   text:    "13:34:46.123 info  a/ipsec.esp_tunnel: SA up" (no "component: " for the root logger)
///   journal: "<6>a/ipsec.esp_tunnel: SA up" (each line of a multi-line message prefixed)
///   json:    {"time":"2026-12-06T13:34:46.123Z","level":"info","node":"a","component":"ipsec.esp_tunnel","message":"SA up"}
std::string format_log_line(LogFormat format, core::LogLevel level, std::string_view component, std::string_view message,
                            std::chrono::system_clock::time_point now);

/// True when stderr is connected to the journal: $JOURNAL_STREAM ("device:inode", set by
/// systemd for StandardError=journal) names the file stderr is open on. A child that
/// inherited the variable but writes elsewhere does not match.
bool stderr_is_journal();
/// `journal_stream` is the variable's value (null if unset); compared against fd `fd`.
bool fd_matches_journal_stream(int fd, const char* journal_stream);

/// A root logger writing format_log_line() lines to stderr. Without an explicit format:
/// journal when stderr_is_journal(), else text.
core::Logger make_stderr_logger(core::LogLevel level, std::optional<LogFormat> format = std::nullopt);

}  // namespace mipsec::shell
