// SPDX-License-Identifier: MIT
#pragma once
// ControlServer: a Unix stream socket answering one request line per connection with one
// JSON document ("status" -> the nodes' state and counters). A stale socket file left by a
// crashed instance is replaced; a live one (another instance answering) is an error.
// The file is removed on destruction.
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

namespace mipsec::shell {

class ControlServer {
public:
    using Handler = std::function<nlohmann::json(const std::string& command)>;
    /// Throws std::runtime_error if the path is in use by a live instance or cannot be bound.
    ControlServer(boost::asio::io_context& io, std::string path, Handler handler);
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Client side: sends `command` to the socket at `path`, returns the parsed reply.
/// Throws std::runtime_error with a hint when nothing listens there.
nlohmann::json control_request(const std::string& path, const std::string& command);

}  // namespace mipsec::shell
