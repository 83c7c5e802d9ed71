// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <nlohmann/json.hpp>

#include "apps/shell/stderr_log.hpp"

using namespace mipsec;
using shell::LogFormat;

namespace {
// 2026-12-06T13:34:46.123Z
std::chrono::system_clock::time_point fixed_time() {
    return std::chrono::system_clock::time_point(std::chrono::seconds(1796564086)) + std::chrono::milliseconds(123);
}
}  // namespace

TEST_CASE("text lines carry a UTC time, the level padded to five and the component") {
    CHECK(shell::format_log_line(LogFormat::Text, core::LogLevel::Info, "a/ipsec.esp_tunnel", "SA up", fixed_time()) ==
          "13:34:46.123 info  a/ipsec.esp_tunnel: SA up\n");
    CHECK(shell::format_log_line(LogFormat::Text, core::LogLevel::Error, "", "bad", fixed_time()) == "13:34:46.123 error bad\n");
}

TEST_CASE("journal lines carry the sd-daemon priority prefix and no timestamp") {
    struct Row {
        core::LogLevel level;
        const char* line;
    } rows[] = {
        {core::LogLevel::Error, "<3>a: m\n"},
        {core::LogLevel::Warn, "<4>a: m\n"},
        {core::LogLevel::Info, "<6>a: m\n"},
        {core::LogLevel::Debug, "<7>a: m\n"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.line);
        CHECK(shell::format_log_line(LogFormat::Journal, row.level, "a", "m", fixed_time()) == row.line);
    }
    // journald files each line on its own: every line of a multi-line message keeps its priority.
    CHECK(shell::format_log_line(LogFormat::Journal, core::LogLevel::Warn, "a", "one\ntwo", fixed_time()) == "<4>a: one\n<4>two\n");
    // The root logger (main's own messages) has no component.
    CHECK(shell::format_log_line(LogFormat::Journal, core::LogLevel::Info, "", "running", fixed_time()) == "<6>running\n");
}

TEST_CASE("json lines are one object with time, level, node, component and message") {
    auto line = shell::format_log_line(LogFormat::Json, core::LogLevel::Warn, "gw/ipsec.vpn_gateway", "peer \"x\" gone", fixed_time());
    REQUIRE(line.back() == '\n');
    CHECK(line.find('\n') == line.size() - 1);
    auto j = nlohmann::json::parse(line);
    CHECK(j["time"] == "2026-12-06T13:34:46.123Z");
    CHECK(j["level"] == "warn");
    CHECK(j["node"] == "gw");
    CHECK(j["component"] == "ipsec.vpn_gateway");
    CHECK(j["message"] == "peer \"x\" gone");

    auto root = nlohmann::json::parse(shell::format_log_line(LogFormat::Json, core::LogLevel::Info, "", "running", fixed_time()));
    CHECK(root["node"] == "");
    CHECK(root["component"] == "");
    // Bytes that are not UTF-8 are replaced, not thrown on.
    auto odd = shell::format_log_line(LogFormat::Json, core::LogLevel::Info, "n", std::string("x\xff" "y"), fixed_time());
    CHECK(nlohmann::json::accept(odd));
}

TEST_CASE("log format names parse") {
    CHECK(shell::parse_log_format("text") == LogFormat::Text);
    CHECK(shell::parse_log_format("journal") == LogFormat::Journal);
    CHECK(shell::parse_log_format("json") == LogFormat::Json);
    CHECK_FALSE(shell::parse_log_format("syslog").has_value());
}

TEST_CASE("JOURNAL_STREAM matches only the file the descriptor is open on") {
    char path[] = "/tmp/mipsec-journal-XXXXXX";
    int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    struct stat st{};
    REQUIRE(::fstat(fd, &st) == 0);
    const auto value = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    CHECK(shell::fd_matches_journal_stream(fd, value.c_str()));
    CHECK_FALSE(shell::fd_matches_journal_stream(fd, nullptr));
    CHECK_FALSE(shell::fd_matches_journal_stream(fd, (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1)).c_str()));
    CHECK_FALSE(shell::fd_matches_journal_stream(fd, (value + "x").c_str()));
    CHECK_FALSE(shell::fd_matches_journal_stream(fd, "garbage"));
    ::close(fd);
    ::unlink(path);
}
