// SPDX-License-Identifier: MIT
// The HTTP metrics listener on 127.0.0.1 with a port the kernel picks, scraped by a plain
// blocking socket client from the test thread while the listener's io_context runs in its
// own thread: the body is exactly prometheus_text() of what the provider returned; wrong
// paths, methods and garbage get 404/405/400/431; a trickling client is cut off; connections
// over the cap are closed at once; every outcome is counted. Also the "metrics_listen" key.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "apps/shell/metrics_listener.hpp"
#include "apps/shell/node_config.hpp"
#include "apps/shell/prometheus_text.hpp"

using namespace mipsec;
using namespace std::chrono_literals;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

const core::Endpoint any_loopback_port{core::Ipv4Address::from_octets(127, 0, 0, 1), 0};

json sample_status() {
    return json::parse(R"({
      "version": "test",
      "nodes": [{
        "name": "a", "uptime_s": 12,
        "tun": {"name": "mip0", "mtu": 1480, "rx_packets": 7, "tx_packets": 5, "rx_errors": 0, "tx_errors": 0},
        "transport": {"sockets": [{"raw_protocol": 4, "rx_packets": 5, "tx_packets": 7, "rx_errors": 0, "tx_errors": 0}], "unroutable": 0},
        "pool": {"buffers": 4096, "available": 4090, "exhausted": 0, "backpressure_pauses": 0},
        "pipeline": [{"type": "mip.ipip", "encapsulated": 7, "decapsulated": 5, "not_mine": 0, "consumed": 0,
                      "control_sent": 0, "dropped": 1, "drops": {"malformed": 1}}]
      }]
    })");
}

// A listener whose io_context runs on its own thread; status() is read on that thread.
class RunningListener {
public:
    RunningListener(shell::MetricsListener::Config config, shell::MetricsListener::StatusProvider provider)
        : listener_(io_, config, std::move(provider)), port_(listener_.local_endpoint().port), thread_([this] { io_.run(); }) {}
    ~RunningListener() {
        boost::asio::post(io_, [this] {
            listener_.stop();
            io_.stop();
        });
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    json status() {
        std::promise<json> result;
        boost::asio::post(io_, [&] { result.set_value(listener_.status()); });
        return result.get_future().get();
    }
    /// Waits up to 3 s for the listener's status to satisfy `predicate`.
    bool wait_for(const std::function<bool(const json&)>& predicate) {
        for (auto deadline = Clock::now() + 3s; Clock::now() < deadline; std::this_thread::sleep_for(10ms))
            if (predicate(status())) return true;
        return false;
    }

private:
    boost::asio::io_context io_{1};
    shell::MetricsListener listener_;
    std::uint16_t port_;
    std::thread thread_;
};

// A blocking TCP client; every read gives up after 5 s so a broken listener fails the test
// instead of hanging it.
class Client {
public:
    explicit Client(std::uint16_t port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        timeval tv{5, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    }
    ~Client() { close(); }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /// False once the peer has closed (EPIPE/ECONNRESET); never raises SIGPIPE.
    bool send(const std::string& bytes) {
        std::size_t done = 0;
        while (done < bytes.size()) {
            auto n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
            if (n <= 0) return false;
            done += static_cast<std::size_t>(n);
        }
        return true;
    }
    /// Everything until the peer closes.
    std::string read_all() {
        std::string out;
        char buf[4096];
        for (;;) {
            auto n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) return out;
            out.append(buf, static_cast<std::size_t>(n));
        }
    }
    /// True if the peer closed (or reset) the connection within `wait`, with nothing to read.
    bool closed_within(std::chrono::milliseconds wait) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(wait.count())) != 1) return false;
        char c;
        return ::recv(fd_, &c, 1, MSG_DONTWAIT) <= 0;
    }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_ = -1;
};

struct Response {
    int code = 0;
    std::string head;  // status line and header fields
    std::string body;
    std::string header(const std::string& name) const {
        auto at = head.find("\r\n" + name + ": ");
        if (at == std::string::npos) return "";
        at += name.size() + 4;
        return head.substr(at, head.find("\r\n", at) - at);
    }
};

Response parse_response(const std::string& raw) {
    Response r;
    auto end = raw.find("\r\n\r\n");
    if (raw.size() < 12 || !raw.starts_with("HTTP/1.") || end == std::string::npos) return r;
    r.code = std::stoi(raw.substr(9, 3));
    r.head = raw.substr(0, end + 2);
    r.body = raw.substr(end + 4);
    return r;
}

Response exchange(std::uint16_t port, const std::string& request) {
    Client c(port);
    c.send(request);
    return parse_response(c.read_all());
}

const std::string scrape = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n";

}  // namespace

TEST_CASE("GET /metrics answers the Prometheus rendering of the provider's status; HEAD the same header") {
    const auto status = sample_status();
    int provided = 0;
    RunningListener l({.listen = any_loopback_port}, [&] {
        ++provided;
        return status;
    });
    REQUIRE(l.port() != 0);

    auto r = exchange(l.port(), scrape);
    CHECK(r.code == 200);
    CHECK(r.body == shell::prometheus_text(status));
    CHECK(r.body.find("mipsec_stage_drops_total{node=\"a\",stage=\"0\",type=\"mip.ipip\",reason=\"malformed\"} 1\n") != std::string::npos);
    CHECK(r.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
    CHECK(r.header("Content-Length") == std::to_string(r.body.size()));
    CHECK(r.header("Connection") == "close");

    auto h = exchange(l.port(), "HEAD /metrics HTTP/1.1\r\n\r\n");
    CHECK(h.code == 200);
    CHECK(h.body.empty());
    CHECK(h.header("Content-Length") == std::to_string(r.body.size()));

    auto q = exchange(l.port(), "GET /metrics?name[]=x HTTP/1.0\r\n\r\n");
    CHECK(q.code == 200);
    CHECK(q.head.starts_with("HTTP/1.0 200"));

    REQUIRE(l.wait_for([](const json& s) { return s.at("connections_open") == 0; }));
    const auto s = l.status();
    CHECK(provided == 3);
    CHECK(s.at("requests").at("200") == 3);
    CHECK(s.at("requests").at("404") == 0);  // every code's series exists from the start
    CHECK(s.at("connections_accepted") == 3);
    CHECK(s.at("listen") == "127.0.0.1:" + std::to_string(l.port()));
}

TEST_CASE("wrong paths and methods, garbage and oversized headers get 404, 405, 400 and 431, each counted") {
    RunningListener l({.listen = any_loopback_port, .header_limit = 1024}, [] { return sample_status(); });
    struct Row {
        const char* name;
        std::string request;
        int code;
    };
    const Row rows[] = {
        {"root", "GET / HTTP/1.1\r\n\r\n", 404},
        {"a longer path", "GET /metricsx HTTP/1.1\r\n\r\n", 404},
        {"a path below", "GET /metrics/x HTTP/1.1\r\n\r\n", 404},
        {"POST", "POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 405},
        {"an unknown method", "BREW /metrics HTTP/1.1\r\n\r\n", 405},
        {"a TLS ClientHello", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15), 400},
        {"binary zeros", std::string(64, '\0') + "\r\n\r\n", 400},
        {"HTTP/0.9 request line", "GET /metrics\r\n\r\n", 400},
        {"unknown version", "GET /metrics HTTP/7.2\r\n\r\n", 400},
        {"field without colon", "GET /metrics HTTP/1.1\r\nnocolon\r\n\r\n", 400},
        {"bad Content-Length", "GET /metrics HTTP/1.1\r\nContent-Length: lots\r\n\r\n", 400},
        {"spaces in the target", "GET /me trics HTTP/1.1\r\n\r\n", 400},
        {"header over the limit", "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(2000, 'a') + "\r\n\r\n", 431},
        {"a target over the limit", "GET /metrics?" + std::string(4000, 'b') + " HTTP/1.1\r\n\r\n", 431},
    };
    std::map<int, int> expected;
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto r = exchange(l.port(), row.request);
        CHECK(r.code == row.code);
        if (row.code == 405) CHECK(r.header("Allow") == "GET, HEAD");
        ++expected[row.code];
    }
    // The listener still serves after all that.
    CHECK(exchange(l.port(), scrape).code == 200);
    ++expected[200];

    REQUIRE(l.wait_for([](const json& s) { return s.at("connections_open") == 0; }));
    const auto s = l.status();
    for (const auto& entry : expected) {
        const int code = entry.first;  // a plain copy: doctest's CAPTURE cannot take a structured binding under clang
        CAPTURE(code);
        CHECK(s.at("requests").at(std::to_string(code)) == entry.second);
    }
    CHECK(s.at("connections_accepted") == std::size(rows) + 1);
    CHECK(s.at("connections_timed_out") == 0);

    // The listener's counters are part of the exposition when the status carries them.
    const auto text = shell::prometheus_text(json{{"metrics_listener", s}});
    CHECK(text.find("# TYPE mipsec_metrics_requests_total counter\n") != std::string::npos);
    CHECK(text.find("mipsec_metrics_requests_total{code=\"400\"} " + std::to_string(expected[400]) + "\n") != std::string::npos);
    CHECK(text.find("mipsec_metrics_requests_total{code=\"431\"} 2\n") != std::string::npos);
    CHECK(text.find("mipsec_metrics_connections_rejected_total 0\n") != std::string::npos);
    CHECK(text.find("mipsec_metrics_connections_open 0\n") != std::string::npos);
}

TEST_CASE("a status provider that throws gives 500, not a dead listener") {
    bool fail = true;
    RunningListener l({.listen = any_loopback_port}, [&] {
        if (fail) throw std::runtime_error("nodes are gone");
        return sample_status();
    });
    auto r = exchange(l.port(), scrape);
    CHECK(r.code == 500);
    CHECK(r.body.find("nodes are gone") != std::string::npos);
    REQUIRE(l.wait_for([](const json& s) { return s.at("requests").at("500") == 1; }));
}

TEST_CASE("a client that sends a byte at a time is cut off at the connection deadline") {
    RunningListener l({.listen = any_loopback_port, .connection_timeout = 300ms}, [] { return sample_status(); });
    Client slow(l.port());
    const auto start = Clock::now();
    REQUIRE(slow.send("GET /metrics HTTP/1.1\r\n"));
    // Each byte arrives well within any per-read timeout; only a deadline for the whole
    // request stops this before the 3 s it would take.
    bool cut_off = false;
    for (int i = 0; i < 60 && !cut_off; ++i) {
        if (!slow.send("X")) break;
        cut_off = slow.closed_within(50ms);
    }
    const auto elapsed = Clock::now() - start;
    CHECK(cut_off);
    CHECK(elapsed >= 250ms);
    CHECK(elapsed < 1500ms);
    REQUIRE(l.wait_for([](const json& s) { return s.at("connections_timed_out") == 1 && s.at("connections_open") == 0; }));
    // A silent client is cut off too, and neither got an answer.
    Client silent(l.port());
    CHECK(silent.read_all().empty());
    REQUIRE(l.wait_for([](const json& s) { return s.at("connections_timed_out") == 2; }));
    CHECK(l.status().at("requests").at("200") == 0);
    CHECK(exchange(l.port(), scrape).code == 200);
}

TEST_CASE("connections over the cap are closed at once and counted; the listener serves again when they go") {
    RunningListener l({.listen = any_loopback_port, .connection_timeout = 3000ms, .max_connections = 2}, [] { return sample_status(); });
    Client idle1(l.port()), idle2(l.port());
    REQUIRE(l.wait_for([](const json& s) { return s.at("connections_open") == 2; }));

    Client extra(l.port());
    CHECK(extra.closed_within(1000ms));  // long before the 3 s deadline
    REQUIRE(l.wait_for([](const json& s) { return s.at("connections_rejected") == 1; }));
    CHECK(l.status().at("connections_accepted") == 2);

    idle1.close();
    idle2.close();
    REQUIRE(l.wait_for([](const json& s) { return s.at("connections_open") == 0; }));
    CHECK(l.status().at("connections_aborted") == 2);
    CHECK(exchange(l.port(), scrape).code == 200);
}

TEST_CASE("a port already in use is a clear startup error") {
    boost::asio::io_context io;
    shell::MetricsListener first(io, {.listen = any_loopback_port}, [] { return json::object(); });
    const auto taken = first.local_endpoint();
    try {
        shell::MetricsListener second(io, {.listen = taken}, [] { return json::object(); });
        FAIL("a second listener bound the same port");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()) == "metrics_listen " + taken.to_string() + ": the port is in use by another process; choose another port or stop that process");
    }
    try {
        shell::MetricsListener elsewhere(io, {.listen = {core::Ipv4Address::from_octets(192, 0, 2, 77), 9101}}, [] { return json::object(); });
        FAIL("bound an address this host does not have");
    } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("192.0.2.77:9101") != std::string::npos);
    }
}

TEST_CASE("\"metrics_listen\" is an optional top-level address:port") {
    auto node = json::parse(R"({
      "name": "a",
      "tun": {"name": "mip0", "address": "10.10.1.1/24"},
      "transport": {"local": "192.0.2.1", "raw_protocols": [4]},
      "pipeline": [{"type": "mip.ipip", "local": "192.0.2.1", "remote": "192.0.2.2"}]
    })");
    CHECK_FALSE(shell::parse_run_config(node).metrics_listen.has_value());

    auto single = node;
    single["metrics_listen"] = "127.0.0.1:9101";
    auto run = shell::parse_run_config(single);
    REQUIRE(run.metrics_listen.has_value());
    CHECK(*run.metrics_listen == core::Endpoint{core::Ipv4Address::from_octets(127, 0, 0, 1), 9101});

    const json multi = {{"nodes", {node}}, {"metrics_listen", "0.0.0.0:9101"}};
    CHECK(shell::parse_run_config(multi).metrics_listen->address.is_unspecified());

    struct Row {
        const char* name;
        json config;
        const char* expected_text;
    };
    auto with = [&](json value) {
        auto j = node;
        j["metrics_listen"] = std::move(value);
        return j;
    };
    auto inside_node = json{{"nodes", {node}}};
    inside_node["nodes"][0]["metrics_listen"] = "127.0.0.1:9101";
    const Row rows[] = {
        {"port 0", with("127.0.0.1:0"), "/metrics_listen: has port 0"},
        {"port too large", with("127.0.0.1:65536"), "/metrics_listen: \"127.0.0.1:65536\" is not an endpoint"},
        {"no port", with("127.0.0.1"), "/metrics_listen: \"127.0.0.1\" is not an endpoint"},
        {"a host name", with("localhost:9101"), "/metrics_listen: \"localhost:9101\" is not an endpoint"},
        {"a number", with(9101), "/metrics_listen: "},
        {"multicast", with("224.0.0.1:9101"), "/metrics_listen: is not a unicast address"},
        {"inside a node of a multi-node config", inside_node, "/nodes/0/metrics_listen: is not a known setting here"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        std::string error;
        try {
            (void)shell::parse_run_config(row.config);
        } catch (const shell::ConfigError& e) {
            error = e.what();
        }
        CHECK(error.find(row.expected_text) == 0);
    }
}
