// SPDX-License-Identifier: MIT
#pragma once
// ServiceNotifier: the systemd service notification protocol (sd_notify(3)), spoken directly:
// one AF_UNIX SOCK_DGRAM datagram of newline-separated VAR=value assignments to the socket
// named by $NOTIFY_SOCKET ("@name" is the abstract namespace). With no $NOTIFY_SOCKET (not
// started by systemd with Type=notify) every call does nothing.
// WatchdogPinger sends WATCHDOG=1 from a timer on the io_context, at half the interval
// systemd asked for in $WATCHDOG_USEC, so a loop that stops turning is noticed and restarted.
// Not thread-safe: one io_context thread.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "core/result.hpp"

namespace mipsec::shell {

class ServiceNotifier {
public:
    /// Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID. The watchdog is on only when
    /// WATCHDOG_USEC is a positive number and WATCHDOG_PID, if set, is this process.
    static ServiceNotifier from_environment();
    /// An empty socket path disables notification.
    ServiceNotifier(std::string socket_path, std::optional<std::chrono::microseconds> watchdog_interval);

    bool enabled() const noexcept { return !socket_path_.empty(); }
    const std::string& socket_path() const noexcept { return socket_path_; }
    std::optional<std::chrono::microseconds> watchdog_interval() const noexcept { return watchdog_interval_; }

    /// Sends `state` ("READY=1\nSTATUS=...") as one datagram. Success when disabled.
    core::Result<void> notify(std::string_view state) const;

private:
    std::string socket_path_;
    std::optional<std::chrono::microseconds> watchdog_interval_;
};

class WatchdogPinger {
public:
    /// Does nothing unless the notifier has a watchdog interval; the notifier must outlive it.
    WatchdogPinger(boost::asio::io_context& io, const ServiceNotifier& notifier);
    WatchdogPinger(const WatchdogPinger&) = delete;
    WatchdogPinger& operator=(const WatchdogPinger&) = delete;
    void start();
    void stop();
    std::chrono::microseconds period() const noexcept { return period_; }
    /// Pings the socket refused (systemd gone, or the socket replaced).
    std::uint64_t failures() const noexcept { return failures_; }

private:
    void arm();
    const ServiceNotifier& notifier_;
    boost::asio::steady_timer timer_;
    std::chrono::microseconds period_{0};
    std::uint64_t failures_ = 0;
    bool running_ = false;
};

}  // namespace mipsec::shell
