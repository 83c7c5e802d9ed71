// SPDX-License-Identifier: MIT
#include "apps/shell/metrics_listener.hpp"

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "apps/shell/prometheus_text.hpp"

namespace mipsec::shell {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto awaitable_tuple = asio::as_tuple(asio::use_awaitable);

// The exposition format's media type (Prometheus text format 0.0.4).
constexpr std::string_view exposition_content_type = "text/plain; version=0.0.4; charset=utf-8";
// Every code the listener can answer, so each series exists from the start (a rate() over a
// series that appears only with the first error misses that error).
constexpr unsigned answer_codes[] = {200, 400, 404, 405, 431, 500};
// After answering, bytes the client may still have in flight are read and dropped before the
// socket closes: closing with unread input makes the kernel send a reset that can destroy
// the response before the client reads it (RFC 9112 §9.6).
constexpr std::size_t linger_drain_limit = 64 * 1024;

bool is_metrics_target(std::string_view target) { return target == "/metrics" || target.starts_with("/metrics?"); }

// Errors that mean the request itself is malformed, as opposed to the connection ending.
bool is_parse_error(const beast::error_code& ec) {
    return ec.category() == http::make_error_code(http::error::bad_method).category() && ec != http::error::end_of_stream &&
           ec != http::error::partial_message;
}

http::response<http::string_body> plain_response(http::status status, unsigned version, std::string body) {
    http::response<http::string_body> res{status, version};
    res.set(http::field::server, "mipsec");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.keep_alive(false);
    res.body() = std::move(body);
    return res;
}

// One slot of the connection cap, taken on accept (before the connection's coroutine first
// runs, so a burst of accepts cannot overshoot the cap) and given back when it ends, however.
class ConnectionSlot {
public:
    explicit ConnectionSlot(std::size_t& open) : open_(&open) { ++*open_; }
    ConnectionSlot(ConnectionSlot&& other) noexcept : open_(std::exchange(other.open_, nullptr)) {}
    ConnectionSlot& operator=(ConnectionSlot&&) = delete;
    ~ConnectionSlot() {
        if (open_ != nullptr) --*open_;
    }

private:
    std::size_t* open_;
};

}  // namespace

struct MetricsListener::Shared : std::enable_shared_from_this<Shared> {
    Shared(asio::io_context& io, Config c, StatusProvider p) : config(c), provider(std::move(p)), acceptor(io) {
        for (unsigned code : answer_codes) requests[code] = 0;
    }

    asio::awaitable<void> accept_loop() {
        auto self = shared_from_this();
        asio::steady_timer pause(acceptor.get_executor());
        while (acceptor.is_open()) {
            auto [ec, socket] = co_await acceptor.async_accept(awaitable_tuple);
            if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
            if (ec) {
                // Out of descriptors or memory: count it and retry shortly instead of spinning.
                ++accept_errors;
                pause.expires_after(std::chrono::milliseconds(100));
                co_await pause.async_wait(awaitable_tuple);
                continue;
            }
            if (open >= config.max_connections) {
                ++rejected;
                boost::system::error_code ignored;
                socket.close(ignored);
                continue;
            }
            ++accepted;
            asio::co_spawn(acceptor.get_executor(), serve(std::move(socket), ConnectionSlot(open)), asio::detached);
        }
    }

    asio::awaitable<void> serve(tcp::socket socket, ConnectionSlot slot) {
        auto self = shared_from_this();
        const ConnectionSlot held = std::move(slot);
        beast::tcp_stream stream(std::move(socket));
        // One deadline for the connection's whole life: a client cannot stretch it by sending
        // (or reading) a byte at a time. Expiry closes the socket, failing whatever is pending.
        stream.expires_after(config.connection_timeout);

        // The header only: GET and HEAD carry no body, and any other method is refused unread.
        beast::flat_buffer buffer(config.header_limit + 1024);
        http::request_parser<http::empty_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(config.header_limit));
        auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, awaitable_tuple);

        http::response<http::string_body> res;
        bool head = false;
        if (ec == beast::error::timeout) {
            ++timed_out;
            co_return;
        } else if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
            res = plain_response(http::status::request_header_fields_too_large, 11,
                                 "request header larger than " + std::to_string(config.header_limit) + " bytes\n");
        } else if (ec && is_parse_error(ec)) {
            res = plain_response(http::status::bad_request, 11, "malformed request: " + ec.message() + "\n");
        } else if (ec) {
            ++aborted;  // closed or reset by the client before a whole request header arrived
            co_return;
        } else {
            const auto& req = parser.get();
            head = req.method() == http::verb::head;
            if (req.method() != http::verb::get && !head) {
                res = plain_response(http::status::method_not_allowed, req.version(), "only GET and HEAD\n");
                res.set(http::field::allow, "GET, HEAD");
            } else if (!is_metrics_target(req.target())) {
                res = plain_response(http::status::not_found, req.version(), "not found; metrics are at /metrics\n");
            } else {
                try {
                    res = plain_response(http::status::ok, req.version(), prometheus_text(provider()));
                    res.set(http::field::content_type, exposition_content_type);
                } catch (const std::exception& e) {
                    res = plain_response(http::status::internal_server_error, req.version(), std::string("cannot collect status: ") + e.what() + "\n");
                }
            }
        }
        ++requests[res.result_int()];
        res.prepare_payload();

        http::response_serializer<http::string_body> serializer(res);
        // HEAD: the same header, Content-Length included, and no body (RFC 9110 §9.3.2).
        auto [wec, written] = head ? co_await http::async_write_header(stream, serializer, awaitable_tuple)
                                   : co_await http::async_write(stream, serializer, awaitable_tuple);
        if (wec) {
            ++write_errors;
            co_return;
        }
        boost::system::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        char sink[2048];
        for (std::size_t drained = 0; drained < linger_drain_limit;) {
            auto [rec, k] = co_await stream.async_read_some(asio::buffer(sink), awaitable_tuple);
            if (rec) break;
            drained += k;
        }
    }

    Config config;
    StatusProvider provider;
    tcp::acceptor acceptor;
    std::map<unsigned, std::uint64_t> requests;  // by response code
    std::uint64_t accepted = 0;
    std::uint64_t rejected = 0;   // over max_connections, closed on accept
    std::uint64_t timed_out = 0;  // the deadline passed before a whole request header arrived
    std::uint64_t aborted = 0;    // the client closed or reset before a whole request header
    std::uint64_t write_errors = 0;
    std::uint64_t accept_errors = 0;
    std::size_t open = 0;
};

MetricsListener::MetricsListener(asio::io_context& io, Config config, StatusProvider provider)
    : shared_(std::make_shared<Shared>(io, config, std::move(provider))) {
    const auto where = config.listen.to_string();
    const tcp::endpoint endpoint(asio::ip::address_v4(config.listen.address.value), config.listen.port);
    auto& acceptor = shared_->acceptor;
    boost::system::error_code ec;
    acceptor.open(endpoint.protocol(), ec);
    // A restarted node may bind while its predecessor's connections sit in TIME_WAIT; a port
    // another process listens on still fails with "address in use".
    if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec == asio::error::address_in_use)
        throw std::runtime_error("metrics_listen " + where + ": the port is in use by another process; choose another port or stop that process");
    if (ec == boost::system::errc::address_not_available)
        throw std::runtime_error("metrics_listen " + where + ": the address is not on any interface of this host");
    if (ec) throw std::runtime_error("metrics_listen " + where + ": cannot listen: " + ec.message());
    asio::co_spawn(io, shared_->accept_loop(), asio::detached);
}

MetricsListener::~MetricsListener() { stop(); }

void MetricsListener::stop() {
    boost::system::error_code ec;
    shared_->acceptor.close(ec);
}

core::Endpoint MetricsListener::local_endpoint() const {
    boost::system::error_code ec;
    auto e = shared_->acceptor.local_endpoint(ec);
    if (ec) return shared_->config.listen;
    return core::Endpoint{core::Ipv4Address{e.address().to_v4().to_uint()}, e.port()};
}

nlohmann::json MetricsListener::status() const {
    const auto& s = *shared_;
    nlohmann::json requests = nlohmann::json::object();
    for (const auto& [code, count] : s.requests) requests[std::to_string(code)] = count;
    return {
        {"listen", local_endpoint().to_string()},
        {"requests", requests},
        {"connections_accepted", s.accepted},
        {"connections_rejected", s.rejected},
        {"connections_timed_out", s.timed_out},
        {"connections_aborted", s.aborted},
        {"connections_open", s.open},
        {"write_errors", s.write_errors},
        {"accept_errors", s.accept_errors},
        {"max_connections", s.config.max_connections},
    };
}

}  // namespace mipsec::shell
