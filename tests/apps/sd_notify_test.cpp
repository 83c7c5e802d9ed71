// SPDX-License-Identifier: MIT
// The sd_notify(3) datagram protocol against a socket the test listens on, path and abstract
// namespace, and the watchdog timer driven by a real io_context.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "apps/shell/sd_notify.hpp"

using namespace mipsec;
using namespace std::chrono_literals;

namespace {

// A datagram socket bound to a path or, for "@name", an abstract name.
class Listener {
public:
    explicit Listener(std::string name) : name_(std::move(name)) {
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, name_.data(), name_.size());
        if (name_[0] == '@') addr.sun_path[0] = '\0';
        const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size() + (name_[0] == '/' ? 1 : 0));
        REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&addr), len) == 0);
    }
    ~Listener() {
        ::close(fd_);
        if (name_[0] == '/') ::unlink(name_.c_str());
    }
    std::vector<std::string> drain() {
        std::vector<std::string> out;
        char buf[4096];
        for (;;) {
            const auto n = ::recv(fd_, buf, sizeof buf, 0);
            if (n < 0) break;
            out.emplace_back(buf, static_cast<std::size_t>(n));
        }
        return out;
    }

private:
    std::string name_;
    int fd_ = -1;
};

std::string unique(const char* prefix) { return std::string(prefix) + std::to_string(::getpid()); }

struct EnvRestore {
    ~EnvRestore() {
        ::unsetenv("NOTIFY_SOCKET");
        ::unsetenv("WATCHDOG_USEC");
        ::unsetenv("WATCHDOG_PID");
    }
};

}  // namespace

TEST_CASE("sd_notify: one datagram per call to a path socket, the state verbatim") {
    const auto path = "/tmp/" + unique("mipsec-notify-test-");
    Listener listener(path);
    shell::ServiceNotifier n(path, std::nullopt);
    CHECK(n.enabled());
    CHECK(n.notify("READY=1\nSTATUS=running 1 node(s)"));
    CHECK(n.notify("STOPPING=1"));
    const auto got = listener.drain();
    REQUIRE(got.size() == 2);
    CHECK(got[0] == "READY=1\nSTATUS=running 1 node(s)");
    CHECK(got[1] == "STOPPING=1");
}

TEST_CASE("sd_notify: '@' names the abstract namespace") {
    const auto name = "@" + unique("mipsec-notify-abstract-");
    Listener listener(name);
    shell::ServiceNotifier n(name, std::nullopt);
    CHECK(n.notify("READY=1"));
    const auto got = listener.drain();
    REQUIRE(got.size() == 1);
    CHECK(got[0] == "READY=1");
}

TEST_CASE("sd_notify: no socket means nothing to do; a bad or absent socket is an error") {
    shell::ServiceNotifier off("", std::chrono::microseconds(1000));
    CHECK_FALSE(off.enabled());
    CHECK(off.notify("READY=1"));
    CHECK_FALSE(shell::ServiceNotifier("relative/path", std::nullopt).notify("READY=1"));
    CHECK_FALSE(shell::ServiceNotifier("/tmp/" + unique("mipsec-notify-nobody-"), std::nullopt).notify("READY=1"));
}

TEST_CASE("sd_notify: the environment, and WATCHDOG_PID of another process turns the watchdog off") {
    EnvRestore restore;
    ::unsetenv("NOTIFY_SOCKET");
    CHECK_FALSE(shell::ServiceNotifier::from_environment().enabled());

    ::setenv("NOTIFY_SOCKET", "@x", 1);
    ::setenv("WATCHDOG_USEC", "30000000", 1);
    auto n = shell::ServiceNotifier::from_environment();
    CHECK(n.socket_path() == "@x");
    REQUIRE(n.watchdog_interval());
    CHECK(*n.watchdog_interval() == 30s);

    ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
    CHECK(shell::ServiceNotifier::from_environment().watchdog_interval());
    ::setenv("WATCHDOG_PID", std::to_string(::getpid() + 1).c_str(), 1);
    CHECK_FALSE(shell::ServiceNotifier::from_environment().watchdog_interval());
    ::unsetenv("WATCHDOG_PID");
    for (const char* bad : {"0", "", "12x", "-5"}) {
        CAPTURE(bad);
        ::setenv("WATCHDOG_USEC", bad, 1);
        CHECK_FALSE(shell::ServiceNotifier::from_environment().watchdog_interval());
    }
}

TEST_CASE("sd_notify: the watchdog pings at half the interval from the io loop, and stops") {
    const auto path = "/tmp/" + unique("mipsec-notify-watchdog-");
    Listener listener(path);
    shell::ServiceNotifier n(path, std::chrono::microseconds(40ms));
    boost::asio::io_context io;
    shell::WatchdogPinger pinger(io, n);
    CHECK(pinger.period() == 20ms);
    pinger.start();
    io.run_for(200ms);  // pings at 0, 20, ... 200 ms at most; a loaded machine only delays them
    auto got = listener.drain();
    CHECK(got.size() >= 3);
    CHECK(got.size() <= 11);
    for (const auto& g : got) CHECK(g == "WATCHDOG=1");
    CHECK(pinger.failures() == 0);

    pinger.stop();
    io.restart();
    io.run_for(60ms);
    CHECK(listener.drain().empty());
}

TEST_CASE("sd_notify: no watchdog interval, no pings") {
    const auto path = "/tmp/" + unique("mipsec-notify-nowatchdog-");
    Listener listener(path);
    shell::ServiceNotifier n(path, std::nullopt);
    boost::asio::io_context io;
    shell::WatchdogPinger pinger(io, n);
    pinger.start();
    io.run_for(30ms);
    CHECK(listener.drain().empty());
}
