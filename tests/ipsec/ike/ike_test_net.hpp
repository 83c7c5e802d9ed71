// SPDX-License-Identifier: MIT
#pragma once
// Test harness: a client Session and a gateway Responder joined by an in-memory network with
// an optional NAT in front of the client, a fake clock, deterministic randomness, and hooks
// to drop or rewrite datagrams. Checks on every hop that port 4500 traffic carries the
// non-ESP marker flag and nothing else does.
#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <vector>

#include "crypto/random.hpp"
#include "ipsec/ike/responder.hpp"
#include "ipsec/ike/session.hpp"

namespace mipsec::test {

/// SplitMix64: deterministic, well-spread bytes (distinct cookies, SPIs and M-IDs per seed).
class SplitMixRandom final : public crypto::Random {
public:
    explicit SplitMixRandom(std::uint64_t seed) : state_(seed) {}
    void fill(std::span<std::uint8_t> out) noexcept override {
        for (auto& b : out) {
            if (avail_ == 0) {
                std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
                word_ = z ^ (z >> 31);
                avail_ = 8;
            }
            b = static_cast<std::uint8_t>(word_);
            word_ >>= 8;
            --avail_;
        }
    }

private:
    std::uint64_t state_;
    std::uint64_t word_ = 0;
    int avail_ = 0;
};

inline crypto::SecretBytes secret(std::string_view s) {
    return crypto::SecretBytes(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
}

struct IkeNet {
    using Ep = core::Endpoint;
    static constexpr Ep gateway{core::Ipv4Address::from_octets(198, 51, 100, 1), 500};
    static constexpr core::Ipv4Address client_private = core::Ipv4Address::from_octets(192, 168, 1, 10);
    static constexpr core::Ipv4Address client_public = core::Ipv4Address::from_octets(203, 0, 113, 5);

    bool nat;
    core::TimePoint now{};
    SplitMixRandom client_rng{1};
    SplitMixRandom gw_rng{2};
    std::shared_ptr<ipsec::ike::SessionConfig> client_cfg;
    std::shared_ptr<ipsec::ike::SessionConfig> gw_cfg;
    std::unique_ptr<ipsec::ike::Session> client;
    std::unique_ptr<ipsec::ike::Responder> gw;
    std::vector<ipsec::ike::SessionEvent> client_events;
    std::vector<ipsec::ike::TaggedEvent> gw_events;
    std::vector<ipsec::ike::OutgoingDatagram> to_gw;      // every datagram the client sent
    std::vector<ipsec::ike::OutgoingDatagram> to_client;  // every datagram the gateway sent
    /// Return false to drop; may rewrite the payload. `to_gateway` tells the direction.
    std::function<bool(ipsec::ike::OutgoingDatagram&, bool to_gateway)> filter;

    explicit IkeNet(bool with_nat) : nat(with_nat) {
        client_cfg = std::make_shared<ipsec::ike::SessionConfig>();
        gw_cfg = std::make_shared<ipsec::ike::SessionConfig>();
        client_cfg->local_id = ipsec::ike::IdPayload::fqdn("cli.lab.example");
        gw_cfg->local_id = ipsec::ike::IdPayload::fqdn("gw.lab.example");
        client_cfg->psks.push_back({std::nullopt, secret("mipvpn-test-psk")});
        gw_cfg->psks.push_back({std::nullopt, secret("mipvpn-test-psk")});
        client_cfg->request_virtual_ip = true;
        client_cfg->remote_ts = *core::Ipv4Prefix::parse("10.99.1.0/24");
        gw_cfg->local_ts = {*core::Ipv4Prefix::parse("10.99.1.0/24")};
        gw_cfg->child_rekey_time = core::Duration::zero();
    }

    Ep client_local() const { return {nat ? client_private : core::Ipv4Address::from_octets(192, 0, 2, 10), 500}; }
    /// What the gateway sees as the client's source for a given client port.
    Ep translate(Ep local) const {
        if (!nat) return local;
        return {client_public, static_cast<std::uint16_t>(local.port == 4500 ? 40001 : 40000)};
    }
    Ep untranslate(Ep public_ep) const {
        if (!nat) return public_ep;
        return {client_private, static_cast<std::uint16_t>(public_ep.port == 40001 ? 4500 : 500)};
    }

    void start(std::optional<core::Ipv4Prefix> pool = core::Ipv4Prefix::parse("10.99.100.0/24")) {
        ipsec::ike::ResponderConfig rc;
        rc.session = gw_cfg;
        rc.pool = pool;
        gw = std::make_unique<ipsec::ike::Responder>(rc, gw_rng);
        client = ipsec::ike::Session::initiator(client_cfg, client_rng, client_local(), gateway);
        client->start(now);
        pump();
    }

    /// Delivers datagrams until both sides are quiet.
    void pump() {
        for (int round = 0; round < 100; ++round) {
            auto co = client->take_output();
            auto go = gw->take_output();
            for (auto& e : co.events) client_events.push_back(std::move(e));
            for (auto& e : go.events) gw_events.push_back(std::move(e));
            if (co.datagrams.empty() && go.datagrams.empty()) return;
            for (auto& d : co.datagrams) {
                CHECK(d.non_esp_marker == (d.local.port == 4500));
                CHECK(d.remote.address == gateway.address);
                to_gw.push_back(d);
                if (filter && !filter(d, true)) continue;
                gw->on_datagram(d.payload, d.remote, translate(d.local), now);
            }
            for (auto& d : go.datagrams) {
                CHECK(d.non_esp_marker == (d.local.port == 4500));
                to_client.push_back(d);
                if (filter && !filter(d, false)) continue;
                client->on_datagram(d.payload, untranslate(d.remote), d.local, now);
            }
        }
        FAIL("datagram ping-pong did not settle");
    }

    void advance(core::Duration d) {
        now += d;
        client->poll(now);
        gw->poll(now);
        pump();
    }

    /// Runs the clock forward in steps (so every deadline fires at its time).
    void run_for(core::Duration total, core::Duration step = std::chrono::milliseconds(500)) {
        for (core::Duration t{}; t < total; t += step) advance(step);
    }

    template <class E>
    std::vector<const E*> client_all() const {
        std::vector<const E*> out;
        for (const auto& e : client_events)
            if (auto* p = std::get_if<E>(&e)) out.push_back(p);
        return out;
    }
    template <class E>
    std::vector<const E*> gw_all() const {
        std::vector<const E*> out;
        for (const auto& e : gw_events)
            if (auto* p = std::get_if<E>(&e.event)) out.push_back(p);
        return out;
    }
    ipsec::ike::Session* gw_session() {
        return client ? gw->find(client->ike_sa().cky_i, client->ike_sa().cky_r) : nullptr;
    }
};

}  // namespace mipsec::test
