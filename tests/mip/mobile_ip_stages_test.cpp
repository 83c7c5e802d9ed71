// SPDX-License-Identifier: MIT
// MobileNodeStage <-> HomeAgentStage over the in-memory network: registration, data both ways
// over IP-in-IP and IP-in-UDP (NAT simulated), the RFC 3024 acceptance checks, RFC 3519
// keepalives, movement, return home, two independent MIP instances, and stacking in a Pipeline.
#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "core/pipeline.hpp"
#include "mip/agent_advertisement_wire.hpp"
#include "mip/ip_in_ip_stage.hpp"
#include "mip/tunnel_encap.hpp"
#include "tests/mip/mobile_ip_world.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using namespace std::chrono_literals;
using core::DropReason;
using test::ip;
using Udp = mip::MobileNode::UdpTunnelling;

namespace {

const auto key1 = "00112233445566778899aabbccddeeff"_hex;
const auto key2 = "ffeeddccbbaa99887766554433221100"_hex;
const auto home1 = ip("10.1.0.77");
const auto home2 = ip("10.1.0.78");
const auto ha1 = ip("10.1.0.1");
const auto home_net = *core::Ipv4Prefix::parse("10.1.0.0/24");
const auto coa1 = ip("192.168.1.23");
const auto coa1b = ip("172.16.9.9");
const auto coa2 = ip("192.168.2.50");
const auto nat_public = ip("203.0.113.5");
const auto cn = ip("10.9.9.9");

core::Ipv4View view(const test::Bytes& p) {
    auto v = core::Ipv4View::check(std::span(p));
    REQUIRE(v);
    return *v;
}

}  // namespace

TEST_CASE("MN and HA stages: co-located registration, then IP-in-IP both ways in place") {
    test::World w;
    auto& mn = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1), {coa1});
    auto& ha = w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    w.poll();

    // RFC 3024 §4.1.1, RFC 5944 §3.6.1.1: the request leaves from the CoA, TTL 255 with T, checksum set.
    REQUIRE(w.wire.size() == 2);
    auto req = view(w.wire[0]);
    CHECK(req.source() == coa1);
    CHECK(req.destination() == ha1);
    CHECK(req.ttl() == 255);
    auto req_udp = mip::udp_of(req);
    REQUIRE(req_udp);
    CHECK(req_udp->source_port() == 40000);
    CHECK(req_udp->destination_port() == 434);
    CHECK(req_udp->checksum() != 0);
    CHECK(req_udp->checksum_valid(req.source(), req.destination()));
    CHECK(req_udp->payload()[0] == 1);
    auto rep = view(w.wire[1]);
    CHECK(rep.source() == ha1);
    CHECK(rep.destination() == coa1);
    CHECK(mip::udp_of(rep)->destination_port() == 40000);
    CHECK(mip::udp_of(rep)->source_port() == 434);

    const auto* reg = mn.stage.active_registration();
    REQUIRE(reg != nullptr);
    CHECK(reg->mode == mip::TunnelMode::IpInIp);
    CHECK(reg->reverse_tunnel);
    auto mn_events = test::registrations(mn.ctx);
    REQUIRE(mn_events.size() == 1);
    CHECK(mn_events[0].registered);
    CHECK(mn_events[0].care_of_address == coa1);
    auto ha_events = test::registrations(ha.ctx);
    REQUIRE(ha_events.size() == 1);
    CHECK(ha_events[0].home_address == home1);
    CHECK(ha_events[0].care_of_address == coa1);

    // Uplink: reverse tunnel, then the HA's RFC 3024 check; same block, payload never moved.
    const auto up = test::echo_packet(home1, cn, 1);
    auto buf = test::load(w.pool, up);
    const auto* block = buf.block();
    const auto* payload = buf.data();
    REQUIRE(mn.stage.encapsulate(buf, mn.ctx).passed());
    auto outer = core::Ipv4View::check(buf.bytes());
    REQUIRE(outer);
    CHECK(outer->protocol() == core::ip_protocol::ipip);
    CHECK(outer->source() == coa1);
    CHECK(outer->destination() == ha1);
    CHECK(outer->dont_fragment());
    CHECK(outer->checksum_valid());
    CHECK(buf.data() + 20 == payload);
    REQUIRE(ha.stage.decapsulate(buf, ha.ctx).passed());
    CHECK(buf.block() == block);
    CHECK(buf.data() == payload);
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(up));

    // Downlink: HA -> CoA, unwrapped by the MN.
    const auto down = test::echo_packet(cn, home1, 2, 40, 63, core::icmp_type::echo_reply);
    buf = test::load(w.pool, down);
    REQUIRE(ha.stage.encapsulate(buf, ha.ctx).passed());
    outer = core::Ipv4View::check(buf.bytes());
    CHECK(outer->source() == ha1);
    CHECK(outer->destination() == coa1);
    CHECK(outer->protocol() == core::ip_protocol::ipip);
    REQUIRE(mn.stage.decapsulate(buf, mn.ctx).passed());
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(down));

    CHECK(mn.stage.counters().tunnelled_out == 1);
    CHECK(mn.stage.counters().tunnelled_in == 1);
    CHECK(ha.stage.counters().tunnelled_in == 1);
    CHECK(ha.stage.counters().tunnelled_out == 1);

    test::FlatStatus status;
    mn.stage.report(status);
    CHECK(status.values["state"] == "registered");
    CHECK(status.values["mode"] == "ip_in_ip");
    CHECK(status.values["care_of_address"] == "192.168.1.23");
    CHECK(status.values["lifetime_left_s"] == "1000");
    CHECK(status.values["counters.tunnelled_out"] == "1");
}

TEST_CASE("MN and HA stages: RFC 3519 IP-in-UDP through a NAT, both ways") {
    test::World w;
    auto& mn = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1, Udp::Wanted), {coa1});
    auto& ha = w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    w.add_nat(coa1, nat_public, 61000);
    w.poll();

    const auto* reg = mn.stage.active_registration();
    REQUIRE(reg != nullptr);
    CHECK(reg->mode == mip::TunnelMode::Udp);
    CHECK(reg->keepalive_interval == 20s);  // the HA's Tunnel Reply interval
    auto b = ha.stage.agent().binding(home1);
    REQUIRE(b);
    CHECK(b->mode == mip::TunnelMode::Udp);
    CHECK(b->care_of_address == coa1);
    CHECK(b->udp_endpoint == core::Endpoint{nat_public, 61000});

    w.wire.clear();
    const auto up = test::echo_packet(home1, cn, 1, 100);
    REQUIRE(w.send(mn, up).passed());
    REQUIRE(ha.node.inward.size() == 1);
    CHECK(test::to_hex(ha.node.inward[0]) == test::to_hex(up));
    REQUIRE(w.wire.size() == 1);
    auto outer = view(w.wire[0]);
    CHECK(outer.source() == nat_public);  // as the HA sees it
    auto udp = mip::udp_of(outer);
    REQUIRE(udp);
    CHECK(udp->source_port() == 61000);
    CHECK(udp->destination_port() == 434);
    CHECK(test::to_hex(udp->payload().first(4)) == "04040000");
    CHECK(udp->checksum_valid(outer.source(), outer.destination()));

    const auto down = test::echo_packet(cn, home1, 2, 100, 63, core::icmp_type::echo_reply);
    REQUIRE(w.send(ha, down).passed());
    REQUIRE(mn.node.inward.size() == 1);
    CHECK(test::to_hex(mn.node.inward[0]) == test::to_hex(down));
    auto seen = view(w.wire.back());
    CHECK(seen.destination() == coa1);  // after the NAT
    CHECK(mip::udp_of(seen)->destination_port() == 40000);
    CHECK(mip::udp_of(seen)->source_port() == 434);

    test::FlatStatus status;
    mn.stage.report(status);
    CHECK(status.values["mode"] == "ip_in_udp");
    CHECK(status.values["source_port"] == "40000");
    test::FlatStatus ha_status;
    ha.stage.report(ha_status);
    CHECK(ha_status.values["binding_count"] == "1");
    CHECK(ha_status.values["bindings[0].mode"] == "ip_in_udp");
    CHECK(ha_status.values["bindings[0].udp_endpoint"] == "203.0.113.5:61000");
}

TEST_CASE("MN stage stopping away from home deregisters its binding (IP-in-IP and through a NAT)") {
    for (bool nat : {false, true}) {
        CAPTURE(nat);
        test::World w;
        auto& mn = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1, nat ? Udp::Wanted : Udp::Off), {coa1});
        auto& ha = w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
        if (nat) w.add_nat(coa1, nat_public, 61000);
        w.poll();
        REQUIRE(ha.stage.agent().binding(home1));
        w.wire.clear();
        mn.stage.shutdown(mn.ctx);
        w.net.pump();
        // One request, lifetime 0 for this care-of address, from where registrations go.
        REQUIRE(w.wire.size() == 2);
        auto req = view(w.wire[0]);
        auto udp = mip::udp_of(req);
        REQUIRE(udp);
        CHECK(udp->destination_port() == 434);
        auto parsed = mip::RegistrationRequestView::check(udp->payload());
        REQUIRE(parsed);
        CHECK(parsed->lifetime() == 0);
        CHECK(parsed->care_of_address() == coa1);
        CHECK_FALSE(ha.stage.agent().binding(home1));
        auto ha_events = test::registrations(ha.ctx);
        REQUIRE(ha_events.size() == 2);
        CHECK_FALSE(ha_events[1].registered);
        // Stopping again, or at home, sends nothing.
        w.wire.clear();
        mn.stage.shutdown(mn.ctx);
        w.net.pump();
        CHECK(w.wire.empty());
    }
}

TEST_CASE("HA stage: RFC 3024 decapsulation check drops mismatches, other bindings undisturbed") {
    test::World w;
    auto& mn1 = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1, Udp::Wanted), {coa1});
    auto& mn2 = w.add_mn(test::mn_stage_config(home2, ha1, key2, coa2), {coa2});
    auto& ha = w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}, {home2, &key2}}), {ha1});
    w.add_nat(coa1, nat_public, 61000);
    w.poll();
    REQUIRE(mn1.stage.active_registration());
    REQUIRE(mn2.stage.active_registration());
    REQUIRE(ha.stage.agent().binding(home1)->mode == mip::TunnelMode::Udp);
    REQUIRE(ha.stage.agent().binding(home2)->mode == mip::TunnelMode::IpInIp);

    struct Row {
        const char* name;
        core::Ipv4Address inner_source;
        bool udp;
        core::Endpoint outer_source;
        DropReason expected;
    };
    const Row rows[] = {
        {"IP-in-IP from a stranger for MN2", home2, false, {ip("192.0.2.99"), 0}, DropReason::BindingMismatch},
        {"MN1's inner source from MN2's CoA", home1, false, {coa2, 0}, DropReason::BindingMismatch},
        {"inner source without a binding", ip("10.1.0.99"), false, {coa2, 0}, DropReason::NoBinding},
        {"IP-in-IP where UDP was negotiated", home1, false, {nat_public, 0}, DropReason::BindingMismatch},
        {"UDP where IP-in-IP was negotiated", home2, true, {coa2, 40000}, DropReason::BindingMismatch},
        {"right NAT address, wrong port", home1, true, {nat_public, 61001}, DropReason::BindingMismatch},
        {"UDP from a stranger for MN1", home1, true, {ip("192.0.2.99"), 61000}, DropReason::BindingMismatch},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto buf = test::load(w.pool, test::echo_packet(row.inner_source, cn));
        const mip::OuterHeader outer{row.outer_source.address, ha1};
        REQUIRE((row.udp ? mip::push_ip_in_udp(buf, outer, row.outer_source.port, 434) : mip::push_ip_in_ip(buf, outer)).passed());
        auto v = ha.stage.decapsulate(buf, ha.ctx);
        CHECK(v.action == core::Action::Drop);
        CHECK(v.reason == row.expected);
    }
    CHECK(ha.stage.counters().dropped_binding_mismatch == 6);
    CHECK(ha.stage.counters().dropped_no_binding == 1);
    CHECK(ha.node.inward.empty());

    // Nothing above touched the bindings: both MNs still get through, both ways.
    CHECK(ha.stage.agent().binding(home1)->udp_endpoint == core::Endpoint{nat_public, 61000});
    CHECK(ha.stage.agent().binding(home2)->care_of_address == coa2);
    REQUIRE(w.send(mn1, test::echo_packet(home1, cn, 7)).passed());
    REQUIRE(w.send(mn2, test::echo_packet(home2, cn, 8)).passed());
    CHECK(ha.node.inward.size() == 2);
    REQUIRE(w.send(ha, test::echo_packet(cn, home1, 9)).passed());
    REQUIRE(w.send(ha, test::echo_packet(cn, home2, 10)).passed());
    CHECK(mn1.node.inward.size() == 1);
    CHECK(mn2.node.inward.size() == 1);
    CHECK(ha.node.drops.empty());
}

TEST_CASE("MN and HA stages: keepalives when idle, echo replies, re-registration after NAT mapping loss") {
    test::World w;
    auto& mn = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1, Udp::Wanted), {coa1});
    auto& ha = w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    auto& nat = w.add_nat(coa1, nat_public, 61000);
    w.poll();
    REQUIRE(mn.stage.active_registration());

    // RFC 3519 §3.6: nothing sent for K = 20 s -> an echo request HoA -> HA inside the tunnel.
    w.advance(19s);
    w.poll();
    CHECK(mn.stage.counters().keepalives_sent == 0);
    w.wire.clear();
    w.advance(2s);
    w.poll();
    CHECK(mn.stage.counters().keepalives_sent == 1);
    CHECK(ha.stage.counters().keepalives_answered == 1);
    CHECK(mn.stage.counters().keepalive_replies == 1);
    CHECK(ha.node.inward.empty());  // consumed, never reaches the home network
    CHECK(mn.node.inward.empty());
    REQUIRE(w.wire.size() == 2);
    {
        // The keepalive as the HA received it: IP-in-UDP, Next Header 4, inner echo HoA -> HA.
        auto outer = view(w.wire[0]);
        auto udp = mip::udp_of(outer);
        REQUIRE(udp);
        CHECK(udp->source_port() == 61000);
        auto inner = core::Ipv4View::check(udp->payload().subspan(4));
        REQUIRE(inner);
        CHECK(inner->source() == home1);
        CHECK(inner->destination() == ha1);
        CHECK(core::IcmpView::check(inner->payload())->type() == core::icmp_type::echo_request);
    }

    // Traffic resets the idle timer: data at +30 s, so nothing is due at +45 s.
    w.advance(9s);
    REQUIRE(w.send(mn, test::echo_packet(home1, cn)).passed());
    w.advance(15s);
    w.poll();
    CHECK(mn.stage.counters().keepalives_sent == 1);

    // The NAT forgets the mapping: keepalives now arrive from a new port and are refused; after
    // three unanswered ones the MN re-registers from the same source port (RFC 3519 §5.2).
    nat.rebind(62000);
    for (int i = 0; i < 3; ++i) {
        w.advance(21s);
        w.poll();
    }
    CHECK(mn.stage.counters().keepalives_sent == 4);
    CHECK(mn.stage.counters().keepalive_replies == 1);
    CHECK(ha.stage.counters().dropped_binding_mismatch == 3);
    const auto requests_before = mn.stage.counters().requests_sent;
    w.advance(21s);
    w.poll();
    CHECK(mn.stage.counters().requests_sent == requests_before + 1);
    CHECK(ha.stage.agent().binding(home1)->udp_endpoint == core::Endpoint{nat_public, 62000});
    REQUIRE(w.send(ha, test::echo_packet(cn, home1, 3)).passed());
    CHECK(mn.node.inward.size() == 1);
}

TEST_CASE("MN stage follows its interface: movement re-registers and data follows; return home deregisters") {
    test::World w;
    auto cfg = test::mn_stage_config(home1, ha1, key1, {});
    cfg.care_of_source = mip::MobileNodeStage::CareOfSource::Interface;
    cfg.care_of_ifindex = 7;
    auto& mn = w.add_mn(std::move(cfg), {coa1, coa1b, home1});
    auto& ha = w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    w.poll();
    CHECK(mn.stage.counters().requests_sent == 0);  // no address yet
    CHECK(w.send(mn, test::echo_packet(home1, cn)).reason == DropReason::NotRegistered);

    // Another interface's address means nothing to this layer.
    mn.stage.on_event(test::external(core::AddressChanged{8, {coa2, 24}, true}), mn.ctx);
    CHECK(mn.ctx.sent.empty());

    mn.stage.on_event(test::external(core::AddressChanged{7, {coa1, 24}, true}), mn.ctx);
    w.net.pump();
    REQUIRE(mn.stage.active_registration());
    CHECK(mn.stage.active_registration()->care_of_address == coa1);

    // Move: while the new registration is pending, user data is held back (old CoA is gone).
    w.advance(5s);
    const auto events_before = static_cast<std::ptrdiff_t>(mn.ctx.events.size());
    mn.stage.on_event(test::external(core::AddressChanged{7, {coa1b, 16}, true}), mn.ctx);
    CHECK(mn.ctx.sent.size() == 1);
    // Layers that pinned their source to the care-of address are told, addressed by the old one.
    const auto moved = std::find_if(mn.ctx.events.begin() + events_before, mn.ctx.events.end(),
                                    [](const core::ControlEvent& e) { return std::holds_alternative<core::OuterAddressChanged>(e); });
    REQUIRE(moved != mn.ctx.events.end());
    CHECK(std::get<core::OuterAddressChanged>(*moved).old_address == coa1);
    CHECK(std::get<core::OuterAddressChanged>(*moved).new_address == coa1b);
    CHECK(std::get<core::OuterAddressChanged>(*moved).ifindex == 7);
    auto held = test::load(w.pool, test::echo_packet(home1, cn));
    CHECK(mn.stage.encapsulate(held, mn.ctx).reason == DropReason::NotRegistered);
    w.net.pump();
    REQUIRE(mn.stage.active_registration());
    CHECK(mn.stage.active_registration()->care_of_address == coa1b);
    CHECK(ha.stage.agent().binding(home1)->care_of_address == coa1b);
    auto ha_events = test::registrations(ha.ctx);
    REQUIRE(ha_events.size() == 2);
    CHECK(ha_events[1].care_of_address == coa1b);
    auto mn_events = test::registrations(mn.ctx);
    REQUIRE(mn_events.size() == 2);
    CHECK(mn_events[1].care_of_address == coa1b);

    w.wire.clear();
    REQUIRE(w.send(mn, test::echo_packet(home1, cn, 4)).passed());
    CHECK(view(w.wire.back()).source() == coa1b);
    REQUIRE(w.send(ha, test::echo_packet(cn, home1, 5)).passed());
    CHECK(view(w.wire.back()).destination() == coa1b);
    CHECK(mn.node.inward.size() == 1);

    // Back home (the interface now holds the home address): deregister, then plain packets.
    mn.stage.on_event(test::external(core::AddressChanged{7, {home1, 24}, true}), mn.ctx);
    REQUIRE(mn.ctx.sent.size() == 1);
    {
        auto dereg = core::Ipv4View::check(mn.ctx.sent[0].bytes());
        auto request = mip::RegistrationRequestView::check(mip::udp_of(*dereg)->payload());
        REQUIRE(request);
        CHECK(dereg->source() == home1);
        CHECK(request->lifetime() == 0);
        CHECK(request->care_of_address() == home1);
    }
    w.net.pump();
    CHECK(mn.stage.node().state() == mip::MobileNode::State::AtHome);
    CHECK_FALSE(ha.stage.agent().binding(home1));
    ha_events = test::registrations(ha.ctx);
    CHECK_FALSE(ha_events.back().registered);
    CHECK_FALSE(test::registrations(mn.ctx).back().registered);

    const auto plain = test::echo_packet(home1, cn, 6);
    auto buf = test::load(w.pool, plain);
    REQUIRE(mn.stage.encapsulate(buf, mn.ctx).passed());
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(plain));
    auto to_home = test::load(w.pool, test::echo_packet(cn, home1));
    CHECK(ha.stage.encapsulate(to_home, ha.ctx).reason == DropReason::NoBinding);

    // Losing the address while away again stops traffic.
    mn.stage.on_event(test::external(core::AddressChanged{7, {coa1, 24}, true}), mn.ctx);
    w.net.pump();
    REQUIRE(mn.stage.active_registration());
    mn.stage.on_event(test::external(core::AddressChanged{7, {coa1, 24}, false}), mn.ctx);
    CHECK(w.send(mn, test::echo_packet(home1, cn)).reason == DropReason::NotRegistered);
}

TEST_CASE("MN stage: InnerAddressAssigned is the RFC 5265 i-MIP care-of address") {
    test::World w;
    auto cfg = test::mn_stage_config(home1, ha1, key1, {});
    cfg.care_of_source = mip::MobileNodeStage::CareOfSource::InnerAddress;
    auto& mn = w.add_mn(std::move(cfg), {coa2});
    w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    w.poll();
    CHECK(mn.stage.counters().requests_sent == 0);
    mn.stage.on_event(test::external(core::AddressChanged{7, {coa1, 24}, true}), mn.ctx);  // not followed
    CHECK(mn.ctx.sent.empty());
    mn.stage.on_event({2, core::InnerAddressAssigned{{coa2, 32}}}, mn.ctx);
    w.net.pump();
    REQUIRE(mn.stage.active_registration());
    CHECK(mn.stage.active_registration()->care_of_address == coa2);

    SUBCASE("the VPN's IKE SA ends and a new one brings the same address back: register again") {
        const auto sent = mn.stage.counters().requests_sent;
        mn.stage.on_event({2, core::InnerAddressAssigned{{coa1, 32}, false}}, mn.ctx);  // not ours: nothing
        CHECK(mn.stage.counters().requests_sent == sent);
        mn.stage.on_event({2, core::InnerAddressAssigned{{coa2, 32}, false}}, mn.ctx);
        CHECK(mn.stage.counters().requests_sent == sent);  // no address, nothing to send from
        mn.stage.on_event({2, core::InnerAddressAssigned{{coa2, 32}}}, mn.ctx);
        CHECK(mn.stage.counters().requests_sent == sent + 1);
        w.net.pump();
        REQUIRE(mn.stage.active_registration());
        CHECK(mn.stage.active_registration()->care_of_address == coa2);
    }
}

TEST_CASE("MN stage: a request lost for want of a VPN SA goes out again when the SA below is installed") {
    // The VPN raises its inner address (our care-of address) just before it installs the
    // CHILD_SA: the first request meets no SA below and is dropped there.
    test::World w;
    auto cfg = test::mn_stage_config(home1, ha1, key1, {});
    cfg.care_of_source = mip::MobileNodeStage::CareOfSource::InnerAddress;
    auto& mn = w.add_mn(std::move(cfg), {coa2});
    w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    w.poll();
    mn.stage.on_event({2, core::InnerAddressAssigned{{coa2, 32}}}, mn.ctx);
    REQUIRE(mn.stage.counters().requests_sent == 1);
    mn.ctx.sent.clear();  // lost below: no SA yet
    // An inbound-only SA gives nothing to send on; an SA event from above is not ours.
    mn.stage.on_event({2, core::SaInstalled{0x1234, 0}}, mn.ctx);
    mn.stage.on_event(test::external(core::SaInstalled{0x1234, 0x5678}), mn.ctx);
    CHECK(mn.stage.counters().requests_sent == 1);
    // The outbound SA below: the request again at once, no time having passed.
    mn.stage.on_event({2, core::SaInstalled{0x1234, 0x5678}}, mn.ctx);
    CHECK(mn.stage.counters().requests_sent == 2);
    w.net.pump();
    REQUIRE(mn.stage.active_registration());
    CHECK(mn.stage.active_registration()->care_of_address == coa2);
    // Registered: a rekey's SA sends nothing.
    mn.stage.on_event({2, core::SaInstalled{0x9abc, 0xdef0}}, mn.ctx);
    CHECK(mn.stage.counters().requests_sent == 2);
}

TEST_CASE("MN stage: unregistered, unrelated and at-home traffic") {
    test::World w;
    auto& mn = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1), {coa1});
    // No HA on the network: the request goes nowhere.
    w.poll();
    CHECK(w.send(mn, test::echo_packet(home1, cn)).reason == DropReason::NotRegistered);
    CHECK(mn.stage.counters().dropped_not_registered == 1);
    // Another source (e.g. the CoA itself) is not this layer's business.
    const auto other = test::echo_packet(coa1, cn);
    auto buf = test::load(w.pool, other);
    REQUIRE(mn.stage.encapsulate(buf, mn.ctx).action == core::Action::NotMine);
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(other));
    CHECK(mn.stage.counters().passed_unrelated_out == 1);
    // Inbound: plain packets and other tunnels pass; the HA's tunnel without a binding does not.
    auto plain = test::load(w.pool, test::echo_packet(cn, coa1));
    CHECK(mn.stage.decapsulate(plain, mn.ctx).action == core::Action::NotMine);
    auto foreign_tunnel = test::load(w.pool, test::echo_packet(cn, home1));
    REQUIRE(mip::push_ip_in_ip(foreign_tunnel, {ip("198.51.100.7"), coa1}).passed());
    CHECK(mn.stage.decapsulate(foreign_tunnel, mn.ctx).action == core::Action::NotMine);
    auto from_ha = test::load(w.pool, test::echo_packet(cn, home1));
    REQUIRE(mip::push_ip_in_ip(from_ha, {ha1, coa1}).passed());
    CHECK(mn.stage.decapsulate(from_ha, mn.ctx).reason == DropReason::NotRegistered);
    CHECK(mn.stage.node().state() == mip::MobileNode::State::Registering);
}

TEST_CASE("MN stage: its own registration request coming back from the host is a loop, dropped") {
    test::World w;
    auto& mn = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1), {coa1});
    w.poll();  // sends the first request (nobody answers)
    REQUIRE_FALSE(w.wire.empty());
    // The host routed that request into the TUN: it must not go out again.
    auto looped = test::load(w.pool, w.wire.back());
    CHECK(mn.stage.encapsulate(looped, mn.ctx).reason == DropReason::Loop);
    CHECK(mn.stage.counters().dropped_loop == 1);
    // Other UDP to port 434 from the host (another program's) is not ours to judge.
    auto other = test::load(w.pool, test::echo_packet(coa1, cn));
    CHECK(mn.stage.encapsulate(other, mn.ctx).action == core::Action::NotMine);
}

TEST_CASE("MN stage: tunnelled packets must match the negotiated mode and addresses") {
    test::World w;
    auto& mn = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1, Udp::Wanted), {coa1});
    w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    w.add_nat(coa1, nat_public, 61000);
    w.poll();
    REQUIRE(mn.stage.active_registration()->mode == mip::TunnelMode::Udp);
    struct Row {
        const char* name;
        bool udp;
        std::uint16_t source_port, destination_port;
        core::Ipv4Address destination;
        std::uint8_t next_header;
        DropReason expected;
    };
    const Row rows[] = {
        {"IP-in-IP after UDP was negotiated", false, 0, 0, coa1, 4, DropReason::BindingMismatch},
        {"UDP to another port", true, 434, 40001, coa1, 4, DropReason::BindingMismatch},
        {"UDP to another address", true, 434, 40000, coa2, 4, DropReason::BindingMismatch},
        {"Next Header GRE", true, 434, 40000, coa1, 47, DropReason::BadNextHeader},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto buf = test::load(w.pool, test::echo_packet(cn, home1));
        const mip::OuterHeader outer{ha1, row.destination};
        REQUIRE((row.udp ? mip::push_ip_in_udp(buf, outer, row.source_port, row.destination_port) : mip::push_ip_in_ip(buf, outer)).passed());
        if (row.udp) {
            buf.data()[29] = row.next_header;
            core::UdpMutView::check(buf.bytes().subspan(20))->update_checksum(ha1, row.destination);
        }
        auto v = mn.stage.decapsulate(buf, mn.ctx);
        CHECK(v.action == core::Action::Drop);
        CHECK(v.reason == row.expected);
    }
    // A corrupted UDP checksum on otherwise valid tunnel data.
    auto buf = test::load(w.pool, test::echo_packet(cn, home1));
    REQUIRE(mip::push_ip_in_udp(buf, {ha1, coa1}, 434, 40000).passed());
    buf.data()[buf.size() - 1] ^= 0xFF;
    CHECK(mn.stage.decapsulate(buf, mn.ctx).reason == DropReason::Malformed);
}

TEST_CASE("two MN stages with separate home agents and keys in one process") {
    test::World w;
    const auto ha2 = ip("10.2.0.1");
    const auto home_b = ip("10.2.0.77");
    auto& a = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1), {coa1});
    auto& b = w.add_mn(test::mn_stage_config(home_b, ha2, key2, coa2, Udp::Forced), {coa2});
    auto& h1 = w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    auto& h2 = w.add_ha(test::ha_stage_config(ha2, *core::Ipv4Prefix::parse("10.2.0.0/24"), {{home_b, &key2}}), {ha2});
    w.poll();
    REQUIRE(a.stage.active_registration());
    REQUIRE(b.stage.active_registration());
    CHECK(a.stage.active_registration()->mode == mip::TunnelMode::IpInIp);
    CHECK(b.stage.active_registration()->mode == mip::TunnelMode::Udp);  // forced, no NAT
    CHECK(h1.stage.agent().bindings().size() == 1);
    CHECK(h2.stage.agent().bindings().size() == 1);
    CHECK_FALSE(h1.stage.agent().binding(home_b));
    CHECK_FALSE(h2.stage.agent().binding(home1));

    REQUIRE(w.send(a, test::echo_packet(home1, cn, 1)).passed());
    REQUIRE(w.send(b, test::echo_packet(home_b, cn, 2)).passed());
    CHECK(h1.node.inward.size() == 1);
    CHECK(h2.node.inward.size() == 1);
    REQUIRE(w.send(h1, test::echo_packet(cn, home1, 3)).passed());
    REQUIRE(w.send(h2, test::echo_packet(cn, home_b, 4)).passed());
    CHECK(a.node.inward.size() == 1);
    CHECK(b.node.inward.size() == 1);
    // HA1 does not serve B's home address.
    auto stray = test::load(w.pool, test::echo_packet(cn, home_b));
    CHECK(h1.stage.encapsulate(stray, h1.ctx).reason == DropReason::NoBinding);
}

TEST_CASE("HA stage: checksum, broadcast destination, expiry and capped report") {
    test::World w;
    auto& mn1 = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1), {coa1});
    auto& mn2 = w.add_mn(test::mn_stage_config(home2, ha1, key2, coa2), {coa2});
    auto hcfg = test::ha_stage_config(ha1, home_net, {{home1, &key1}, {home2, &key2}});
    hcfg.report_limit = 1;
    auto& ha = w.add_ha(std::move(hcfg), {ha1, ip("10.1.0.255"), ip("255.255.255.255")});
    (void)mn2;

    // A request with a corrupted (non-zero) UDP checksum is discarded silently (check 1).
    mn1.stage.poll(mn1.ctx);
    REQUIRE(mn1.ctx.sent.size() == 1);
    auto bad = std::move(mn1.ctx.sent[0]);
    mn1.ctx.sent.clear();
    bad.data()[bad.size() - 1] ^= 0x01;
    CHECK(ha.stage.decapsulate(bad, ha.ctx).reason == DropReason::Malformed);
    CHECK(ha.ctx.sent.empty());
    CHECK(ha.stage.counters().requests_discarded == 1);

    // Sent to the subnet-directed broadcast: 136, answered from the unicast address.
    w.advance(2s);
    mn1.stage.poll(mn1.ctx);
    REQUIRE(mn1.ctx.sent.size() == 1);
    auto to_bcast = std::move(mn1.ctx.sent[0]);
    mn1.ctx.sent.clear();
    test::rewrite(to_bcast.bytes(), std::nullopt, core::Endpoint{ip("10.1.0.255"), 0});
    CHECK(ha.stage.decapsulate(to_bcast, ha.ctx).action == core::Action::Consumed);
    REQUIRE(ha.ctx.sent.size() == 1);
    {
        auto reply_ip = core::Ipv4View::check(ha.ctx.sent[0].bytes());
        CHECK(reply_ip->source() == ha1);
        auto reply = mip::RegistrationReplyView::check(mip::udp_of(*reply_ip)->payload());
        REQUIRE(reply);
        CHECK(reply->code() == mip::reply_code::ha_unknown_home_agent);
    }
    ha.ctx.sent.clear();

    // Now register both properly (the next retransmission), then let them expire.
    w.advance(5s);
    w.poll();
    REQUIRE(ha.stage.agent().bindings().size() == 2);
    test::FlatStatus status;
    ha.stage.report(status);
    CHECK(status.values["binding_count"] == "2");
    CHECK(status.values["bindings_listed"] == "1");
    CHECK(status.count("bindings[0].") > 0);
    CHECK(status.count("bindings[1].") == 0);

    // The MN renews well before expiry; stop it (take both off the network) and let the HA expire them.
    w.net.nodes = {&ha.node};
    w.advance(1001s);
    const auto before = test::registrations(ha.ctx).size();
    ha.stage.poll(ha.ctx);
    auto events = test::registrations(ha.ctx);
    REQUIRE(events.size() == before + 2);
    CHECK_FALSE(events.back().registered);
    CHECK(ha.stage.agent().bindings().size() == 0);
    CHECK(ha.stage.counters().bindings_expired == 2);
    auto late = test::load(w.pool, test::echo_packet(cn, home1));
    CHECK(ha.stage.encapsulate(late, ha.ctx).reason == DropReason::NoBinding);
}

TEST_CASE("HA stage: a half-bound binding (RFC 3519 R flag) completes on the first keepalive") {
    core::BufferPool pool(32, 2048);
    test::FakeStageContext ctx(pool);
    test::SeededRandom random(3);
    mip::HomeAgentStage ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), random);
    const auto fa = ip("198.51.100.20");

    // A co-located MN registering through an FA that demands it (R): D, T and a Tunnel Request with R.
    mip::RegistrationRequest r;
    r.flags = mip::RegistrationRequestView::flag_d | mip::RegistrationRequestView::flag_t;
    r.lifetime = 60;
    r.home_address = home1;
    r.home_agent = ha1;
    r.care_of_address = coa1;
    r.identification = mip::ntp_time(ctx.now(), test::world_ntp_offset);
    mip::RequestExtensions ext;
    ext.udp_tunnel = mip::UdpTunnelRequest{false, true, 4};
    auto sa = test::make_sa(256, key1);
    auto msg = mip::build_request(r, ext, sa.auth_key());
    REQUIRE(msg);
    auto req = test::load(pool, test::udp_packet({fa, 434}, {ha1, 434}, msg->bytes()));
    CHECK(ha.decapsulate(req, ctx).action == core::Action::Consumed);
    auto b = ha.agent().binding(home1);
    REQUIRE(b);
    CHECK(b->half_bound);
    auto early = test::load(pool, test::echo_packet(cn, home1));
    CHECK(ha.encapsulate(early, ctx).reason == DropReason::NoBinding);

    auto keepalive = [&](core::Endpoint from) {
        auto buf = test::load(pool, test::echo_packet(home1, ha1, 1, 8));
        REQUIRE(mip::push_ip_in_udp(buf, {from.address, ha1}, from.port, 434).passed());
        return buf;
    };
    // Data (not a keepalive) or a keepalive from another address does not complete it.
    auto data = test::load(pool, test::echo_packet(home1, cn));
    REQUIRE(mip::push_ip_in_udp(data, {fa, ha1}, 40001, 434).passed());
    CHECK(ha.decapsulate(data, ctx).reason == DropReason::BindingMismatch);
    auto wrong = keepalive({ip("192.0.2.5"), 40001});
    CHECK(ha.decapsulate(wrong, ctx).reason == DropReason::BindingMismatch);
    CHECK(ha.agent().binding(home1)->half_bound);

    ctx.sent.clear();
    auto first = keepalive({fa, 40001});
    CHECK(ha.decapsulate(first, ctx).action == core::Action::Consumed);
    b = ha.agent().binding(home1);
    CHECK_FALSE(b->half_bound);
    CHECK(b->udp_endpoint == core::Endpoint{fa, 40001});
    CHECK(ha.counters().half_bound_completed == 1);
    // The echo reply goes back through the tunnel to the learnt endpoint.
    REQUIRE(ctx.sent.size() == 1);
    auto reply = core::Ipv4View::check(ctx.sent[0].bytes());
    CHECK(reply->source() == ha1);
    CHECK(reply->destination() == fa);
    auto udp = mip::udp_of(*reply);
    CHECK(udp->destination_port() == 40001);
    CHECK(udp->source_port() == 434);
    auto inner = core::Ipv4View::check(udp->payload().subspan(4));
    REQUIRE(inner);
    CHECK(inner->source() == ha1);
    CHECK(inner->destination() == home1);
    auto icmp = core::IcmpView::check(inner->payload());
    CHECK(icmp->type() == core::icmp_type::echo_reply);
    CHECK(icmp->checksum_valid());
    CHECK(icmp->body().size() == 8);
    auto now_ok = test::load(pool, test::echo_packet(cn, home1));
    CHECK(ha.encapsulate(now_ok, ctx).passed());
}

namespace {
/// A StageContext that keeps the stage's log lines (FakeStageContext discards them).
class LoggingStageContext final : public core::StageContext {
public:
    explicit LoggingStageContext(core::BufferPool& pool)
        : pool_(pool), log_("ha", core::LogLevel::Info, [this](core::LogLevel level, std::string_view, std::string_view message) {
              if (level == core::LogLevel::Warn) warnings.emplace_back(message);
          }) {}
    core::TimePoint now() const override { return now_; }
    core::PacketBuf allocate() override { return pool_.acquire(128); }
    void send_control(core::PacketBuf&& p) override { sent.push_back(std::move(p)); }
    void deliver_inward(core::PacketBuf&&) override {}
    void raise(core::ControlEvent) override {}
    core::Logger& log() override { return log_; }
    void advance(core::Duration d) { now_ += d; }

    std::vector<core::PacketBuf> sent;
    std::vector<std::string> warnings;

private:
    core::BufferPool& pool_;
    core::Logger log_;
    core::TimePoint now_ = core::TimePoint{} + 1h;
};

/// A home agent stage serving home1 (key1) and home2 (key2, NAI "b@example.org").
struct FailureBench {
    core::BufferPool pool{64, 2048};
    LoggingStageContext ctx{pool};
    test::SeededRandom random{5};
    mip::HomeAgentStage ha;

    explicit FailureBench(std::size_t log_nodes = 1024, std::vector<core::Ipv4Prefix> trusted = {})
        : ha(config(log_nodes, std::move(trusted)), random) {}
    static mip::HomeAgentStage::Config config(std::size_t log_nodes, std::vector<core::Ipv4Prefix> trusted) {
        auto c = test::ha_stage_config(ha1, home_net, {{home1, &key1}, {home2, &key2}});
        c.agent.mobile_nodes[1].nai = "b@example.org";
        c.agent.trusted_networks = std::move(trusted);
        c.failure_log_nodes = log_nodes;
        // Every failure answered and counted under its own reason; the flood limits on 131/133
        // replies have their own tests.
        c.agent.denial_reply_interval = core::Duration::zero();
        return c;
    }

    struct Request {
        mip::RegistrationRequest fixed{mip::RegistrationRequestView::flag_d | mip::RegistrationRequestView::flag_t, 600, home1, ha1, coa1, 0};
        mip::RequestExtensions ext;
        std::uint32_t spi = 256;
        const test::Bytes* key = &key1;
        test::Bytes trailer;  // appended after the MHAE
    };
    Request request() const {
        Request r;
        r.fixed.identification = mip::ntp_time(ctx.now(), test::world_ntp_offset);
        return r;
    }
    test::Bytes payload(const Request& r) const {
        auto m = mip::build_request(r.fixed, r.ext, test::make_sa(r.spi, *r.key).auth_key());
        REQUIRE(m);
        test::Bytes b(m->bytes().begin(), m->bytes().end());
        b.insert(b.end(), r.trailer.begin(), r.trailer.end());
        return b;
    }
    core::Verdict send(const test::Bytes& udp_payload, core::Endpoint from = {coa1, 40000}) {
        auto p = test::load(pool, test::udp_packet(from, {ha1, 434}, udp_payload));
        return ha.decapsulate(p, ctx);
    }
    std::string status(const std::string& key) const {
        test::FlatStatus s;
        ha.report(s);
        return s.values[key];
    }
};
}  // namespace

TEST_CASE("HA stage: each discarded or rejected request is counted by reason and logged naming the node") {
    using F = mip::HomeAgentStage::RequestFailure;
    struct Row {
        const char* name;
        std::function<test::Bytes(FailureBench&)> make;
        F reason;
        const char* log_text;
    };
    const Row rows[] = {
        {"malformed", [](FailureBench&) { return "01 00 00 00"_hex; }, F::Malformed,
         "registration request for ? from 192.168.1.23:40000 discarded: malformed request"},
        {"unknown extension",
         [](FailureBench& b) {
             auto r = b.request();
             r.trailer = "32 00"_hex;
             return b.payload(r);
         },
         F::UnknownExtension, "for 10.1.0.77 from 192.168.1.23:40000 discarded: unknown non-skippable extension"},
        {"unknown home address",
         [](FailureBench& b) {
             auto r = b.request();
             r.fixed.home_address = ip("10.1.0.99");
             return b.payload(r);
         },
         F::UnknownHomeAddress, "for 10.1.0.99 from 192.168.1.23:40000 discarded: no mobile node configured with this home address or NAI"},
        {"unknown NAI",
         [](FailureBench& b) {
             auto r = b.request();
             r.fixed.home_address = core::Ipv4Address{};
             r.ext.nai = "who@example.org";
             return b.payload(r);
         },
         F::UnknownHomeAddress, "for ? (NAI who@example.org) from 192.168.1.23:40000 discarded: no mobile node configured"},
        {"NAI that would forge a log line",
         [](FailureBench& b) {
             auto r = b.request();
             r.fixed.home_address = core::Ipv4Address{};
             r.ext.nai = "x\nha: binding 10.1.0.77";
             return b.payload(r);
         },
         F::UnknownHomeAddress, "for ? (NAI <not printable>) from 192.168.1.23:40000 discarded"},
        {"no MHAE",
         [](FailureBench& b) {
             auto p = b.payload(b.request());
             p.resize(mip::RegistrationRequestView::header_len);
             return p;
         },
         F::NoAuthExtension, "for 10.1.0.77 from 192.168.1.23:40000 discarded: no mobile-home authentication extension"},
        {"unknown SPI",
         [](FailureBench& b) {
             auto r = b.request();
             r.spi = 999;
             return b.payload(r);
         },
         F::UnknownSpi, "for 10.1.0.77 from 192.168.1.23:40000 discarded: SPI is not the one configured for this mobile node (got 999)"},
        {"FHAE without an FA key",
         [](FailureBench& b) {
             auto r = b.request();
             r.trailer = "22 14 00 00 01 00 00000000000000000000000000000000"_hex;
             return b.payload(r);
         },
         F::UnexpectedFhae, "for 10.1.0.77 from 192.168.1.23:40000 discarded: foreign-home authentication extension"},
        {"bad authenticator",
         [](FailureBench& b) {
             auto r = b.request();
             r.key = &key2;
             return b.payload(r);
         },
         F::BadAuthenticator, "for 10.1.0.77 from 192.168.1.23:40000 rejected with code 131: authenticator does not verify (wrong key?)"},
        {"bad authenticator, node named by its NAI",
         [](FailureBench& b) {
             auto r = b.request();
             r.fixed.home_address = core::Ipv4Address{};
             r.ext.nai = "b@example.org";
             return b.payload(r);  // key1, but b's key is key2
         },
         F::BadAuthenticator, "for 10.1.0.78 (NAI b@example.org) from 192.168.1.23:40000 rejected with code 131"},
        {"identification mismatch",
         [](FailureBench& b) {
             auto r = b.request();
             r.fixed.identification = mip::ntp_time(b.ctx.now() - 1h, test::world_ntp_offset);
             return b.payload(r);
         },
         F::IdentificationMismatch, "for 10.1.0.77 from 192.168.1.23:40000 rejected with code 133: identification too far from our clock"},
        {"another home agent",
         [](FailureBench& b) {
             auto r = b.request();
             r.fixed.home_agent = ip("10.1.0.2");
             return b.payload(r);
         },
         F::UnknownHomeAgent, "rejected with code 136: sent to a broadcast address or to another home agent"},
        {"reserved flag",
         [](FailureBench& b) {
             auto r = b.request();
             r.fixed.flags |= mip::RegistrationRequestView::flag_x;
             return b.payload(r);
         },
         F::PoorlyFormed, "rejected with code 134: poorly formed request"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        FailureBench b;
        const auto v = b.send(row.make(b));
        CHECK(v.action == core::Action::Consumed);
        const bool discarded = mip::HomeAgentStage::is_discard(row.reason);
        CHECK(b.ctx.sent.size() == (discarded ? 0u : 1u));
        CHECK(b.ha.failures(row.reason) == 1);
        CHECK(b.ha.counters().requests_discarded == (discarded ? 1u : 0u));
        CHECK(b.ha.counters().requests_rejected == (discarded ? 0u : 1u));
        const std::string key = std::string(discarded ? "counters.discarded." : "counters.rejected.") +
                                std::string(mip::HomeAgentStage::status_key(row.reason));
        test::FlatStatus status;
        b.ha.report(status);
        CHECK(status.values[key] == "1");
        CHECK(status.count("counters.discarded.") + status.count("counters.rejected.") == 1);  // only this reason
        REQUIRE(b.ctx.warnings.size() == 1);
        CAPTURE(b.ctx.warnings[0]);
        CHECK(b.ctx.warnings[0].find(row.log_text) != std::string::npos);
    }

    // A bad UDP checksum (check 1) is dropped before the core, counted and logged the same way.
    FailureBench b;
    auto p = test::load(b.pool, test::udp_packet({coa1, 40000}, {ha1, 434}, b.payload(b.request())));
    p.data()[p.size() - 1] ^= 0x01;
    CHECK(b.ha.decapsulate(p, b.ctx).reason == DropReason::Malformed);
    CHECK(b.ha.failures(mip::HomeAgentStage::RequestFailure::BadUdpChecksum) == 1);
    CHECK(b.status("counters.discarded.bad_udp_checksum") == "1");
    CHECK(b.status("counters.requests_discarded") == "1");
    REQUIRE(b.ctx.warnings.size() == 1);
    CHECK(b.ctx.warnings[0].find("for 10.1.0.77 from 192.168.1.23:40000 discarded: UDP checksum does not verify") != std::string::npos);

    // An accepted request adds to no failure counter and logs no warning.
    FailureBench ok;
    CHECK(ok.send(ok.payload(ok.request())).action == core::Action::Consumed);
    CHECK(ok.ha.agent().binding(home1));
    CHECK(ok.ha.counters().requests_discarded + ok.ha.counters().requests_rejected == 0);
    CHECK(ok.ctx.warnings.empty());
    test::FlatStatus quiet;
    ok.ha.report(quiet);
    CHECK(quiet.count("counters.rejected.") == 0);
    CHECK(quiet.count("counters.discarded.") == 0);
    CHECK(quiet.values["counters.requests_rejected"] == "0");
}

TEST_CASE("HA stage: failures are logged once per mobile node per interval, with bounded memory") {
    FailureBench b;
    auto bad_auth = b.request();
    bad_auth.key = &key2;
    // A node retrying with the wrong key: every try counted, one line.
    for (int i = 0; i < 5; ++i) {
        bad_auth.fixed.identification = mip::ntp_time(b.ctx.now(), test::world_ntp_offset) + static_cast<std::uint64_t>(i);
        (void)b.send(b.payload(bad_auth));
    }
    CHECK(b.ha.failures(mip::HomeAgentStage::RequestFailure::BadAuthenticator) == 5);
    CHECK(b.ctx.warnings.size() == 1);
    // Another node's failure meanwhile has its own line.
    auto other = b.request();
    other.fixed.home_address = home2;
    other.key = &key1;
    (void)b.send(b.payload(other), {coa2, 40000});
    REQUIRE(b.ctx.warnings.size() == 2);
    CHECK(b.ctx.warnings[1].find("for 10.1.0.78 (NAI") == std::string::npos);  // it sent no NAI
    CHECK(b.ctx.warnings[1].find("for 10.1.0.78 from 192.168.2.50:40000") != std::string::npos);
    // Within the interval the first node stays quiet; after it, one line says what was held back.
    b.ctx.advance(30s);
    bad_auth.fixed.identification = mip::ntp_time(b.ctx.now(), test::world_ntp_offset);
    (void)b.send(b.payload(bad_auth));
    CHECK(b.ctx.warnings.size() == 2);
    b.ctx.advance(31s);
    bad_auth.fixed.identification = mip::ntp_time(b.ctx.now(), test::world_ntp_offset);
    (void)b.send(b.payload(bad_auth));
    REQUIRE(b.ctx.warnings.size() == 3);
    CHECK(b.ctx.warnings[2].find("for 10.1.0.77 ") != std::string::npos);
    CHECK(b.ctx.warnings[2].find("(5 more from this node not logged)") != std::string::npos);
    CHECK(b.ha.failures(mip::HomeAgentStage::RequestFailure::BadAuthenticator) == 8);  // 7 from home1, 1 from home2

    // Memory is bounded: with room for two nodes, a flood of home addresses keeps two, and a
    // node pushed out is logged again (a line more rather than a table that grows).
    FailureBench small(2);
    auto unknown = [&](const char* home) {
        auto r = small.request();
        r.fixed.home_address = ip(home);
        (void)small.send(small.payload(r));
    };
    unknown("10.1.0.100");
    unknown("10.1.0.101");
    unknown("10.1.0.100");
    CHECK(small.ctx.warnings.size() == 2);
    unknown("10.1.0.102");  // pushes 10.1.0.100 out
    unknown("10.1.0.100");
    CHECK(small.ctx.warnings.size() == 4);
    for (int i = 0; i < 200; ++i) {
        auto r = small.request();
        r.fixed.home_address = core::Ipv4Address{ip("10.1.1.0").value + static_cast<std::uint32_t>(i)};
        (void)small.send(small.payload(r));
    }
    CHECK(small.ha.failure_log_nodes() == 2);
    CHECK(small.ha.failures(mip::HomeAgentStage::RequestFailure::UnknownHomeAddress) == 205);
}

TEST_CASE("HA stage: with trusted networks, requests from elsewhere are dropped, counted and logged rate-limited") {
    FailureBench b(1024, {*core::Ipv4Prefix::parse("192.168.1.0/24")});
    // From 192.168.2.50 (outside the list): nothing sent, no binding, one counter, one line.
    for (int i = 0; i < 5; ++i) {
        auto r = b.request();
        r.fixed.identification += static_cast<std::uint64_t>(i);
        CHECK(b.send(b.payload(r), {coa2, 40000}).action == core::Action::Consumed);
    }
    CHECK(b.ctx.sent.empty());
    CHECK_FALSE(b.ha.agent().binding(home1));
    CHECK(b.ha.failures(mip::HomeAgentStage::RequestFailure::UntrustedSource) == 5);
    CHECK(b.ha.counters().requests_discarded == 5);
    CHECK(b.status("counters.discarded.untrusted_source") == "5");
    CHECK(b.status("trusted_networks") == "192.168.1.0/24");
    REQUIRE(b.ctx.warnings.size() == 1);
    CHECK(b.ctx.warnings[0].find("for 10.1.0.77 from 192.168.2.50:40000 discarded: source address is not in trusted_networks") !=
          std::string::npos);
    b.ctx.advance(61s);
    (void)b.send(b.payload(b.request()), {coa2, 40000});
    REQUIRE(b.ctx.warnings.size() == 2);
    CHECK(b.ctx.warnings[1].find("(4 more from this node not logged)") != std::string::npos);

    // From the trusted subnet: accepted, and the reply on the wire carries TNC before the MHAE.
    CHECK(b.send(b.payload(b.request())).action == core::Action::Consumed);
    REQUIRE(b.ctx.sent.size() == 1);
    CHECK(b.ha.agent().binding(home1));
    auto ipv = core::Ipv4View::check(b.ctx.sent[0].bytes());
    REQUIRE(ipv);
    auto udp = core::UdpView::check(ipv->payload());
    REQUIRE(udp);
    mip::ScannedExtensions s;
    REQUIRE_FALSE(mip::scan_extensions(udp->payload(), 20, mip::MessageKind::Reply, s));
    CHECK(s.trusted_networks_authenticated());
    CHECK(mip::verify_authenticator(udp->payload(), *s.mobile_home_auth, key1));
    CHECK(b.ha.failures(mip::HomeAgentStage::RequestFailure::UntrustedSource) == 6);
}

TEST_CASE("HA stage: without trusted networks, replies carry no TNC") {
    FailureBench b;
    CHECK(b.send(b.payload(b.request()), {coa2, 40000}).action == core::Action::Consumed);
    REQUIRE(b.ctx.sent.size() == 1);
    auto ipv = core::Ipv4View::check(b.ctx.sent[0].bytes());
    auto udp = core::UdpView::check(ipv->payload());
    mip::ScannedExtensions s;
    REQUIRE_FALSE(mip::scan_extensions(udp->payload(), 20, mip::MessageKind::Reply, s));
    CHECK_FALSE(s.trusted_networks);
    test::FlatStatus status;
    b.ha.report(status);
    CHECK(status.values.count("trusted_networks") == 0);
}

namespace {
/// Connects two pipelines back to back: what one sends outward the other decapsulates.
struct Link final : core::PipelineIo {
    std::vector<core::PacketBuf> outer;
    std::vector<core::PacketBuf> inner;
    void send_outer(core::PacketBuf&& p) override { outer.push_back(std::move(p)); }
    void deliver_inner(core::PacketBuf&& p) override { inner.push_back(std::move(p)); }
};

void shuttle(core::Pipeline& a, Link& a_io, core::Pipeline& b, Link& b_io) {
    for (int round = 0; round < 16 && (!a_io.outer.empty() || !b_io.outer.empty()); ++round) {
        auto from_a = std::move(a_io.outer);
        a_io.outer.clear();
        for (auto& p : from_a)
            if (b.decapsulate(p).passed()) b_io.inner.push_back(std::move(p));
        auto from_b = std::move(b_io.outer);
        b_io.outer.clear();
        for (auto& p : from_b)
            if (a.decapsulate(p).passed()) a_io.inner.push_back(std::move(p));
    }
}
}  // namespace

TEST_CASE("stacking: MN stage over a fixed IP-in-IP stage and over another MN layer round-trips in place") {
    // i-MIP over an outer tunnel: [mip.mobile_node, mip.ipip] against [mip.home_agent, mip.ipip].
    const auto outer_mn = ip("198.51.100.10");
    const auto outer_gw = ip("198.51.100.1");
    for (bool nested_mip : {false, true}) {
        CAPTURE(nested_mip);
        core::BufferPool pool(64, 2048);
        test::SeededRandom random(11);
        const auto x_home = ip("10.200.0.5");
        const auto x_ha = ip("10.200.0.1");
        std::vector<std::unique_ptr<core::Stage>> mn_stages;
        std::vector<std::unique_ptr<core::Stage>> ha_stages;
        // x-MIP below i-MIP: the i-MIP CoA is the x-MIP home address (RFC 5265 shape, without
        // the VPN layer), and the x-HA sits below the i-HA in the peer pipeline.
        const auto i_care_of = nested_mip ? x_home : coa1;
        mn_stages.push_back(std::make_unique<mip::MobileNodeStage>(test::mn_stage_config(home1, ha1, key1, i_care_of, Udp::Forced), random));
        ha_stages.push_back(std::make_unique<mip::HomeAgentStage>(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), random));
        if (nested_mip) {
            mn_stages.push_back(std::make_unique<mip::MobileNodeStage>(test::mn_stage_config(x_home, x_ha, key2, outer_mn), random));
            ha_stages.push_back(std::make_unique<mip::HomeAgentStage>(
                test::ha_stage_config(x_ha, *core::Ipv4Prefix::parse("10.200.0.0/24"), {{x_home, &key2}}), random));
        } else {
            mn_stages.push_back(std::make_unique<mip::IpInIpStage>(mip::IpInIpStage::Config{outer_mn, outer_gw}));
            ha_stages.push_back(std::make_unique<mip::IpInIpStage>(mip::IpInIpStage::Config{outer_gw, outer_mn}));
        }
        core::Pipeline mn(std::move(mn_stages), pool, core::null_logger());
        core::Pipeline ha(std::move(ha_stages), pool, core::null_logger());
        Link mn_io, ha_io;
        mn.attach(&mn_io);
        ha.attach(&ha_io);
        auto t = core::TimePoint{} + 1h;
        // The i-layer's first request is dropped while the x-layer registers; its retransmission
        // (>= 1 s later) gets through.
        for (int i = 0; i < 4; ++i) {
            mn.set_now(t);
            ha.set_now(t);
            (void)mn.poll();
            (void)ha.poll();
            shuttle(mn, mn_io, ha, ha_io);
            t += 2s;
        }
        const auto& stage = static_cast<const mip::MobileNodeStage&>(mn.stage(0));
        REQUIRE(stage.active_registration());
        CHECK(stage.active_registration()->mode == mip::TunnelMode::Udp);
        if (nested_mip) REQUIRE(static_cast<const mip::MobileNodeStage&>(mn.stage(1)).active_registration());

        // Up: TUN -> both layers -> peer pipeline -> home network, same block, same bytes.
        const auto up = test::echo_packet(home1, cn, 1, 64);
        auto buf = pool.acquire(mn.headroom());
        REQUIRE(buf.resize(up.size()));
        std::copy(up.begin(), up.end(), buf.data());
        const auto* block = buf.block();
        REQUIRE(mn.encapsulate(buf).passed());
        CHECK(buf.size() == up.size() + mip::ip_in_udp_overhead + mip::ip_in_ip_overhead);
        REQUIRE(ha.decapsulate(buf).passed());
        CHECK(buf.block() == block);
        CHECK(test::to_hex(buf.bytes()) == test::to_hex(up));

        // Down: home network -> HA pipeline -> MN pipeline -> TUN.
        const auto down = test::echo_packet(cn, home1, 2, 64, 60, core::icmp_type::echo_reply);
        auto dbuf = pool.acquire(ha.headroom());
        REQUIRE(dbuf.resize(down.size()));
        std::copy(down.begin(), down.end(), dbuf.data());
        const auto* dblock = dbuf.block();
        REQUIRE(ha.encapsulate(dbuf).passed());
        REQUIRE(mn.decapsulate(dbuf).passed());
        CHECK(dbuf.block() == dblock);
        CHECK(test::to_hex(dbuf.bytes()) == test::to_hex(down));
    }
}

namespace {

/// An agent advertisement (RFC 5944 §2.1) from `source` with IP TTL `ttl`, H set.
test::Bytes home_agent_advertisement(core::Ipv4Address source, core::Ipv4Address destination, std::uint8_t ttl) {
    mip::AgentAdvertisement a;
    a.flags = mip::MobilityAgentExtView::flag_h;
    a.sequence_number = 7;
    a.lifetime = 30;
    test::Bytes p(core::Ipv4Header::len + a.emitted_len());
    core::Ipv4Header h;
    h.total_length = static_cast<std::uint16_t>(p.size());
    h.ttl = ttl;
    h.protocol = core::ip_protocol::icmp;
    h.source = source;
    h.destination = destination;
    h.emit(p);
    REQUIRE(a.emit(std::span(p).subspan(core::Ipv4Header::len)) == a.emitted_len());
    return p;
}

}  // namespace

TEST_CASE("MN stage: an advertisement from beyond the link (TTL != 1) cannot tell it that it is home") {
    // Found by the hostile-sender lab: an attacker anywhere on the Internet sent the MN an
    // advertisement with H set from its home agent's address, and the MN deregistered.
    test::World w;
    auto& mn = w.add_mn(test::mn_stage_config(home1, ha1, key1, coa1), {coa1});
    w.add_ha(test::ha_stage_config(ha1, home_net, {{home1, &key1}}), {ha1});
    w.poll();
    w.net.pump();
    REQUIRE(mn.stage.active_registration());
    const auto sent_before = mn.stage.counters().requests_sent;

    auto forged = test::load(w.pool, home_agent_advertisement(ha1, coa1, 63));
    CHECK(mn.stage.decapsulate(forged, mn.ctx).reason == DropReason::NotOnLink);
    CHECK(mn.stage.counters().advertisements_received == 0);
    CHECK(mn.stage.counters().requests_sent == sent_before);
    REQUIRE(mn.stage.active_registration());
    CHECK(mn.stage.active_registration()->care_of_address == coa1);

    // The same advertisement with TTL 1, as a home agent on the link sends it, is heard.
    auto on_link = test::load(w.pool, home_agent_advertisement(ha1, coa1, 1));
    CHECK(mn.stage.decapsulate(on_link, mn.ctx).action == core::Action::Consumed);
    CHECK(mn.stage.counters().advertisements_received == 1);
}
