// SPDX-License-Identifier: MIT
#include "apps/shell/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace mipsec::shell {

namespace {

std::optional<unsigned long long> parse_number(const char* text) {
    if (text == nullptr) return std::nullopt;
    std::string_view s(text);
    unsigned long long v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

// Closes the socket on every return path.
struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

}  // namespace

ServiceNotifier ServiceNotifier::from_environment() {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    std::optional<std::chrono::microseconds> watchdog;
    const auto usec = parse_number(std::getenv("WATCHDOG_USEC"));
    const char* pid_text = std::getenv("WATCHDOG_PID");
    const auto pid = parse_number(pid_text);
    // sd_watchdog_enabled(3): WATCHDOG_PID names the process meant to ping; a child that
    // inherited the environment must stay silent.
    const bool ours = pid_text == nullptr || (pid && *pid == static_cast<unsigned long long>(::getpid()));
    if (usec && *usec > 0 && ours) watchdog = std::chrono::microseconds(*usec);
    return ServiceNotifier(socket ? socket : "", watchdog);
}

ServiceNotifier::ServiceNotifier(std::string socket_path, std::optional<std::chrono::microseconds> watchdog_interval)
    : socket_path_(std::move(socket_path)), watchdog_interval_(watchdog_interval) {}

core::Result<void> ServiceNotifier::notify(std::string_view state) const {
    if (!enabled()) return {};
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    // systemd accepts an absolute path or "@" for the abstract namespace (leading NUL, the
    // address length counts exactly the name's bytes).
    if ((socket_path_[0] != '/' && socket_path_[0] != '@') || socket_path_.size() >= sizeof addr.sun_path)
        return core::Errc::InvalidArgument;
    std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());
    if (socket_path_[0] == '@') addr.sun_path[0] = '\0';
    const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path_.size() + (socket_path_[0] == '/' ? 1 : 0));

    Fd fd{::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    if (fd.fd < 0) return std::error_code(errno, std::system_category());
    const auto sent = ::sendto(fd.fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&addr), addr_len);
    if (sent < 0) return std::error_code(errno, std::system_category());
    return {};
}

WatchdogPinger::WatchdogPinger(boost::asio::io_context& io, const ServiceNotifier& notifier) : notifier_(notifier), timer_(io) {
    if (notifier_.enabled() && notifier_.watchdog_interval()) period_ = *notifier_.watchdog_interval() / 2;
}

void WatchdogPinger::start() {
    if (period_.count() == 0 || running_) return;
    running_ = true;
    arm();
}

void WatchdogPinger::stop() {
    running_ = false;
    timer_.cancel();
}

// The ping is sent from the io loop itself: if a reader or the timer loop stops returning
// to it, the pings stop and systemd restarts the service (WatchdogSec=, systemd.service(5)).
void WatchdogPinger::arm() {
    if (!notifier_.notify("WATCHDOG=1")) ++failures_;
    timer_.expires_after(period_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
        if (ec || !running_) return;
        arm();
    });
}

}  // namespace mipsec::shell
