// SPDX-License-Identifier: MIT
#include "apps/shell/control_server.hpp"

#include <filesystem>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <sys/stat.h>

namespace mipsec::shell {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

struct ControlServer::Impl {
    Impl(asio::io_context& io, std::string p, Handler h) : path(std::move(p)), handler(std::move(h)), acceptor(io) {}

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
            if (ec) co_return;
            asio::co_spawn(acceptor.get_executor(), serve(std::move(socket)), asio::detached);
        }
    }

    asio::awaitable<void> serve(stream::socket socket) {
        asio::streambuf buf(4096);  // a request is one short line; refuse anything longer
        auto [ec, n] = co_await asio::async_read_until(socket, buf, '\n', asio::as_tuple(asio::use_awaitable));
        nlohmann::json reply;
        if (ec) {
            reply = {{"error", "request must be one line of at most 4096 bytes"}};
        } else {
            std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n) - 1);
            try {
                reply = handler(line);
            } catch (const std::exception& e) {
                reply = {{"error", e.what()}};
            }
        }
        auto text = reply.dump() + "\n";
        co_await asio::async_write(socket, asio::buffer(text), asio::as_tuple(asio::use_awaitable));
    }

    std::string path;
    Handler handler;
    stream::acceptor acceptor;
};

ControlServer::ControlServer(asio::io_context& io, std::string path, Handler handler)
    : impl_(std::make_unique<Impl>(io, std::move(path), std::move(handler))) {
    namespace fs = std::filesystem;
    const auto& p = impl_->path;
    std::error_code fec;
    fs::create_directories(fs::path(p).parent_path(), fec);
    if (fs::exists(p)) {
        stream::socket probe(io);
        boost::system::error_code ec;
        probe.connect(stream::endpoint(p), ec);
        if (!ec) throw std::runtime_error("control socket " + p + " is in use by a running mipsec instance; stop it or set \"control_socket\" to another path");
        fs::remove(p, fec);  // stale file from an instance that did not exit cleanly
    }
    boost::system::error_code ec;
    impl_->acceptor.open(stream(), ec);
    if (!ec) impl_->acceptor.bind(stream::endpoint(p), ec);
    if (!ec) impl_->acceptor.listen(16, ec);
    if (ec) throw std::runtime_error("cannot listen on control socket " + p + ": " + ec.message());
    ::chmod(p.c_str(), 0600);  // status reveals topology and counters: owner only
    asio::co_spawn(io, impl_->accept_loop(), asio::detached);
}

void ControlServer::stop() {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
}

ControlServer::~ControlServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove(impl_->path, ec);
}

nlohmann::json control_request(const std::string& path, const std::string& command) {
    asio::io_context io;
    stream::socket socket(io);
    boost::system::error_code ec;
    socket.connect(stream::endpoint(path), ec);
    if (ec) throw std::runtime_error("no mipsec instance answers at " + path + " (" + ec.message() + "); is `mipsec run` running, and is this its control_socket?");
    auto line = command + "\n";
    asio::write(socket, asio::buffer(line), ec);
    asio::streambuf buf;
    asio::read_until(socket, buf, '\n', ec);
    if (ec && ec != asio::error::eof) throw std::runtime_error("reading from " + path + ": " + ec.message());
    std::string text(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
    return nlohmann::json::parse(text);
}

}  // namespace mipsec::shell
