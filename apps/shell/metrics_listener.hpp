// SPDX-License-Identifier: MIT
#pragma once
// MetricsListener: an HTTP/1.1 endpoint in the running node for Prometheus to scrape.
// GET (or HEAD) /metrics answers 200 with the status JSON rendered by prometheus_text() in
// the text exposition format 0.0.4; any other path is 404, any other method 405 (RFC 9110
// §15.5.6: with an Allow header), a request Beast cannot parse 400, one whose header exceeds
// Config::header_limit 431 (RFC 6585 §5). One request per connection ("Connection: close").
//
// Bad input never reaches the node: each connection has one deadline for its whole life
// (request, response and closing), so a client that trickles bytes is cut off; at most
// Config::max_connections are open at once and any more are closed on accept. Every
// connection is counted once: by the response code it got, or as rejected, timed out or
// aborted (a response that then fails to go out is counted again as a write error); status()
// reports the counts, which `mipsec run` puts into the status JSON as "metrics_listener".
//
// Runs on the caller's io_context as C++20 coroutines; not thread-safe (one io thread, like
// the rest of the shell). Counters outlive the listener while connections finish.
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "core/address.hpp"

namespace mipsec::shell {

class MetricsListener {
public:
    struct Config {
        core::Endpoint listen;  // port 0: the kernel picks one (tests); see local_endpoint()
        std::size_t header_limit = 8192;
        std::chrono::milliseconds connection_timeout{5000};
        std::size_t max_connections = 16;
    };
    /// The document to render: {"nodes": [...], ...} as the control socket's "status" answers.
    using StatusProvider = std::function<nlohmann::json()>;

    /// Binds and listens at once. Throws std::runtime_error naming the address when it cannot
    /// (port in use, address not on this host, permission).
    MetricsListener(boost::asio::io_context& io, Config config, StatusProvider provider);
    ~MetricsListener();
    MetricsListener(const MetricsListener&) = delete;
    MetricsListener& operator=(const MetricsListener&) = delete;

    /// Stops accepting; connections in progress end at their deadline or sooner.
    void stop();
    core::Endpoint local_endpoint() const;
    /// {"listen": "127.0.0.1:9101", "requests": {"200": n, ...}, "connections_accepted": n, ...}
    nlohmann::json status() const;

private:
    struct Shared;
    std::shared_ptr<Shared> shared_;
};

}  // namespace mipsec::shell
