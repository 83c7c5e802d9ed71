// SPDX-License-Identifier: MIT
#pragma once
// Fixtures for the stage tests: mobile node and home agent stages with their contexts on one
// stage_network Network, a shared pool and a fake clock.
#include <memory>
#include <variant>

#include "mip/foreign_agent_stage.hpp"
#include "mip/home_agent_stage.hpp"
#include "mip/mobile_node_stage.hpp"
#include "tests/mip/mip_test_support.hpp"
#include "tests/mip/stage_network.hpp"

namespace mipsec::test {

using namespace std::chrono_literals;

inline const core::Duration world_ntp_offset = std::chrono::seconds(3'900'000'000LL);

inline mip::MobileNodeStage::Config mn_stage_config(core::Ipv4Address home, core::Ipv4Address ha, const Bytes& key,
                                                    core::Ipv4Address care_of,
                                                    mip::MobileNode::UdpTunnelling udp = mip::MobileNode::UdpTunnelling::Off) {
    mip::MobileNodeStage::Config c;
    c.node.home_address = home;
    c.node.home_agent = ha;
    c.node.sa = make_sa(256, key);
    c.node.lifetime = 1000;
    c.node.ntp_offset = world_ntp_offset;
    c.node.source_port = 40000;
    c.node.udp_tunnelling = udp;
    c.care_of_source = mip::MobileNodeStage::CareOfSource::Static;
    c.static_care_of = care_of;
    return c;
}

struct MobileNodeSpec {
    core::Ipv4Address home;
    const Bytes* key;
};

inline mip::HomeAgentStage::Config ha_stage_config(core::Ipv4Address ha, core::Ipv4Prefix home_network,
                                                   std::initializer_list<MobileNodeSpec> nodes) {
    mip::HomeAgentStage::Config c;
    c.agent.address = ha;
    c.agent.home_network = home_network;
    c.agent.max_lifetime = 1800;
    c.agent.ntp_offset = world_ntp_offset;
    c.agent.keepalive_interval = 20;
    for (const auto& n : nodes) c.agent.mobile_nodes.push_back({n.home, make_sa(256, *n.key), ""});
    return c;
}

template <class StageT>
struct Station {
    FakeStageContext ctx;
    StageT stage;
    Node node;
    Station(core::BufferPool& pool, typename StageT::Config cfg, crypto::Random& random, std::string name,
            std::vector<core::Ipv4Address> addresses)
        : ctx(pool), stage(std::move(cfg), random), node{std::move(name), &stage, &ctx, std::move(addresses), {}, {}, 0} {}
};
using MnStation = Station<mip::MobileNodeStage>;
using HaStation = Station<mip::HomeAgentStage>;
using FaStation = Station<mip::ForeignAgentStage>;

struct World {
    core::BufferPool pool{512, 2048};
    SeededRandom random{7};
    core::TimePoint now = core::TimePoint{} + std::chrono::hours(1);
    Network net;
    std::vector<std::unique_ptr<MnStation>> mns;
    std::vector<std::unique_ptr<HaStation>> has;
    std::vector<std::unique_ptr<Nat>> nats;
    std::vector<Bytes> wire;  // every packet in flight, as the receiver saw it

    World() {
        net.pool = &pool;
        net.tap = [this](const Node&, Bytes& p) { wire.push_back(p); };
    }
    MnStation& add_mn(mip::MobileNodeStage::Config cfg, std::vector<core::Ipv4Address> addresses) {
        mns.push_back(std::make_unique<MnStation>(pool, std::move(cfg), random, std::string("mn").append(std::to_string(mns.size())), std::move(addresses)));
        net.nodes.push_back(&mns.back()->node);
        net.set_now(now);
        return *mns.back();
    }
    HaStation& add_ha(mip::HomeAgentStage::Config cfg, std::vector<core::Ipv4Address> addresses) {
        has.push_back(std::make_unique<HaStation>(pool, std::move(cfg), random, std::string("ha").append(std::to_string(has.size())), std::move(addresses)));
        net.nodes.push_back(&has.back()->node);
        net.set_now(now);
        return *has.back();
    }
    Nat& add_nat(core::Ipv4Address private_address, core::Ipv4Address public_address, std::uint16_t port) {
        nats.push_back(std::make_unique<Nat>(Nat{private_address, public_address, port, {}, 0}));
        net.nats.push_back(nats.back().get());
        return *nats.back();
    }
    void advance(core::Duration d) {
        now += d;
        net.set_now(now);
    }
    void poll() { net.poll_all(); }
    template <class S>
    core::Verdict send(S& from, const Bytes& packet) {
        return net.send(from.node, load(pool, packet));
    }
};

inline std::vector<core::RegistrationChanged> registrations(const FakeStageContext& ctx) {
    std::vector<core::RegistrationChanged> out;
    for (const auto& e : ctx.events)
        if (const auto* r = std::get_if<core::RegistrationChanged>(&e)) out.push_back(*r);
    return out;
}

inline core::RaisedEvent external(core::ControlEvent e) { return {core::RaisedEvent::external, std::move(e)}; }

}  // namespace mipsec::test
