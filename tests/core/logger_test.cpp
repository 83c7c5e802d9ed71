// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "core/logger.hpp"

using namespace mipsec::core;

TEST_CASE("levels filter and children share sink and level") {
    std::vector<std::string> lines;
    Logger root("n", LogLevel::Info, [&](LogLevel, std::string_view c, std::string_view m) { lines.push_back(std::string(c) + ":" + std::string(m)); });
    auto child = root.child("ipsec.esp_tunnel");
    child.debug("hidden");
    child.info("spi ", 0x100, " up");
    CHECK(lines == std::vector<std::string>{"n/ipsec.esp_tunnel:spi 256 up"});
    root.set_level(LogLevel::Debug);
    child.debug("now visible");
    CHECK(lines.size() == 2);
}

TEST_CASE("limited() passes a burst, then one per second, and reports what it suppressed") {
    std::vector<std::string> lines;
    Logger log("x", LogLevel::Debug, [&](LogLevel, std::string_view, std::string_view m) { lines.emplace_back(m); });
    TimePoint t{};
    t += std::chrono::hours(1);
    for (int i = 0; i < 100; ++i) log.limited(LogLevel::Warn, t, "bad packet ", i);
    CHECK(lines.size() == 10);
    t += std::chrono::milliseconds(1500);
    log.limited(LogLevel::Warn, t, "bad packet again");
    REQUIRE(lines.size() == 11);
    CHECK(lines.back() == "bad packet again (90 similar messages suppressed)");
}

TEST_CASE("log level names round-trip") {
    for (auto l : {LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error, LogLevel::Off}) {
        LogLevel parsed{};
        CHECK(parse_log_level(to_string(l), parsed));
        CHECK(parsed == l);
    }
    LogLevel parsed{};
    CHECK_FALSE(parse_log_level("verbose", parsed));
}

TEST_CASE("syslog priorities follow sd-daemon(3)") {
    CHECK(syslog_priority(LogLevel::Error) == 3);
    CHECK(syslog_priority(LogLevel::Warn) == 4);
    CHECK(syslog_priority(LogLevel::Info) == 6);
    CHECK(syslog_priority(LogLevel::Debug) == 7);
}
