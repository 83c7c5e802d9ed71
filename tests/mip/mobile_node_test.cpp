// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <functional>

#include "mip/home_agent.hpp"
#include "mip/mobile_node.hpp"
#include "tests/mip/mip_test_support.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using namespace std::chrono_literals;
using test::ip;
using State = mip::MobileNode::State;

namespace {

const auto key = "00112233445566778899aabbccddeeff"_hex;
const auto home = ip("10.1.0.77");
const auto ha_addr = ip("10.1.0.1");
const auto coa = ip("192.168.1.23");
const auto coa2 = ip("172.16.9.9");
const core::Duration ntp_off = std::chrono::seconds(3'900'000'000LL);

mip::MobileNode::Config mn_config(std::function<void(mip::MobileNode::Config&)> tweak = {}) {
    mip::MobileNode::Config c;
    c.home_address = home;
    c.home_agent = ha_addr;
    c.sa = test::make_sa(256, key);
    c.lifetime = 100;
    c.ntp_offset = ntp_off;
    c.source_port = 40000;
    if (tweak) tweak(c);
    return c;
}

mip::HomeAgent::Config ha_config(std::function<void(mip::HomeAgent::Config&)> tweak = {}) {
    mip::HomeAgent::Config c;
    c.address = ha_addr;
    c.home_network = *core::Ipv4Prefix::parse("10.1.0.0/24");
    c.max_lifetime = 1800;
    c.ntp_offset = ntp_off;
    c.mobile_nodes.push_back({home, test::make_sa(256, key), ""});
    if (tweak) tweak(c);
    return c;
}

/// One MN and one HA joined by a loss-free "network" with an optional NAT in between.
struct Loop {
    test::SeededRandom mn_random{1};
    test::SeededRandom ha_random{2};
    core::TimePoint now = core::TimePoint{} + 1h;
    mip::MobileNode mn;
    mip::HomeAgent ha;
    std::optional<core::Endpoint> nat;  // rewrites the MN's source when set
    std::vector<std::uint8_t> last_code;
    std::vector<core::RegistrationChanged> events;

    Loop(mip::MobileNode::Config m, mip::HomeAgent::Config h) : mn(std::move(m), mn_random), ha(std::move(h), ha_random) {}

    void record(const mip::MobileNode::Output& out) {
        if (out.changed) events.push_back(*out.changed);
    }
    /// Delivers a transmit to the HA and its reply back to the MN, as long as there is one.
    void deliver(mip::MobileNode::Output out, int max_rounds = 8) {
        record(out);
        for (int i = 0; i < max_rounds && out.transmit; ++i) {
            const auto& t = *out.transmit;
            mip::HomeAgent::Received rx{t.source, t.destination.address, t.source_port, 434};
            if (nat) {
                rx.ip_source = nat->address;
                rx.udp_source_port = nat->port;
            }
            auto ha_out = ha.process(t.payload.bytes(), rx, now);
            if (!ha_out.reply) return;
            last_code.push_back(ha_out.code);
            out = mn.on_reply(ha_out.reply->bytes(), ha_out.reply_from, now);
            record(out);
        }
    }
    /// Advances the clock to the MN's next deadline (not beyond `limit`) and polls.
    mip::MobileNode::Output step(core::TimePoint limit = core::TimePoint::max()) {
        auto d = mn.next_deadline();
        REQUIRE(d);
        now = std::min(*d, limit);
        return mn.poll(now);
    }
};

std::uint64_t identification_of(const mip::MobileNode::Transmit& t) {
    return mip::RegistrationRequestView::check(t.payload.bytes())->identification();
}

}  // namespace

TEST_CASE("MN registers a co-located CoA directly with the HA") {
    Loop l(mn_config(), ha_config());
    CHECK(l.mn.state() == State::Idle);
    auto out = l.mn.care_of_address_changed(coa, l.now);
    REQUIRE(out.transmit);
    const auto& t = *out.transmit;
    CHECK(t.source == coa);
    CHECK(t.destination == core::Endpoint{ha_addr, 434});
    CHECK(t.source_port == 40000);
    CHECK(t.ttl == 255);  // T set
    auto req = mip::RegistrationRequestView::check(t.payload.bytes());
    REQUIRE(req);
    CHECK(req->decapsulation_by_mn());
    CHECK(req->reverse_tunnel());
    CHECK(req->care_of_address() == coa);
    CHECK(req->lifetime() == 100);
    CHECK(l.mn.state() == State::Registering);

    l.deliver(std::move(out));
    CHECK(l.mn.state() == State::Registered);
    REQUIRE(l.events.size() == 1);
    CHECK(l.events[0].registered);
    CHECK(l.events[0].care_of_address == coa);
    CHECK(l.events[0].home_address == home);
    REQUIRE(l.mn.registration());
    CHECK(l.mn.registration()->mode == mip::TunnelMode::IpInIp);  // no NAT: declined
    CHECK(l.mn.registration()->expires == l.now + 100s);
    CHECK(l.ha.binding(home)->care_of_address == coa);
}

TEST_CASE("MN retransmits with exponential back-off from 1 s and fresh timestamps") {
    Loop l(mn_config([](auto& c) { c.max_retransmit = 16s; }), ha_config());
    const auto start = l.now;
    auto out = l.mn.care_of_address_changed(coa, l.now);
    REQUIRE(out.transmit);
    std::uint64_t last_id = identification_of(*out.transmit);
    std::vector<core::Duration> gaps;
    core::TimePoint last_sent = start;
    for (int i = 0; i < 7; ++i) {
        auto o = l.step();
        REQUIRE(o.transmit);
        gaps.push_back(l.now - last_sent);
        last_sent = l.now;
        const auto id = identification_of(*o.transmit);
        CHECK(id > last_id);  // timestamp style: a new Identification per try
        last_id = id;
    }
    const std::vector<core::Duration> expected{1s, 2s, 4s, 8s, 16s, 16s, 16s};
    CHECK(gaps == expected);
    // Nothing goes out between deadlines.
    auto d = l.mn.next_deadline();
    CHECK_FALSE(l.mn.poll(*d - 1ms).transmit);
}

TEST_CASE("MN retry_now resends the pending request at once, and only then") {
    Loop l(mn_config(), ha_config());
    CHECK_FALSE(l.mn.retry_now(l.now).transmit);  // nothing pending
    auto first = l.mn.care_of_address_changed(coa, l.now);  // "lost": no route yet
    REQUIRE(first.transmit);
    l.now += 50ms;  // the default route appears
    auto again = l.mn.retry_now(l.now);
    REQUIRE(again.transmit);
    CHECK(identification_of(*again.transmit) > identification_of(*first.transmit));
    l.deliver(std::move(again));
    CHECK(l.mn.state() == State::Registered);
    CHECK_FALSE(l.mn.retry_now(l.now).transmit);  // registered: nothing to resend
}

TEST_CASE("MN back-off is capped by the requested lifetime") {
    Loop l(mn_config([](auto& c) { c.lifetime = 3; }), ha_config());
    (void)l.mn.care_of_address_changed(coa, l.now);
    auto t0 = l.now;
    (void)l.step();
    CHECK(l.now - t0 == 1s);
    t0 = l.now;
    (void)l.step();
    CHECK(l.now - t0 == 2s);
    t0 = l.now;
    (void)l.step();
    CHECK(l.now - t0 == 3s);
}

TEST_CASE("MN renews at ~80 % of the granted lifetime and loses the registration at expiry") {
    Loop l(mn_config(), ha_config([](auto& c) { c.max_lifetime = 50; }));
    const auto sent = l.now;
    l.deliver(l.mn.care_of_address_changed(coa, l.now));
    REQUIRE(l.mn.state() == State::Registered);
    CHECK(l.mn.registration()->lifetime == 50);  // the HA shortened it
    CHECK(l.mn.registration()->expires == sent + 50s);
    CHECK(l.mn.next_deadline() == sent + 40s);

    auto renew = l.step();
    REQUIRE(renew.transmit);
    CHECK(l.now == sent + 40s);
    CHECK(mip::RegistrationRequestView::check(renew.transmit->payload.bytes())->care_of_address() == coa);
    l.deliver(std::move(renew));
    CHECK(l.mn.state() == State::Registered);
    CHECK(l.mn.registration()->expires == sent + 90s);
    CHECK(l.events.size() == 1);  // a renewal announces nothing new

    // Renewal at +80 s goes unanswered (retransmissions too): at +90 s it is gone.
    std::size_t sent_count = 0;
    while (l.now < sent + 90s) {
        auto o = l.step(sent + 90s);
        if (o.transmit) ++sent_count;
        l.record(o);
    }
    CHECK(sent_count >= 3);
    REQUIRE(l.events.size() == 2);
    CHECK_FALSE(l.events[1].registered);
    CHECK(l.mn.state() == State::Registering);
    CHECK_FALSE(l.mn.registration());
}

TEST_CASE("MN without a care-of address neither renews nor re-registers: the registration runs out on its own") {
    // RFC 5265 §6: inside the intranet the i-MIP client is stopped (no care-of address) while
    // its binding through the VPN still runs; it must not renew it from 0.0.0.0.
    Loop l(mn_config(), ha_config([](auto& c) { c.max_lifetime = 50; }));
    const auto sent = l.now;
    l.deliver(l.mn.care_of_address_changed(coa, l.now));
    REQUIRE(l.mn.state() == State::Registered);
    const auto stopped = l.mn.care_of_address_changed({}, l.now);
    CHECK_FALSE(stopped.transmit);
    CHECK(l.mn.state() == State::Registered);  // the binding still runs at the HA
    // Past the renewal time (+40 s) and the expiry (+50 s): nothing sent, the loss reported.
    CHECK(l.mn.next_deadline() == sent + 50s);
    std::size_t sent_count = 0;
    for (auto t = sent + 1s; t <= sent + 120s; t += 1s) {
        auto o = l.mn.poll(t);
        if (o.transmit) ++sent_count;
        l.record(o);
    }
    CHECK(sent_count == 0);
    REQUIRE(l.events.size() == 2);
    CHECK_FALSE(l.events[1].registered);
    CHECK(l.mn.state() == State::Idle);
    CHECK_FALSE(l.mn.registration());
    CHECK_FALSE(l.mn.next_deadline());
    // A care-of address again: it registers at once.
    l.now = sent + 121s;
    auto again = l.mn.care_of_address_changed(coa2, l.now);
    REQUIRE(again.transmit);
    CHECK(mip::RegistrationRequestView::check(again.transmit->payload.bytes())->care_of_address() == coa2);
}

TEST_CASE("MN resynchronises on an authenticated 133 and then registers") {
    // The MN's clock is 300 s behind the HA's.
    Loop l(mn_config([](auto& c) { c.ntp_offset = ntp_off - 300s; }), ha_config());
    l.deliver(l.mn.care_of_address_changed(coa, l.now));
    REQUIRE(l.last_code.size() == 2);
    CHECK(l.last_code[0] == 133);
    CHECK(l.last_code[1] == 0);
    CHECK(l.mn.state() == State::Registered);

    // Later requests keep using the learnt offset: a renewal is accepted first time.
    l.last_code.clear();
    l.deliver(l.step());
    CHECK(l.last_code == std::vector<std::uint8_t>{0});
}

TEST_CASE("MN ignores a 133 that is unauthenticated or for another request") {
    // The test hands the HA the same retransmission twice: both must be answered 133.
    Loop l(mn_config([](auto& c) { c.ntp_offset = ntp_off - 300s; }),
           ha_config([](auto& c) { c.denial_reply_interval = core::Duration::zero(); }));
    auto out = l.mn.care_of_address_changed(coa, l.now);
    const auto id = identification_of(*out.transmit);
    const auto ha_now = mip::ntp_time(l.now, ntp_off);
    const mip::RegistrationReply r133{133, 0, home, ha_addr, (ha_now & 0xFFFFFFFF00000000u) | (id & 0xFFFFFFFFu)};

    auto forged = mip::build_reply(r133, {}, {256, "99"_hex});
    CHECK_FALSE(l.mn.on_reply(forged->bytes(), {ha_addr, 434}, l.now).transmit);
    auto other = r133;
    other.identification ^= 1;  // low 32 bits do not match
    auto mismatched = mip::build_reply(other, {}, {256, key});
    CHECK_FALSE(l.mn.on_reply(mismatched->bytes(), {ha_addr, 434}, l.now).transmit);
    CHECK_FALSE(l.mn.last_reply_code());

    // Neither moved the clock: the next retransmission is still rejected with 133.
    auto rtx = l.step();
    REQUIRE(rtx.transmit);
    mip::HomeAgent::Received rx{coa, ha_addr, 40000, 434};
    CHECK(l.ha.process(rtx.transmit->payload.bytes(), rx, l.now).code == 133);

    // The genuine one does, and the request after it is accepted.
    l.deliver(std::move(rtx));
    CHECK(l.mn.state() == State::Registered);
}

TEST_CASE("MN deregisters on return home") {
    Loop l(mn_config(), ha_config());
    l.deliver(l.mn.care_of_address_changed(coa, l.now));
    REQUIRE(l.ha.binding(home));
    l.now += 10s;
    auto out = l.mn.returned_home(l.now);
    REQUIRE(out.transmit);
    auto req = mip::RegistrationRequestView::check(out.transmit->payload.bytes());
    CHECK(req->lifetime() == 0);
    CHECK(req->care_of_address() == home);
    CHECK(out.transmit->source == home);
    CHECK(out.transmit->destination.address == ha_addr);
    CHECK(l.mn.state() == State::Deregistering);
    l.deliver(std::move(out));
    CHECK(l.mn.state() == State::AtHome);
    CHECK_FALSE(l.ha.binding(home));
    REQUIRE(l.events.size() == 2);
    CHECK_FALSE(l.events[1].registered);
    CHECK_FALSE(l.mn.next_deadline());
}

TEST_CASE("MN deregistration gives up after a bounded number of attempts") {
    Loop l(mn_config([](auto& c) { c.max_deregistration_attempts = 3; }), ha_config());
    l.deliver(l.mn.care_of_address_changed(coa, l.now));
    (void)l.mn.returned_home(l.now);
    int sent = 1;
    while (l.mn.state() == State::Deregistering) {
        if (l.step().transmit) ++sent;
    }
    CHECK(sent == 3);
    CHECK(l.mn.state() == State::AtHome);
}

TEST_CASE("MN UDP tunnelling is negotiated through a NAT and keepalives follow idleness") {
    Loop l(mn_config([](auto& c) { c.lifetime = 1000; }), ha_config([](auto& c) { c.keepalive_interval = 20; }));
    l.nat = core::Endpoint{ip("203.0.113.5"), 61000};
    const auto sent = l.now;
    l.deliver(l.mn.care_of_address_changed(coa, l.now));
    REQUIRE(l.mn.state() == State::Registered);
    CHECK(l.mn.registration()->mode == mip::TunnelMode::Udp);
    CHECK(l.mn.registration()->keepalive_interval == 20s);
    CHECK(l.ha.binding(home)->udp_endpoint == *l.nat);
    REQUIRE(l.events.size() == 1);

    // First keepalive K after the request, then every K while idle.
    CHECK(l.mn.next_deadline() == sent + 20s);
    auto k1 = l.step();
    CHECK(k1.keepalive_due);
    CHECK_FALSE(k1.transmit);
    l.mn.note_keepalive_reply();
    // Traffic to the HA postpones the next one.
    l.now += 15s;
    l.mn.note_sent_to_home_agent(l.now);
    CHECK(l.mn.next_deadline() == l.now + 20s);
    CHECK_FALSE(l.mn.poll(l.now + 19s).keepalive_due);
    CHECK(l.mn.poll(l.now + 20s).keepalive_due);
    l.now += 20s;

    // Unanswered keepalives: after three the MN re-registers to refresh the NAT mapping.
    CHECK(l.step().keepalive_due);
    CHECK(l.step().keepalive_due);
    auto rereg = l.step();
    CHECK_FALSE(rereg.keepalive_due);
    REQUIRE(rereg.transmit);
    CHECK(rereg.transmit->source_port == 40000);  // same source port as before
}

TEST_CASE("MN UDP tunnelling is never used without an assenting Tunnel Reply") {
    SUBCASE("no NAT: the HA declines") {
        Loop l(mn_config(), ha_config());
        l.deliver(l.mn.care_of_address_changed(coa, l.now));
        CHECK(l.mn.registration()->mode == mip::TunnelMode::IpInIp);
        CHECK_FALSE(l.mn.poll(l.now + 500s).keepalive_due);
    }
    SUBCASE("forced: the HA assents without NAT") {
        Loop l(mn_config([](auto& c) { c.udp_tunnelling = mip::MobileNode::UdpTunnelling::Forced; }), ha_config());
        l.deliver(l.mn.care_of_address_changed(coa, l.now));
        CHECK(l.mn.registration()->mode == mip::TunnelMode::Udp);
        CHECK(l.mn.registration()->keepalive_interval == 110s);
    }
    SUBCASE("an old HA answers without a Tunnel Reply") {
        Loop l(mn_config(), ha_config());
        l.nat = core::Endpoint{ip("203.0.113.5"), 61000};
        auto out = l.mn.care_of_address_changed(coa, l.now);
        auto req = mip::RegistrationRequestView::check(out.transmit->payload.bytes());
        auto reply = mip::build_reply({0, 100, home, ha_addr, req->identification()}, {}, {256, key});
        (void)l.mn.on_reply(reply->bytes(), {ha_addr, 434}, l.now);
        REQUIRE(l.mn.state() == State::Registered);
        CHECK(l.mn.registration()->mode == mip::TunnelMode::IpInIp);
    }
    SUBCASE("a Tunnel Reply to a request that had none is ignored") {
        Loop l(mn_config([](auto& c) { c.udp_tunnelling = mip::MobileNode::UdpTunnelling::Off; }), ha_config());
        auto out = l.mn.care_of_address_changed(coa, l.now);
        mip::ScannedExtensions s;
        REQUIRE_FALSE(mip::scan_extensions(out.transmit->payload.bytes(), 24, mip::MessageKind::Request, s));
        CHECK(s.udp_tunnel_request.empty());
        auto req = mip::RegistrationRequestView::check(out.transmit->payload.bytes());
        mip::ReplyExtensions ext;
        ext.udp_tunnel = mip::UdpTunnelReply{0, false, 30};
        auto reply = mip::build_reply({0, 100, home, ha_addr, req->identification()}, ext, {256, key});
        (void)l.mn.on_reply(reply->bytes(), {ha_addr, 434}, l.now);
        CHECK(l.mn.registration()->mode == mip::TunnelMode::IpInIp);
    }
}

TEST_CASE("MN repairs: 136 new HA address, 138 set T, 142 drop the tunnel request") {
    SUBCASE("136") {
        // The MN only knows the home subnet broadcast; the HA answers with its unicast address.
        Loop l(mn_config([](auto& c) { c.home_agent = ip("10.1.0.255"); }), ha_config());
        l.deliver(l.mn.care_of_address_changed(coa, l.now));
        CHECK(l.last_code == std::vector<std::uint8_t>{136, 0});
        CHECK(l.mn.home_agent() == ha_addr);
        CHECK(l.mn.state() == State::Registered);
    }
    SUBCASE("138") {
        Loop l(mn_config([](auto& c) { c.reverse_tunnel = false; }),
               ha_config([](auto& c) { c.reverse_tunnel_required = true; }));
        l.deliver(l.mn.care_of_address_changed(coa, l.now));
        CHECK(l.last_code == std::vector<std::uint8_t>{138, 0});
        CHECK(l.mn.registration()->reverse_tunnel);
    }
    SUBCASE("137") {
        Loop l(mn_config(), ha_config([](auto& c) { c.reverse_tunnel_supported = false; }));
        l.deliver(l.mn.care_of_address_changed(coa, l.now));
        CHECK(l.last_code == std::vector<std::uint8_t>{137, 0});
        CHECK_FALSE(l.mn.registration()->reverse_tunnel);
    }
    SUBCASE("129 is not repaired: denied, retried later") {
        Loop l(mn_config(), ha_config([](auto& c) { c.udp_tunnelling = false; }));
        l.nat = core::Endpoint{ip("203.0.113.5"), 61000};
        l.deliver(l.mn.care_of_address_changed(coa, l.now));
        CHECK(l.last_code == std::vector<std::uint8_t>{129});
        CHECK(l.mn.state() == State::Denied);
        CHECK(l.mn.next_deadline() == l.now + 60s);
    }
}

TEST_CASE("MN registers through a foreign agent and handles 69") {
    Loop l(mn_config([](auto& c) { c.colocated = false; c.lifetime = 600; }), ha_config());
    mip::AgentAdvertisement adv;
    adv.flags = 0x10 | 0x01;  // F, T
    adv.care_of[0] = ip("198.51.100.1");
    adv.care_of_count = 1;
    adv.registration_lifetime = 500;
    adv.sequence_number = 300;
    const auto fa = ip("198.51.100.1");
    auto out = l.mn.agent_advertisement(adv, fa, l.now);
    REQUIRE(out.transmit);
    CHECK(out.transmit->destination == core::Endpoint{fa, 434});
    CHECK(out.transmit->source == home);
    CHECK(out.transmit->ttl == 255);
    auto req = mip::RegistrationRequestView::check(out.transmit->payload.bytes());
    CHECK_FALSE(req->decapsulation_by_mn());
    CHECK(req->care_of_address() == fa);
    CHECK(req->lifetime() == 500);  // the FA's maximum
    mip::ScannedExtensions s;
    REQUIRE_FALSE(mip::scan_extensions(out.transmit->payload.bytes(), 24, mip::MessageKind::Request, s));
    CHECK(s.udp_tunnel_request.empty());  // never with an FA care-of address

    // The FA says 69 with lifetime 300 (unauthenticated, FA codes carry no MHAE).
    mip::RegistrationReply r69{69, 300, home, ha_addr, req->identification()};
    test::Bytes bytes(20);
    r69.emit(bytes);
    auto fixed = l.mn.on_reply(bytes, {fa, 434}, l.now);
    REQUIRE(fixed.transmit);
    CHECK(mip::RegistrationRequestView::check(fixed.transmit->payload.bytes())->lifetime() == 300);

    // The same advert again changes nothing; a reboot (sequence below 256) re-registers.
    l.deliver(std::move(fixed));
    REQUIRE(l.mn.state() == State::Registered);
    CHECK(l.mn.registration()->via_foreign_agent);
    adv.sequence_number = 301;
    CHECK_FALSE(l.mn.agent_advertisement(adv, fa, l.now).transmit);
    adv.sequence_number = 2;
    CHECK(l.mn.agent_advertisement(adv, fa, l.now).transmit);
}

TEST_CASE("MN with nonce replay protection: 133 first, identical retransmissions") {
    Loop l(mn_config([](auto& c) { c.sa.replay = mip::ReplayProtection::Nonce; }),
           ha_config([](auto& c) { c.mobile_nodes[0].sa.replay = mip::ReplayProtection::Nonce; }));
    auto out = l.mn.care_of_address_changed(coa, l.now);
    const auto first = test::to_hex(out.transmit->payload.bytes());
    auto rtx = l.step();
    REQUIRE(rtx.transmit);
    CHECK(test::to_hex(rtx.transmit->payload.bytes()) == first);  // identical
    l.deliver(std::move(rtx));
    CHECK(l.last_code == std::vector<std::uint8_t>{133, 0});
    CHECK(l.mn.state() == State::Registered);
    l.last_code.clear();
    l.deliver(l.step());  // renewal with the nonce from the last reply
    CHECK(l.last_code == std::vector<std::uint8_t>{0});
}

TEST_CASE("two mobile nodes against two home agents run independently") {
    const auto key2 = "0f0e0d0c0b0a09080706050403020100"_hex;
    const auto home2 = ip("10.2.0.5");
    const auto ha2 = ip("10.2.0.1");
    Loop a(mn_config(), ha_config());
    Loop b(mn_config([&](auto& c) {
               c.home_address = home2;
               c.home_agent = ha2;
               c.sa = test::make_sa(300, key2);
               c.lifetime = 40;
               c.ntp_offset = ntp_off + 1000s;  // a different (wrong) clock
           }),
           ha_config([&](auto& c) {
               c.address = ha2;
               c.home_network = *core::Ipv4Prefix::parse("10.2.0.0/24");
               c.mobile_nodes.clear();
               c.mobile_nodes.push_back({home2, test::make_sa(300, key2), ""});
           }));
    b.nat = core::Endpoint{ip("203.0.113.9"), 1234};

    auto oa = a.mn.care_of_address_changed(coa, a.now);
    auto ob = b.mn.care_of_address_changed(coa2, b.now);
    // Crossing the wires: A's request means nothing to B's HA and vice versa.
    mip::HomeAgent::Received rx{coa, ha_addr, 40000, 434};
    CHECK(b.ha.process(oa.transmit->payload.bytes(), rx, b.now).discard == mip::HomeAgent::Discard::UnknownMobileNode);
    a.deliver(std::move(oa));
    b.deliver(std::move(ob));
    CHECK(a.mn.state() == State::Registered);
    CHECK(b.mn.state() == State::Registered);
    CHECK(b.last_code == std::vector<std::uint8_t>{133, 0});  // only B needed a resync
    CHECK(a.last_code == std::vector<std::uint8_t>{0});
    CHECK(a.mn.registration()->mode == mip::TunnelMode::IpInIp);
    CHECK(b.mn.registration()->mode == mip::TunnelMode::Udp);
    CHECK(a.ha.binding(home)->care_of_address == coa);
    CHECK(b.ha.binding(home2)->care_of_address == coa2);
    CHECK_FALSE(a.ha.binding(home2));
    CHECK_FALSE(b.ha.binding(home));
    // Different lifetimes, different renewal times.
    CHECK(a.mn.next_deadline() == a.now + 80s);
    CHECK(b.mn.next_deadline() == b.now + 32s);
}

TEST_CASE("MN notices a foreign agent reboot from the advertisement sequence number (RFC 5944 §2.3.2, §3.7.1)") {
    // A value below the previous one and below 256 means the agent rebooted (its visitor list
    // is gone): re-register at once. Below the previous one but 256 or more is the rollover
    // (0xFFFF is followed by 256). Anything else from the same agent and care-of address is
    // just the next advertisement.
    struct Row {
        const char* name;
        std::uint16_t before;
        std::uint16_t after;
        bool reregisters;
    };
    const Row rows[] = {
        {"next advertisement", 300, 301, false},
        {"same number again", 7, 7, false},
        {"reboot from above 256", 300, 2, true},
        {"reboot, first advertisement after boot", 5, 0, true},
        {"reboot just below 256", 255, 254, true},
        {"rollover 0xFFFF -> 256", 0xFFFF, 256, false},
        {"decrease above 256 (rollover region)", 300, 299, false},
    };
    const auto fa = ip("198.51.100.1");
    for (const auto& row : rows) {
        CAPTURE(row.name);
        Loop l(mn_config([](auto& c) { c.colocated = false; c.lifetime = 600; }), ha_config());
        mip::AgentAdvertisement adv;
        adv.flags = 0x10;  // F
        adv.care_of[0] = fa;
        adv.care_of_count = 1;
        adv.sequence_number = row.before;
        auto first = l.mn.agent_advertisement(adv, fa, l.now);
        REQUIRE(first.transmit);
        const auto id_before = mip::RegistrationRequestView::check(first.transmit->payload.bytes())->identification();
        l.deliver(std::move(first));
        REQUIRE(l.mn.state() == State::Registered);
        REQUIRE(l.mn.registration()->via_foreign_agent);

        l.now += 5s;
        adv.sequence_number = row.after;
        auto out = l.mn.agent_advertisement(adv, fa, l.now);
        CHECK(out.transmit.has_value() == row.reregisters);
        if (!row.reregisters) continue;
        // A fresh request to the (rebooted) foreign agent, with a newer identification.
        CHECK(out.transmit->destination == core::Endpoint{fa, 434});
        auto req = mip::RegistrationRequestView::check(out.transmit->payload.bytes());
        REQUIRE(req);
        CHECK(req->care_of_address() == fa);
        CHECK(req->identification() > id_before);
        l.deliver(std::move(out));
        CHECK(l.mn.state() == State::Registered);
        // The next advertisement of the rebooted agent is ordinary again.
        adv.sequence_number = static_cast<std::uint16_t>(row.after + 1);
        CHECK_FALSE(l.mn.agent_advertisement(adv, fa, l.now).transmit);
    }
}
