// SPDX-License-Identifier: MIT
// `mipsec bench ike-load`: an IKEv1 load generator. It runs many mipsec initiator Sessions
// (Main Mode PSK + Quick Mode, NAT-T forced) over real UDP sockets against one gateway and
// reports how many complete handshakes it got per second. tools/bench_ike.py runs it against
// a mipsec gateway and a strongSwan gateway in the same lab and divides by each gateway
// process's CPU time, which gives handshakes per second on one gateway core.
#include <poll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/mipsec/bench.hpp"
#include "core/address.hpp"
#include "crypto/random.hpp"
#include "ipsec/ike/session.hpp"

namespace mipsec::bench {

namespace {

using Clock = std::chrono::steady_clock;

int bind_udp(core::Ipv4Address local, std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int buf = 4 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(local.value);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
        throw std::runtime_error("bind " + local.to_string() + ":" + std::to_string(port) + ": " + std::strerror(errno));
    return fd;
}

}  // namespace

int run_ike_load(const IkeLoadOptions& o) {
    crypto::KeystreamRandom random;
    auto cfg = std::make_shared<ipsec::ike::SessionConfig>();
    cfg->local_id = ipsec::ike::IdPayload::fqdn(o.id);
    cfg->psks.push_back({core::Ipv4Prefix{o.gateway, 32}, crypto::SecretBytes(std::span(reinterpret_cast<const std::uint8_t*>(o.psk.data()), o.psk.size()))});
    cfg->force_udp_encapsulation = true;  // strongSwan's kernel-libipsec requires UDP-encapsulated ESP
    cfg->send_initial_contact = false;    // every bench session uses the same ID; keep the others
    cfg->dpd = false;
    cfg->remote_ts = o.remote_ts;
    cfg->child_rekey_time = core::Duration::zero();
    cfg->retransmit.timeout = std::chrono::seconds(2);
    cfg->retransmit.retransmits = 3;
    std::shared_ptr<const ipsec::ike::SessionConfig> shared = cfg;

    const int fd500 = bind_udp(o.local, 500);
    const int fd4500 = bind_udp(o.local, 4500);
    std::map<ipsec::ike::Cookie, std::unique_ptr<ipsec::ike::Session>> sessions;
    std::size_t started = 0, completed = 0, failed = 0;
    std::vector<std::uint8_t> rx(65536);

    auto flush = [&](ipsec::ike::Session& s) {
        auto out = s.take_output();
        for (const auto& d : out.datagrams) {
            std::vector<std::uint8_t> wire;
            if (d.non_esp_marker) wire.assign(4, 0);
            wire.insert(wire.end(), d.payload.begin(), d.payload.end());
            sockaddr_in to{};
            to.sin_family = AF_INET;
            to.sin_port = htons(d.remote.port);
            to.sin_addr.s_addr = htonl(d.remote.address.value);
            ::sendto(d.local.port == 500 ? fd500 : fd4500, wire.data(), wire.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
        }
        for (const auto& e : out.events) {
            if (std::holds_alternative<ipsec::ike::ChildSaInstalled>(e)) ++completed;
            if (std::holds_alternative<ipsec::ike::Failed>(e)) ++failed;
        }
    };
    auto start_one = [&](Clock::time_point now) {
        auto s = ipsec::ike::Session::initiator(shared, random, {o.local, 500}, {o.gateway, 500});
        s->start(now);
        auto key = s->ike_sa().cky_i;
        flush(*s);
        sessions.emplace(key, std::move(s));
        ++started;
    };

    const auto t0 = Clock::now();
    const auto deadline = t0 + std::chrono::seconds(o.timeout_s);
    auto in_flight = [&] { return started - completed - failed; };
    while (completed + failed < o.count && Clock::now() < deadline) {
        auto now = Clock::now();
        while (started < o.count && in_flight() < o.concurrency) start_one(now);
        pollfd fds[2] = {{fd500, POLLIN, 0}, {fd4500, POLLIN, 0}};
        ::poll(fds, 2, 10);
        for (int i = 0; i < 2; ++i) {
            if (!(fds[i].revents & POLLIN)) continue;
            for (;;) {
                sockaddr_in from{};
                socklen_t from_len = sizeof from;
                auto n = ::recvfrom(fds[i].fd, rx.data(), rx.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
                if (n <= 0) break;
                std::span<const std::uint8_t> msg(rx.data(), static_cast<std::size_t>(n));
                const std::uint16_t port = i == 0 ? 500 : 4500;
                if (port == 4500) {
                    if (msg.size() < 4 + 8) continue;  // keepalive or too short
                    msg = msg.subspan(4);
                }
                if (msg.size() < 8) continue;
                ipsec::ike::Cookie cky;
                std::copy_n(msg.begin(), 8, cky.begin());
                auto it = sessions.find(cky);
                if (it == sessions.end()) continue;
                it->second->on_datagram(msg, {o.local, port}, {core::Ipv4Address{ntohl(from.sin_addr.s_addr)}, ntohs(from.sin_port)}, Clock::now());
                flush(*it->second);
            }
        }
        now = Clock::now();
        for (auto& [cky, s] : sessions) {
            if (s->state() != ipsec::ike::SessionState::Connecting) continue;
            (void)s->poll(now);
            flush(*s);
        }
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("{\"started\": %zu, \"completed\": %zu, \"failed\": %zu, \"seconds\": %.3f, \"per_second\": %.1f}\n", started,
                completed, failed, seconds, static_cast<double>(completed) / seconds);
    ::close(fd500);
    ::close(fd4500);
    return completed == o.count ? 0 : 1;
}

}  // namespace mipsec::bench
