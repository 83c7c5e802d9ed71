// SPDX-License-Identifier: MIT
// The i-MIP MobileNodeStage with RFC 5265 detection on two interfaces, alone: its direct
// requests go to a real internal home agent stage (trusted networks: the office subnet), the
// x-MIP layer below is played by RegistrationChanged events from a lower position, and the
// interface a reply arrives on is PacketMeta::ingress_ifindex, as the shell fills it in.
#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <variant>

#include "crypto/random.hpp"
#include "mip/tunnel_encap.hpp"
#include "tests/mip/mobile_ip_world.hpp"
#include "tests/support/flat_status.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using namespace std::chrono_literals;
using test::ip;
using Access = core::AccessModeChanged::Mode;
using ND = mip::NetworkDetection;

namespace {

const auto key = "00112233445566778899aabbccddeeff"_hex;
const auto home = ip("10.1.0.77");
const auto internal_ha = ip("10.1.0.1");
const auto external_ha = ip("198.51.100.1");
const auto external_home = ip("198.51.100.77");
const auto office = ip("10.2.0.50");
const auto cafe = ip("192.0.2.50");
const auto cn = ip("10.1.0.9");
constexpr std::uint32_t eth = 2;
constexpr std::uint32_t wlan = 3;

struct Bench {
    crypto::KeystreamRandom random;
    core::BufferPool pool{64, 2048};
    test::FakeStageContext ctx{pool}, iha_ctx{pool};
    mip::MobileNodeStage imip;
    mip::HomeAgentStage iha;

    static mip::MobileNodeStage::Config config() {
        auto c = test::mn_stage_config(home, internal_ha, key, {});
        c.care_of_source = mip::MobileNodeStage::CareOfSource::InnerAddress;
        mip::MobileNodeStage::Config::Detection d;
        d.interfaces = {{eth, "eth0"}, {wlan, "wlan0"}};
        d.external_home_agent = external_ha;
        c.detection = d;
        return c;
    }
    static mip::HomeAgentStage::Config iha_config() {
        auto c = test::ha_stage_config(internal_ha, *core::Ipv4Prefix::parse("10.1.0.0/24"), {{home, &key}});
        c.agent.trusted_networks = {*core::Ipv4Prefix::parse("10.2.0.0/24")};
        return c;
    }
    Bench() : imip(config(), random), iha(iha_config(), random) {
        iha_ctx.set_now(ctx.now());
        (void)imip.poll(ctx);
    }

    void event(core::ControlEvent e, std::size_t origin = core::RaisedEvent::external) { imip.on_event({origin, std::move(e)}, ctx); }

    // What the stage sent: the direct requests, by the interface they were told to leave by.
    // Those from the office reach the internal home agent; its replies are returned.
    std::vector<test::Bytes> send_out(std::vector<std::uint32_t>* egress = nullptr) {
        auto sent = std::move(ctx.sent);
        ctx.sent.clear();
        std::vector<test::Bytes> replies;
        for (auto& p : sent) {
            if (egress) egress->push_back(p.meta().egress_ifindex);
            if (core::Ipv4View::check(p.bytes())->source() != office) continue;  // the cafe cannot reach the i-HA
            auto buf = test::load(pool, test::bytes_of(p));
            (void)iha.decapsulate(buf, iha_ctx);
        }
        for (auto& r : iha_ctx.sent) replies.push_back(test::bytes_of(r));
        iha_ctx.sent.clear();
        return replies;
    }
    core::Verdict arrive(const test::Bytes& p, std::uint32_t ingress) {
        auto buf = test::load(pool, p);
        buf.meta().ingress_ifindex = ingress;
        return imip.decapsulate(buf, ctx);
    }
    std::optional<core::AccessModeChanged> last_access() const {
        for (auto it = ctx.events.rbegin(); it != ctx.events.rend(); ++it)
            if (const auto* a = std::get_if<core::AccessModeChanged>(&*it)) return *a;
        return std::nullopt;
    }
    ND::Mode mode(std::uint32_t ifindex) const { return imip.detection()->status(ifindex, ctx.now())->mode; }
    std::uint64_t count(ND::ReplyResult r) const { return imip.detection()->count(r); }
};

}  // namespace

TEST_CASE("MN stage, two interfaces: each detects on its own, the inside one is preferred, a reply on the wrong interface is rejected") {
    Bench b;
    // Both known from the start, in the configured order, with no service yet.
    CHECK(b.mode(eth) == ND::Mode::NoService);
    CHECK(b.mode(wlan) == ND::Mode::NoService);

    b.event(core::AddressChanged{wlan, {cafe, 24}, true});
    b.event(core::AddressChanged{eth, {office, 24}, true});
    CHECK(b.mode(eth) == ND::Mode::Detecting);
    CHECK(b.mode(wlan) == ND::Mode::Detecting);
    // x-MIP below registered the cafe address: the external answer for wlan0 only.
    b.event(core::RegistrationChanged{external_home, cafe, true}, 3);
    CHECK(b.mode(wlan) == ND::Mode::OutsideCoLocated);
    CHECK(b.mode(eth) == ND::Mode::Detecting);
    CHECK(b.imip.access_mode() == Access::Outside);
    CHECK(b.imip.access_interface() == wlan);
    REQUIRE(b.last_access());
    CHECK(b.last_access()->ifindex == wlan);

    // One direct request per interface, each told to leave by its own interface, from its address.
    std::vector<std::uint32_t> egress;
    const auto replies = b.send_out(&egress);
    std::sort(egress.begin(), egress.end());
    CHECK(egress == std::vector<std::uint32_t>{eth, wlan});
    REQUIRE(replies.size() == 1);  // the office request got the i-HA's TNC reply

    // It arrives on wlan0: genuine, authenticated, with TNC — and proof of nothing there.
    const auto rejected = b.imip.counters().direct_replies_rejected;
    CHECK(b.arrive(replies[0], wlan).action == core::Action::Consumed);
    CHECK(b.count(ND::ReplyResult::UnknownIdentification) == 1);
    CHECK(b.imip.counters().direct_replies_rejected == rejected + 1);
    CHECK(b.mode(wlan) == ND::Mode::OutsideCoLocated);
    CHECK(b.mode(eth) == ND::Mode::Detecting);
    CHECK(b.imip.access_interface() == wlan);
    // Nor on an interface not under detection.
    CHECK(b.arrive(replies[0], 9).action == core::Action::Consumed);
    CHECK(b.count(ND::ReplyResult::UnknownInterface) == 1);

    // On eth0, where its request went: inside there, and user data moves to it.
    CHECK(b.arrive(replies[0], eth).action == core::Action::Consumed);
    CHECK(b.mode(eth) == ND::Mode::InsideCoLocated);
    CHECK(b.mode(wlan) == ND::Mode::OutsideCoLocated);
    CHECK(b.imip.access_mode() == Access::Inside);
    CHECK(b.imip.access_interface() == eth);
    CHECK(b.last_access()->ifindex == eth);
    auto data = test::load(b.pool, test::echo_packet(home, cn), 64);
    REQUIRE(b.imip.encapsulate(data, b.ctx).passed());
    CHECK(core::Ipv4View::check(data.bytes())->source() == office);
    CHECK(core::Ipv4View::check(data.bytes())->destination() == internal_ha);
    CHECK(data.meta().direct);
    CHECK(data.meta().egress_ifindex == eth);

    // The cable is pulled: data moves to wlan0 (outside) at once, nothing waits.
    b.event(core::LinkChanged{eth, "eth0", false});
    CHECK(b.mode(eth) == ND::Mode::NoService);
    CHECK(b.imip.access_mode() == Access::Outside);
    CHECK(b.imip.access_interface() == wlan);
    CHECK(b.last_access()->mode == Access::Outside);
    CHECK(b.last_access()->ifindex == wlan);

    test::FlatStatus status;
    b.imip.report(status);
    CHECK(status.values["detection.interface"] == "wlan0");
    CHECK(status.values["detection.interfaces[0].name"] == "eth0");
    CHECK(status.values["detection.interfaces[0].mode"] == "no service");
    CHECK(status.values["detection.interfaces[0].cause"] == "detached");
    CHECK(status.values["detection.interfaces[0].in_use"] == "false");
    CHECK(status.values["detection.interfaces[1].name"] == "wlan0");
    CHECK(status.values["detection.interfaces[1].mode"] == "cvc");
    CHECK(status.values["detection.interfaces[1].in_use"] == "true");
    CHECK(status.values["detection.replies.unknown_identification"] == "1");
}

TEST_CASE("MN stage, two interfaces: the direct clients never send the same Identification, even at the same instant") {
    Bench b;
    // Same clock reading for both attachments: with timestamps (RFC 5944 §5.7) each client
    // would have used the same value, so one reply would have answered both interfaces.
    b.event(core::AddressChanged{eth, {office, 24}, true});
    b.event(core::AddressChanged{wlan, {cafe, 24}, true});
    std::vector<std::uint64_t> ids;
    for (const auto& p : b.ctx.sent) {
        auto v = core::Ipv4View::check(p.bytes());
        auto request = mip::RegistrationRequestView::check(mip::udp_of(*v)->payload());
        REQUIRE(request);
        ids.push_back(request->identification());
    }
    REQUIRE(ids.size() == 2);
    CHECK(ids[0] != ids[1]);
    CHECK((ids[0] & 0xFFFFFFFFu) != (ids[1] & 0xFFFFFFFFu));
}
