// SPDX-License-Identifier: MIT
// `mipsec bench gateway-poll`: what the shell's per-batch tick (Pipeline::poll) costs on an
// ipsec.vpn_gateway with N idle established clients. Timers are kept by deadline, so the
// figure should not grow with N.
//
// The clients are real: each is an IKEv1 initiator Session (Main Mode PSK, Mode Config, Quick
// Mode) whose datagrams travel in memory as IPv4/UDP packets through the gateway's pipeline,
// so every client ends up with its IKE session, lease, ESP tunnel and deadlines installed by
// the same code path as on the wire. Then `now` moves 1 µs per poll (nothing becomes due: the
// clients are idle, DPD after 30 s, SA lifetimes in hours) and rounds of polls are timed; the
// median round is reported in ns per poll.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "apps/mipsec/bench.hpp"
#include "core/buffer_pool.hpp"
#include "core/ipv4.hpp"
#include "core/logger.hpp"
#include "core/pipeline.hpp"
#include "core/udp.hpp"
#include "crypto/random.hpp"
#include "ipsec/ike/session.hpp"
#include "ipsec/vpn_gateway_stage.hpp"

namespace mipsec::bench {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const core::Ipv4Address gateway_address = core::Ipv4Address::from_octets(198, 51, 100, 2);
const core::Ipv4Prefix client_network{core::Ipv4Address::from_octets(100, 64, 0, 0), 10};
const core::TimePoint t0 = core::TimePoint{} + 1h;
constexpr std::uint8_t psk[] = {'b', 'e', 'n', 'c', 'h', '-', 'p', 's', 'k'};

// The gateway's outer packets, kept for the in-memory clients.
struct Wire final : core::PipelineIo {
    std::deque<std::vector<std::uint8_t>> outer;
    void send_outer(core::PacketBuf&& p) override { outer.emplace_back(p.bytes().begin(), p.bytes().end()); }
    void deliver_inner(core::PacketBuf&&) override {}
};

// Cheapest proposals both sides accept: the handshakes are set-up, not what is measured.
ipsec::ike::IkeProposal bench_ike_proposal() {
    ipsec::ike::IkeProposal p;
    p.group = crypto::ModpGroup::Modp1024;
    return p;
}

class Lab {
public:
    explicit Lab(std::size_t clients) : pool_(64, 2048), now_(t0) {
        ipsec::ike::SessionConfig gs;
        gs.local_id = ipsec::ike::IdPayload::fqdn("gw.bench.example");
        gs.psks.push_back({std::nullopt, crypto::SecretBytes(psk)});
        gs.ike_proposals = {bench_ike_proposal()};
        gs.local_ts = {core::Ipv4Prefix{core::Ipv4Address::from_octets(10, 99, 1, 0), 24}};
        gs.child_rekey_time = core::Duration::zero();  // as `mipsec run` configures a gateway
        gs.dpd_delay = 30s;
        ipsec::VpnGatewayStage::Config gc;
        gc.local = gateway_address;
        gc.responder.session = std::make_shared<const ipsec::ike::SessionConfig>(std::move(gs));
        gc.responder.pool = core::Ipv4Prefix{core::Ipv4Address::from_octets(10, 128, 0, 0), 10};
        gc.responder.max_sessions = clients + 16;
        std::vector<std::unique_ptr<core::Stage>> stages;
        stages.push_back(std::make_unique<ipsec::VpnGatewayStage>(std::move(gc), random_));
        gateway_ = std::make_unique<core::Pipeline>(std::move(stages), pool_, core::null_logger());
        gateway_->attach(&wire_);

        auto cs = std::make_shared<ipsec::ike::SessionConfig>();
        cs->psks.push_back({core::Ipv4Prefix{gateway_address, 32}, crypto::SecretBytes(psk)});
        cs->ike_proposals = {bench_ike_proposal()};
        cs->request_virtual_ip = true;
        cs->remote_ts = core::Ipv4Prefix{core::Ipv4Address::from_octets(10, 99, 1, 0), 24};
        cs->send_initial_contact = false;
        cs->child_rekey_time = core::Duration::zero();
        client_config_ = cs;
    }

    /// Brings up client number i; false if its handshake did not complete.
    bool connect(std::size_t i) {
        const core::Ipv4Address local{client_network.address.value + 1 + static_cast<std::uint32_t>(i)};
        auto s = ipsec::ike::Session::initiator(client_config_, random_, {local, 500}, {gateway_address, 500});
        auto* session = s.get();
        clients_[local.value] = std::move(s);
        session->start(now_);
        bool installed = false;
        for (int rounds = 0; rounds < 32; ++rounds) {
            auto out = session->take_output();
            for (const auto& e : out.events) installed |= std::holds_alternative<ipsec::ike::ChildSaInstalled>(e);
            if (out.datagrams.empty() && wire_.outer.empty()) break;
            for (const auto& d : out.datagrams) to_gateway(d);
            while (!wire_.outer.empty()) {
                auto p = std::move(wire_.outer.front());
                wire_.outer.pop_front();
                to_client(p);
            }
        }
        now_ += 1ms;
        return installed;
    }

    /// Median ns per Pipeline::poll() over `rounds` rounds of `polls` polls.
    double median_poll_ns(int rounds, int polls) {
        std::vector<double> per_round;
        (void)gateway_->poll();  // settle anything due after the handshakes
        for (int r = 0; r < rounds; ++r) {
            const auto start = Clock::now();
            for (int i = 0; i < polls; ++i) {
                now_ += 1us;
                gateway_->set_now(now_);
                (void)gateway_->poll();
            }
            per_round.push_back(std::chrono::duration<double, std::nano>(Clock::now() - start).count() / polls);
            wire_.outer.clear();
        }
        std::nth_element(per_round.begin(), per_round.begin() + static_cast<long>(per_round.size() / 2), per_round.end());
        return per_round[per_round.size() / 2];
    }

    std::size_t gateway_clients() const {
        return static_cast<const ipsec::VpnGatewayStage&>(gateway_->stage(0)).client_count();
    }

private:
    void to_gateway(const ipsec::ike::OutgoingDatagram& d) {
        const std::size_t marker = d.non_esp_marker ? 4 : 0;
        const std::size_t len = core::Ipv4Header::len + core::UdpView::header_len + marker + d.payload.size();
        auto buf = pool_.acquire(64);
        if (!buf.valid() || !buf.resize(len)) return;
        std::fill_n(buf.data(), len, std::uint8_t{0});
        core::Ipv4Header ip;
        ip.total_length = static_cast<std::uint16_t>(len);
        ip.protocol = core::ip_protocol::udp;
        ip.source = d.local.address;
        ip.destination = d.remote.address;
        ip.emit(buf.bytes());
        core::UdpHeader{d.local.port, d.remote.port, static_cast<std::uint16_t>(len - core::Ipv4Header::len), 0}.emit(
            buf.bytes().subspan(core::Ipv4Header::len));
        std::copy(d.payload.begin(), d.payload.end(), buf.data() + core::Ipv4Header::len + core::UdpView::header_len + marker);
        gateway_->set_now(now_);
        (void)gateway_->decapsulate(buf);
    }

    void to_client(const std::vector<std::uint8_t>& packet) {
        auto ip = core::Ipv4View::check(std::span<const std::uint8_t>(packet));
        if (!ip || ip->protocol() != core::ip_protocol::udp) return;
        auto udp = core::UdpView::check(ip->payload());
        if (!udp) return;
        auto it = clients_.find(ip->destination().value);
        if (it == clients_.end()) return;
        auto payload = udp->payload();
        if (udp->source_port() == 4500) {
            if (payload.size() < 4) return;
            payload = payload.subspan(4);
        }
        it->second->on_datagram(payload, {ip->destination(), udp->destination_port()}, {ip->source(), udp->source_port()}, now_);
    }

    crypto::KeystreamRandom random_;
    core::BufferPool pool_;
    Wire wire_;
    std::unique_ptr<core::Pipeline> gateway_;
    std::shared_ptr<const ipsec::ike::SessionConfig> client_config_;
    std::unordered_map<std::uint32_t, std::unique_ptr<ipsec::ike::Session>> clients_;
    core::TimePoint now_;
};

}  // namespace

int run_gateway_poll(const GatewayPollOptions& o) {
    std::printf("ipsec.vpn_gateway: one per-batch tick (Pipeline::poll) with N idle established clients, median of %d rounds of %d polls\n",
                o.rounds, o.polls);
    std::printf("%10s | %12s | %10s | %14s\n", "clients", "set-up s", "ns/poll", "vs first row");
    double first = 0;
    for (auto n : o.clients) {
        Lab lab(n);
        const auto start = Clock::now();
        for (std::size_t i = 0; i < n; ++i) {
            if (!lab.connect(i)) {
                std::fprintf(stderr, "mipsec bench gateway-poll: client %zu did not get a CHILD_SA\n", i);
                return 1;
            }
        }
        const double setup = std::chrono::duration<double>(Clock::now() - start).count();
        if (lab.gateway_clients() != n) {
            std::fprintf(stderr, "mipsec bench gateway-poll: the gateway has %zu clients, not %zu\n", lab.gateway_clients(), n);
            return 1;
        }
        const double ns = lab.median_poll_ns(o.rounds, o.polls);
        if (first == 0) first = ns;
        std::printf("%10zu | %12.1f | %10.1f | %13.2fx\n", n, setup, ns, ns / first);
        std::fflush(stdout);
    }
    return 0;
}

}  // namespace mipsec::bench
