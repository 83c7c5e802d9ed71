// SPDX-License-Identifier: MIT
// NetworkDetection with a fake clock: RFC 5265 §3.3, §4-§6 detection and monitoring.
#include <doctest/doctest.h>

#include <functional>
#include <string>

#include "mip/home_agent.hpp"
#include "mip/network_detection.hpp"
#include "tests/mip/mip_test_support.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using namespace std::chrono_literals;
using test::ip;
using ND = mip::NetworkDetection;
using Mode = ND::Mode;
using Result = ND::ReplyResult;
using Cause = ND::Decision::Cause;

namespace {

const auto internal_key = "00112233445566778899aabbccddeeff"_hex;
const auto other_key = "ffeeddccbbaa99887766554433221100"_hex;
const auto internal_ha = ip("10.1.0.1");
const auto external_ha = ip("198.51.100.1");
const auto home = ip("10.1.0.77");
constexpr std::uint32_t eth = 2;
constexpr std::uint32_t wlan = 3;

struct ReplySpec {
    std::uint8_t code = mip::reply_code::accepted;
    bool tnc = true;
    bool tnc_after_mhae = false;  // appended after the MHAE: not authenticated
    const test::Bytes* key = &internal_key;
    std::uint32_t spi = 256;
    core::Ipv4Address home_address = home;
    core::Ipv4Address home_agent = internal_ha;
};

struct Bench {
    core::TimePoint now = core::TimePoint{} + 1h;
    ND nd;
    std::uint64_t next_id = 0xE000000000000100u;

    static ND::Config config(const std::function<void(ND::Config&)>& tweak) {
        ND::Config c;
        c.internal_home_agent = internal_ha;
        c.internal_home_address = home;
        c.internal_sa = test::make_sa(256, internal_key);
        c.external_home_agent = external_ha;
        c.internal_retry_window = 10s;
        c.detection_timeout = 30s;
        c.t_monitor = 60s;
        c.monitor_margin = 10s;
        if (tweak) tweak(c);
        return c;
    }
    explicit Bench(const std::function<void(ND::Config&)>& tweak = {}) : nd(config(tweak)) {}

    std::uint64_t send(std::uint32_t ifindex, ND::Target to) {
        const auto id = next_id++;
        nd.request_sent(ifindex, to, id, now);
        return id;
    }
    std::uint64_t send_internal(std::uint32_t ifindex = eth) { return send(ifindex, ND::Target::Internal); }
    std::uint64_t send_external(std::uint32_t ifindex = eth) { return send(ifindex, ND::Target::External); }

    static test::Bytes reply(std::uint64_t id, const ReplySpec& s = {}) {
        mip::ReplyExtensions ext;
        ext.trusted_networks = s.tnc && !s.tnc_after_mhae;
        auto m = mip::build_reply({s.code, 600, s.home_address, s.home_agent, id}, ext, {s.spi, *s.key});
        REQUIRE(m);
        test::Bytes b(m->bytes().begin(), m->bytes().end());
        if (s.tnc && s.tnc_after_mhae) {
            const auto tnc = "95 02 00 00"_hex;
            b.insert(b.end(), tnc.begin(), tnc.end());
        }
        return b;
    }
    Result internal(std::uint32_t ifindex, const test::Bytes& bytes, ND::Path path = ND::Path::Direct,
                    core::Endpoint from = {internal_ha, 434}) {
        return nd.internal_reply(ifindex, path, from, bytes, now);
    }
    Result answer_internal(std::uint64_t id, std::uint32_t ifindex = eth, const ReplySpec& s = {}) {
        return internal(ifindex, reply(id, s));
    }
    Result answer_external(std::uint64_t id, std::uint32_t ifindex = eth) { return nd.external_registered(ifindex, id, now); }

    /// Moves the clock and polls, as the shell's timer would; a deadline never lies in the past.
    void advance(core::Duration d) {
        now += d;
        auto next = nd.poll(now);
        if (next) CHECK(*next > now);
    }
    ND::InterfaceStatus status(std::uint32_t ifindex = eth) const {
        auto s = nd.status(ifindex, now);
        REQUIRE(s);
        return *s;
    }
    Mode mode(std::uint32_t ifindex = eth) const { return status(ifindex).mode; }
};

// Brings `ifindex` to "tentatively outside": both asked, only the x-HA answered.
std::uint64_t make_outside(Bench& b, std::uint32_t ifindex = eth) {
    REQUIRE(b.nd.attachment_changed(ifindex, ND::Attachment::CoLocated, b.now));
    const auto internal_id = b.send_internal(ifindex);
    CHECK(b.answer_external(b.send_external(ifindex), ifindex) == Result::MadeOutside);
    REQUIRE(b.mode(ifindex) == Mode::OutsideCoLocated);
    return internal_id;
}

}  // namespace

TEST_CASE("attachment change: user data stops at once, both home agents are asked in parallel") {
    Bench b;
    CHECK_FALSE(b.nd.status(eth, b.now));
    CHECK_FALSE(b.nd.data_allowed(eth, b.now));
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    auto s = b.status();
    CHECK(s.mode == Mode::Detecting);
    CHECK_FALSE(s.data_allowed);
    CHECK(s.register_internal);
    CHECK(s.register_external);
    CHECK(s.decided_by.cause == Cause::None);
    CHECK(b.nd.next_deadline() == b.now + 30s);
    CHECK_FALSE(b.nd.preferred_interface(b.now));
}

TEST_CASE("internal HA answers first with TNC: inside (c), data on, x-HA answer changes nothing") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    const auto iid = b.send_internal();
    const auto xid = b.send_external();
    b.advance(200ms);
    CHECK(b.answer_internal(iid) == Result::MadeInside);
    auto s = b.status();
    CHECK(s.mode == Mode::InsideCoLocated);
    CHECK(ND::mode_name(s.mode) == "c");
    CHECK(s.data_allowed);
    CHECK_FALSE(s.register_internal);
    CHECK_FALSE(s.register_external);
    CHECK(s.decided_by.cause == Cause::InternalTnc);
    CHECK(s.decided_by.identification == iid);
    CHECK(s.decided_by.at == b.now);
    CHECK(s.last_internal_success == b.now);
    CHECK(b.nd.preferred_interface(b.now) == eth);
    b.advance(100ms);
    CHECK(b.answer_external(xid) == Result::NoChange);
    CHECK(b.mode() == Mode::InsideCoLocated);
    CHECK(b.status().decided_by.cause == Cause::InternalTnc);
}

TEST_CASE("external HA answers first: tentatively outside, the internal HA is retried for a while") {
    Bench b;
    const auto iid = make_outside(b);
    auto s = b.status();
    CHECK(ND::mode_name(s.mode) == "cvc");
    CHECK(s.data_allowed);  // through the VPN layer
    CHECK(s.register_internal);
    CHECK_FALSE(s.register_external);
    CHECK(s.decided_by.cause == Cause::ExternalReply);
    CHECK(b.nd.next_deadline() == b.now + 10s);

    SUBCASE("the internal answer within the window switches inside") {
        b.advance(3s);
        CHECK(b.status().register_internal);
        CHECK(b.answer_internal(iid) == Result::MadeInside);
        CHECK(b.mode() == Mode::InsideCoLocated);
        CHECK(b.status().decided_by.cause == Cause::InternalTnc);
    }
    SUBCASE("after the window nothing more is asked, but a late answer still switches inside") {
        b.advance(10s);
        CHECK_FALSE(b.status().register_internal);
        CHECK(b.mode() == Mode::OutsideCoLocated);
        CHECK_FALSE(b.nd.next_deadline());
        // IPsec setup may have begun meanwhile; RFC 5265 §3.3 still prefers the direct path.
        b.advance(20s);
        CHECK(b.answer_internal(iid) == Result::MadeInside);
        CHECK(b.mode() == Mode::InsideCoLocated);
        CHECK(b.status().data_allowed);
    }
    SUBCASE("a retransmission within the window is answered") {
        b.advance(2s);
        const auto retry = b.send_internal();
        b.advance(1s);
        CHECK(b.answer_internal(retry) == Result::MadeInside);
    }
}

TEST_CASE("loss and retransmission: any outstanding request's answer counts, each only once") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    const auto first = b.send_internal();
    (void)b.send_external();  // lost
    b.advance(1s);
    const auto second = b.send_internal();  // first presumed lost
    b.advance(500ms);
    CHECK(b.answer_internal(second) == Result::MadeInside);
    const auto inside_at = b.now;
    // The first request's reply was only late: it is a valid success too.
    b.advance(300ms);
    CHECK(b.answer_internal(first) == Result::Refreshed);
    CHECK(b.status().last_internal_success == b.now);
    CHECK(b.status().decided_by.at == inside_at);  // the deciding reply stays recorded
    // A duplicate of an answered reply matches nothing.
    CHECK(b.answer_internal(second) == Result::UnknownIdentification);
    CHECK(b.nd.count(Result::UnknownIdentification) == 1);
}

TEST_CASE("nobody answers: no service after the detection timeout, both still asked, a late answer decides") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    (void)b.send_internal();
    (void)b.send_external();
    b.advance(29s);
    CHECK(b.mode() == Mode::Detecting);
    b.advance(1s);
    auto s = b.status();
    CHECK(s.mode == Mode::NoService);
    CHECK(ND::mode_name(s.mode) == "no service");
    CHECK_FALSE(s.data_allowed);
    CHECK(s.register_internal);
    CHECK(s.register_external);
    CHECK(s.decided_by.cause == Cause::DetectionTimeout);
    CHECK_FALSE(b.nd.next_deadline());

    SUBCASE("the external HA answers a retransmission") {
        b.advance(5s);
        CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
        CHECK(b.mode() == Mode::OutsideCoLocated);
    }
    SUBCASE("the internal HA answers a retransmission") {
        b.advance(5s);
        CHECK(b.answer_internal(b.send_internal()) == Result::MadeInside);
        CHECK(b.mode() == Mode::InsideCoLocated);
    }
}

TEST_CASE("a status change mid-detection voids replies to earlier requests") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    const auto iid = b.send_internal();
    const auto xid = b.send_external();
    b.advance(200ms);
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));  // new address
    CHECK(b.answer_internal(iid) == Result::UnknownIdentification);
    CHECK(b.answer_external(xid) == Result::UnknownIdentification);
    CHECK(b.mode() == Mode::Detecting);
    CHECK_FALSE(b.status().data_allowed);
    // The detection timeout restarted with the change.
    CHECK(b.nd.next_deadline() == b.now + 30s);
    CHECK(b.answer_internal(b.send_internal()) == Result::MadeInside);
}

TEST_CASE("an attachment change while inside or outside stops data at once and detects again") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    CHECK(b.answer_internal(b.send_internal()) == Result::MadeInside);
    const auto rereg = b.send_internal();
    b.advance(5s);
    const auto fa = ip("10.9.0.1");
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::ForeignAgent, b.now, fa));
    CHECK_FALSE(b.nd.data_allowed(eth, b.now));
    CHECK(b.mode() == Mode::Detecting);
    CHECK(b.internal(eth, Bench::reply(rereg), ND::Path::Direct, {fa, 434}) == Result::UnknownIdentification);  // old network
    CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
    CHECK(ND::mode_name(b.mode()) == "fvc");
    b.advance(1s);
    CHECK(b.answer_internal(b.send_internal()) == Result::WrongSource);  // via an FA the FA relays the reply
    CHECK(b.internal(eth, Bench::reply(b.send_internal()), ND::Path::Direct, {fa, 434}) == Result::MadeInside);
    CHECK(ND::mode_name(b.mode()) == "f");

    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::Detached, b.now));
    auto s = b.status();
    CHECK(s.mode == Mode::NoService);
    CHECK_FALSE(s.data_allowed);
    CHECK_FALSE(s.register_internal);
    CHECK_FALSE(s.register_external);
    CHECK(s.decided_by.cause == Cause::Detached);
    CHECK(b.answer_internal(b.send_internal()) == Result::UnknownInterface);
    CHECK_FALSE(b.nd.next_deadline());
}

TEST_CASE("inside: re-registration due at T_MONITOR - N; success restarts T_MONITOR") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    CHECK(b.answer_internal(b.send_internal()) == Result::MadeInside);
    const auto t0 = b.now;
    CHECK(b.nd.next_deadline() == t0 + 50s);
    b.advance(49s);
    CHECK_FALSE(b.status().register_internal);
    b.advance(1s);
    CHECK(b.status().register_internal);
    CHECK(b.status().data_allowed);
    CHECK(b.nd.next_deadline() == t0 + 60s);
    const auto id = b.send_internal();
    b.advance(2s);
    CHECK(b.answer_internal(id) == Result::Refreshed);
    CHECK_FALSE(b.status().register_internal);
    CHECK(b.nd.next_deadline() == b.now + 50s);
    b.advance(58s);  // past the first T_MONITOR, within the renewed one
    CHECK(b.mode() == Mode::InsideCoLocated);
    CHECK(b.status().data_allowed);
}

TEST_CASE("inside: T_MONITOR passes without a successful re-registration: data stops, detection restarts") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    CHECK(b.answer_internal(b.send_internal()) == Result::MadeInside);
    b.advance(50s);
    const auto lost = b.send_internal();
    b.advance(5s);
    const auto retry = b.send_internal();
    // Data stops exactly at T_MONITOR, even before poll() runs.
    b.now += 5s;
    CHECK_FALSE(b.nd.data_allowed(eth, b.now));
    CHECK(b.status().mode == Mode::Detecting);
    CHECK(b.status().register_internal);
    CHECK(b.status().register_external);
    CHECK_FALSE(b.status().data_allowed);
    CHECK_FALSE(b.nd.preferred_interface(b.now));
    (void)b.nd.poll(b.now);
    auto s = b.status();
    CHECK(s.mode == Mode::Detecting);
    CHECK(s.decided_by.cause == Cause::MonitorExpired);
    CHECK(s.register_internal);
    CHECK(s.register_external);
    CHECK_FALSE(s.data_allowed);
    CHECK(b.nd.next_deadline() == b.now + 30s);

    SUBCASE("a late answer to the re-registration (no status change) goes back inside") {
        b.advance(1s);
        CHECK(b.answer_internal(retry) == Result::MadeInside);
        CHECK(b.status().data_allowed);
        CHECK(b.answer_internal(lost) == Result::Refreshed);
    }
    SUBCASE("the external HA answers instead: outside") {
        b.advance(1s);
        CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
        CHECK(b.mode() == Mode::OutsideCoLocated);
    }
    SUBCASE("nobody answers: no service") {
        b.advance(30s);
        CHECK(b.mode() == Mode::NoService);
    }
}

TEST_CASE("attacker: nothing but an authenticated direct TNC reply on that interface makes it inside") {
    Bench b;
    const auto iid = make_outside(b);
    const auto before = b.status();

    struct Row {
        const char* name;
        std::function<Result(Bench&, std::uint64_t)> attempt;
        Result expected;
    };
    const std::vector<Row> rows = {
        {"wrong key", [](Bench& x, std::uint64_t id) { ReplySpec s; s.key = &other_key; return x.answer_internal(id, eth, s); },
         Result::BadAuthenticator},
        {"wrong SPI", [](Bench& x, std::uint64_t id) { ReplySpec s; s.spi = 999; return x.answer_internal(id, eth, s); },
         Result::NoAuthentication},
        {"no MHAE",
         [](Bench& x, std::uint64_t id) {
             auto r = Bench::reply(id);
             r.resize(r.size() - mip::mhae_len);
             return x.internal(eth, r);
         },
         Result::NoAuthentication},
        {"tampered after signing",
         [](Bench& x, std::uint64_t id) {
             auto r = Bench::reply(id);
             r[3] ^= 0x01;  // lifetime
             return x.internal(eth, r);
         },
         Result::BadAuthenticator},
        {"valid but without TNC", [](Bench& x, std::uint64_t id) { ReplySpec s; s.tnc = false; return x.answer_internal(id, eth, s); },
         Result::NoTrustedNetworks},
        {"TNC after the MHAE", [](Bench& x, std::uint64_t id) { ReplySpec s; s.tnc_after_mhae = true; return x.answer_internal(id, eth, s); },
         Result::NoTrustedNetworks},
        {"TNC through the tunnel", [](Bench& x, std::uint64_t id) { return x.internal(eth, Bench::reply(id), ND::Path::Tunnel); },
         Result::ViaTunnel},
        {"from another address",
         [](Bench& x, std::uint64_t id) { return x.internal(eth, Bench::reply(id), ND::Path::Direct, {external_ha, 434}); },
         Result::WrongSource},
        {"from another port",
         [](Bench& x, std::uint64_t id) { return x.internal(eth, Bench::reply(id), ND::Path::Direct, {internal_ha, 4434}); },
         Result::WrongSource},
        {"for another home address",
         [](Bench& x, std::uint64_t id) { ReplySpec s; s.home_address = ip("10.1.0.78"); return x.answer_internal(id, eth, s); },
         Result::WrongHomeAddress},
        {"denial with TNC",
         [](Bench& x, std::uint64_t id) { ReplySpec s; s.code = mip::reply_code::ha_mn_auth_failed; return x.answer_internal(id, eth, s); },
         Result::Denied},
        {"never requested", [](Bench& x, std::uint64_t) { return x.answer_internal(0x1234); }, Result::UnknownIdentification},
        {"on the other interface", [](Bench& x, std::uint64_t id) { return x.answer_internal(id, wlan); }, Result::UnknownInterface},
        {"garbage", [](Bench& x, std::uint64_t) { return x.internal(eth, "03 00 01"_hex); }, Result::Malformed},
        {"a request, not a reply",
         [](Bench& x, std::uint64_t) { return x.internal(eth, "01 00 00 00 0a 01 00 4d 0a 01 00 01 0a 01 00 4d 00 00 00 00 00 00 00 01"_hex); },
         Result::Malformed},
        {"truncated TNC at the end",
         [](Bench& x, std::uint64_t id) {
             auto r = Bench::reply(id);
             r.insert(r.end(), {0x95, 0x02, 0x00});
             return x.internal(eth, r);
         },
         Result::Malformed},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        // Each forgery answers a request of its own (one that passes authentication consumes it).
        CHECK(row.attempt(b, b.send_internal()) == row.expected);
        CHECK(b.nd.count(row.expected) >= 1);
        const auto s = b.status();
        CHECK(s.mode == Mode::OutsideCoLocated);
        CHECK(s.decided_by.cause == before.decided_by.cause);
        CHECK(s.data_allowed);  // still through IPsec
    }
    // A flood of forgeries changes nothing either, and does not use up the real request.
    const auto pending = b.send_internal();
    for (std::uint64_t i = 0; i < 500; ++i) {
        ReplySpec s;
        s.key = &other_key;
        CHECK(b.answer_internal(pending + (i % 3), eth, s) == Result::BadAuthenticator);
    }
    CHECK(b.mode() == Mode::OutsideCoLocated);
    CHECK(b.answer_internal(pending) == Result::MadeInside);
    (void)iid;
}

TEST_CASE("attacker: a genuine reply replayed after a status change proves nothing") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    const auto iid = b.send_internal();
    const auto captured = Bench::reply(iid);
    CHECK(b.internal(eth, captured) == Result::MadeInside);
    // The node walks to a café; an attacker there replays what it captured inside.
    b.advance(5s);
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    (void)b.send_internal();
    CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
    CHECK(b.internal(eth, captured) == Result::Replayed);  // the very reply accepted before
    CHECK(b.mode() == Mode::OutsideCoLocated);
    // Replayed on the same attachment it is a duplicate and matches nothing either.
    Bench c;
    REQUIRE(c.nd.attachment_changed(eth, ND::Attachment::CoLocated, c.now));
    const auto cid = c.send_internal();
    const auto genuine = Bench::reply(cid);
    CHECK(c.internal(eth, genuine) == Result::MadeInside);
    CHECK(c.internal(eth, genuine) == Result::Replayed);
}

TEST_CASE("timestamps: a genuine reply replayed later is refused even when its low 32 bits match a fresh request") {
    // RFC 5944 §5.7 matches on the low-order 32 bits: with timestamps, the fraction of a second
    // of our request. Whole-second clocks repeat it; the i-HA's time in the high bits does not.
    constexpr std::uint64_t second = std::uint64_t{1} << 32;
    const std::uint64_t office_request = 0xE0000100u * second;
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    b.nd.request_sent(eth, ND::Target::Internal, office_request, b.now);
    const auto captured = Bench::reply(office_request + 2 * second);  // the i-HA's clock is 2 s ahead
    CHECK(b.internal(eth, captured) == Result::MadeInside);

    b.advance(1s);
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    const std::uint64_t cafe_request = office_request + second;  // same low 32 bits (0)
    b.nd.request_sent(eth, ND::Target::Internal, cafe_request, b.now);
    CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
    CHECK(b.internal(eth, captured) == Result::Replayed);
    CHECK(b.internal(eth, Bench::reply(office_request + second)) == Result::Replayed);  // older i-HA time still
    CHECK(b.mode() == Mode::OutsideCoLocated);
    CHECK(b.nd.count(Result::Replayed) == 2);
    // The request was not used up: the i-HA's real (later) answer to it still counts.
    CHECK(b.internal(eth, Bench::reply(cafe_request + 2 * second)) == Result::MadeInside);

    SUBCASE("nonces: the high bits are the i-HA's random nonce, the low ones ours; no ordering applies") {
        Bench n([](ND::Config& c) { c.internal_sa.replay = mip::ReplayProtection::Nonce; });
        REQUIRE(n.nd.attachment_changed(eth, ND::Attachment::CoLocated, n.now));
        n.nd.request_sent(eth, ND::Target::Internal, 0x9000000012345678u, n.now);
        CHECK(n.internal(eth, Bench::reply(0x9000000012345678u)) == Result::MadeInside);
        n.nd.request_sent(eth, ND::Target::Internal, 0x1000000087654321u, n.now);
        CHECK(n.internal(eth, Bench::reply(0x1000000087654321u)) == Result::Refreshed);
    }
}

TEST_CASE("two interfaces: each detects alone, the inside one is preferred, losing it falls back") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    REQUIRE(b.nd.attachment_changed(wlan, ND::Attachment::CoLocated, b.now));
    const auto eth_internal = b.send_internal(eth);
    const auto wlan_internal = b.send_internal(wlan);
    const auto wlan_external = b.send_external(wlan);
    (void)b.send_external(eth);

    // The wired link's answer arriving on the wireless one proves nothing there.
    CHECK(b.answer_internal(eth_internal, wlan) == Result::UnknownIdentification);
    CHECK(b.answer_external(wlan_external, wlan) == Result::MadeOutside);
    CHECK(b.nd.preferred_interface(b.now) == wlan);
    b.advance(1s);
    CHECK(b.answer_internal(eth_internal, eth) == Result::MadeInside);
    CHECK(b.mode(eth) == Mode::InsideCoLocated);
    CHECK(b.mode(wlan) == Mode::OutsideCoLocated);  // success on eth says nothing about wlan
    CHECK(b.nd.preferred_interface(b.now) == eth);
    CHECK(b.nd.statuses(b.now).size() == 2);
    // Inside on eth, an attacker on wlan answers wlan's request without TNC: wlan stays outside.
    ReplySpec no_tnc;
    no_tnc.tnc = false;
    CHECK(b.answer_internal(wlan_internal, wlan, no_tnc) == Result::NoTrustedNetworks);
    CHECK(b.mode(wlan) == Mode::OutsideCoLocated);

    // The cable is pulled: traffic moves to the wireless link at once.
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::Detached, b.now));
    CHECK(b.nd.preferred_interface(b.now) == wlan);
    // eth's T_MONITOR lapsing would do the same.
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    CHECK(b.answer_internal(b.send_internal(eth), eth) == Result::MadeInside);
    CHECK(b.nd.preferred_interface(b.now) == eth);
    b.advance(60s);
    CHECK(b.mode(eth) == Mode::Detecting);
    CHECK(b.nd.preferred_interface(b.now) == wlan);
}

TEST_CASE("two inside interfaces: the one added first is preferred, whichever came up first") {
    Bench b([](ND::Config& c) { c.max_interfaces = 2; });
    REQUIRE(b.nd.add_interface(eth));
    REQUIRE(b.nd.add_interface(wlan));
    REQUIRE(b.nd.add_interface(eth));  // known already: keeps its place, takes no slot
    CHECK_FALSE(b.nd.add_interface(7));  // the table is full
    // Known but never attached: no service, no data, nothing to ask.
    CHECK(b.mode(wlan) == Mode::NoService);
    CHECK(b.status(wlan).decided_by.cause == Cause::Detached);
    CHECK_FALSE(b.status(wlan).register_internal);
    CHECK_FALSE(b.nd.data_allowed(wlan, b.now));
    CHECK_FALSE(b.nd.next_deadline());

    REQUIRE(b.nd.attachment_changed(wlan, ND::Attachment::CoLocated, b.now));
    CHECK(b.answer_internal(b.send_internal(wlan), wlan) == Result::MadeInside);
    CHECK(b.nd.preferred_interface(b.now) == wlan);
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    CHECK(b.answer_internal(b.send_internal(eth), eth) == Result::MadeInside);
    CHECK(b.nd.preferred_interface(b.now) == eth);
    CHECK(b.nd.statuses(b.now).front().ifindex == eth);
}

TEST_CASE("via a foreign agent: the relayed reply counts, extensions the agent appends after the MHAE do not") {
    Bench b;
    const auto fa = ip("10.9.0.1");
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::ForeignAgent, b.now, fa));
    // The FA appends a Mobile-Foreign Authentication Extension (RFC 5944 §3.5.3) after the MHAE.
    const auto mfae = "21 14 00 00 01 00 00000000000000000000000000000000"_hex;
    auto with_mfae = [&](test::Bytes r) {
        r.insert(r.end(), mfae.begin(), mfae.end());
        return r;
    };
    ReplySpec no_tnc;
    no_tnc.tnc = false;
    auto rogue = with_mfae(Bench::reply(b.send_internal(), no_tnc));
    const auto tnc = "95 02 00 00"_hex;
    rogue.insert(rogue.end(), tnc.begin(), tnc.end());  // a TNC an agent on the path added
    CHECK(b.internal(eth, rogue, ND::Path::Direct, {fa, 434}) == Result::NoTrustedNetworks);
    CHECK(b.internal(eth, with_mfae(Bench::reply(b.send_internal())), ND::Path::Direct, {ip("10.9.0.2"), 434}) ==
          Result::WrongSource);
    CHECK(b.mode() == Mode::Detecting);
    CHECK(b.internal(eth, with_mfae(Bench::reply(b.send_internal())), ND::Path::Direct, {fa, 434}) == Result::MadeInside);
    CHECK(b.mode() == Mode::InsideForeignAgent);
    // Back to a co-located address: the FA no longer speaks for the i-HA.
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now, fa));
    CHECK(b.internal(eth, Bench::reply(b.send_internal()), ND::Path::Direct, {fa, 434}) == Result::WrongSource);
}

namespace {
const auto intranet_agent = ip("10.9.0.1");
const auto cafe_agent = ip("192.0.2.1");

// Attaches `ifindex` through `agent`, as the stage does on a new agent's advertisement.
void attach_via(Bench& b, core::Ipv4Address agent, std::uint32_t ifindex = eth) {
    REQUIRE(b.nd.attachment_changed(ifindex, ND::Attachment::ForeignAgent, b.now, agent));
    CHECK(b.mode(ifindex) == Mode::Detecting);
    CHECK_FALSE(b.nd.data_allowed(ifindex, b.now));
}
Result relayed(Bench& b, std::uint64_t id, core::Ipv4Address agent, const ReplySpec& s = {}) {
    return b.internal(eth, Bench::reply(id, s), ND::Path::Direct, {agent, 434});
}
}  // namespace

TEST_CASE("intranet foreign agent (f): every order of the relayed i-HA reply and the x-HA's answer") {
    Bench b;
    attach_via(b, intranet_agent);
    const auto iid = b.send_internal();
    const auto xid = b.send_external();

    SUBCASE("i-HA first, then the x-HA: f, the x-HA answer decides nothing") {
        b.advance(100ms);
        CHECK(relayed(b, iid, intranet_agent) == Result::MadeInside);
        CHECK(b.answer_external(xid) == Result::NoChange);
        CHECK(b.mode() == Mode::InsideForeignAgent);
        CHECK(ND::mode_name(b.mode()) == "f");
        CHECK(b.status().decided_by.cause == Cause::InternalTnc);
        CHECK(b.status().data_allowed);
    }
    SUBCASE("x-HA first: tentatively fvc, the relayed TNC reply within the window makes it f") {
        CHECK(b.answer_external(xid) == Result::MadeOutside);
        CHECK(b.mode() == Mode::OutsideForeignAgent);
        CHECK(b.status().register_internal);
        b.advance(4s);
        CHECK(relayed(b, iid, intranet_agent) == Result::MadeInside);
        CHECK(b.mode() == Mode::InsideForeignAgent);
    }
    SUBCASE("x-HA first, the relayed reply after the window (IPsec setup began): still f") {
        CHECK(b.answer_external(xid) == Result::MadeOutside);
        b.advance(15s);
        CHECK_FALSE(b.status().register_internal);
        CHECK(relayed(b, iid, intranet_agent) == Result::MadeInside);
        CHECK(b.mode() == Mode::InsideForeignAgent);
    }
    SUBCASE("the first relay lost: a retransmission's answer counts") {
        b.advance(1s);
        const auto retry = b.send_internal();
        CHECK(relayed(b, retry, intranet_agent) == Result::MadeInside);
        CHECK(relayed(b, iid, intranet_agent) == Result::Refreshed);
    }
    SUBCASE("inside through the agent: re-registrations through it keep T_MONITOR; without them, detection again") {
        CHECK(relayed(b, iid, intranet_agent) == Result::MadeInside);
        b.advance(50s);
        CHECK(b.status().register_internal);
        CHECK(relayed(b, b.send_internal(), intranet_agent) == Result::Refreshed);
        b.advance(55s);
        CHECK(b.mode() == Mode::InsideForeignAgent);
        b.advance(10s);
        CHECK(b.mode() == Mode::Detecting);
        CHECK(b.status().decided_by.cause == Cause::MonitorExpired);
        CHECK_FALSE(b.status().data_allowed);
    }
}

TEST_CASE("cafe foreign agent (fvc): only the x-HA answers; nothing a rogue agent relays makes the node inside") {
    Bench b;
    // A genuine TNC reply captured in the intranet, through the intranet agent.
    attach_via(b, intranet_agent);
    const auto office_id = b.send_internal();
    const auto captured = Bench::reply(office_id);
    CHECK(b.internal(eth, captured, ND::Path::Direct, {intranet_agent, 434}) == Result::MadeInside);

    b.advance(5s);
    attach_via(b, cafe_agent);
    (void)b.send_internal();
    CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
    CHECK(b.mode() == Mode::OutsideForeignAgent);
    CHECK(ND::mode_name(b.mode()) == "fvc");
    CHECK(b.status().data_allowed);  // through the VPN

    struct Row {
        const char* name;
        std::function<Result(Bench&, std::uint64_t)> attempt;
        Result expected;
    };
    const std::vector<Row> rows = {
        {"TNC under a wrong key",
         [](Bench& x, std::uint64_t id) { ReplySpec s; s.key = &other_key; return relayed(x, id, cafe_agent, s); },
         Result::BadAuthenticator},
        {"authenticated, without TNC",
         [](Bench& x, std::uint64_t id) { ReplySpec s; s.tnc = false; return relayed(x, id, cafe_agent, s); },
         Result::NoTrustedNetworks},
        {"a TNC the agent appended after the MHAE",
         [](Bench& x, std::uint64_t id) { ReplySpec s; s.tnc_after_mhae = true; return relayed(x, id, cafe_agent, s); },
         Result::NoTrustedNetworks},
        {"no authenticator at all",
         [](Bench& x, std::uint64_t id) {
             auto r = Bench::reply(id);
             r.resize(r.size() - mip::mhae_len);
             return x.internal(eth, r, ND::Path::Direct, {cafe_agent, 434});
         },
         Result::NoAuthentication},
        {"the genuine office reply, replayed",
         [&captured](Bench& x, std::uint64_t) { return x.internal(eth, captured, ND::Path::Direct, {cafe_agent, 434}); },
         Result::Replayed},
        {"from the intranet agent's address (not the one attached through)",
         [](Bench& x, std::uint64_t id) { return relayed(x, id, intranet_agent); }, Result::WrongSource},
        {"from the i-HA's own address (agents relay; a direct one is spoofed)",
         [](Bench& x, std::uint64_t id) { return x.internal(eth, Bench::reply(id)); }, Result::WrongSource},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        CHECK(row.attempt(b, b.send_internal()) == row.expected);
        CHECK(b.mode() == Mode::OutsideForeignAgent);
        CHECK(b.status().decided_by.cause == Cause::ExternalReply);
        CHECK(b.status().data_allowed);
    }
}

TEST_CASE("transitions through agents: f -> cvc -> fvc -> f -> c, each a status change voiding earlier requests") {
    Bench b;
    attach_via(b, intranet_agent);
    const auto f_id = b.send_internal();
    CHECK(relayed(b, f_id, intranet_agent) == Result::MadeInside);
    CHECK(b.mode() == Mode::InsideForeignAgent);
    const auto stale = b.send_internal();  // outstanding when the node walks out

    // f -> cvc
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    CHECK_FALSE(b.nd.data_allowed(eth, b.now));
    CHECK(relayed(b, stale, intranet_agent) == Result::WrongSource);  // the agent no longer speaks for the i-HA
    (void)b.send_internal();
    CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
    CHECK(b.mode() == Mode::OutsideCoLocated);

    // cvc -> fvc: detection runs again; only the x-HA answers
    b.advance(20s);
    attach_via(b, cafe_agent);
    CHECK(b.status().register_internal);
    CHECK(b.status().register_external);
    (void)b.send_internal();
    CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
    CHECK(b.mode() == Mode::OutsideForeignAgent);

    // fvc -> f: the stale intranet request proves nothing; a fresh relayed one does
    b.advance(20s);
    attach_via(b, intranet_agent);
    CHECK(relayed(b, stale, intranet_agent) == Result::UnknownIdentification);
    CHECK(relayed(b, b.send_internal(), intranet_agent) == Result::MadeInside);
    CHECK(b.mode() == Mode::InsideForeignAgent);

    // f -> c
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    CHECK(b.answer_internal(b.send_internal()) == Result::MadeInside);
    CHECK(b.mode() == Mode::InsideCoLocated);
}

TEST_CASE("a foreign-agent attachment that names no agent is no attachment: no service, nothing trusted") {
    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    CHECK(b.answer_internal(b.send_internal()) == Result::MadeInside);
    CHECK_FALSE(b.nd.attachment_changed(eth, ND::Attachment::ForeignAgent, b.now));
    const auto s = b.status();
    CHECK(s.mode == Mode::NoService);
    CHECK(s.attachment == ND::Attachment::Detached);
    CHECK_FALSE(s.data_allowed);
    CHECK(b.internal(eth, Bench::reply(b.send_internal()), ND::Path::Direct, {core::Ipv4Address{}, 434}) ==
          Result::UnknownInterface);
}

TEST_CASE("the interface table is bounded") {
    Bench b([](ND::Config& c) { c.max_interfaces = 2; });
    CHECK(b.nd.attachment_changed(1, ND::Attachment::CoLocated, b.now));
    CHECK(b.nd.attachment_changed(2, ND::Attachment::CoLocated, b.now));
    CHECK_FALSE(b.nd.attachment_changed(3, ND::Attachment::CoLocated, b.now));
    CHECK_FALSE(b.nd.status(3, b.now));
    CHECK(b.nd.attachment_changed(3, ND::Attachment::Detached, b.now));  // nothing to forget
    CHECK(b.nd.attachment_changed(1, ND::Attachment::ForeignAgent, b.now, ip("10.9.0.1")));  // known ones still change
}

TEST_CASE("equal home agent addresses: always outside, the internal HA is never trusted (RFC 5265 §4)") {
    Bench b([](ND::Config& c) { c.external_home_agent = internal_ha; });
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    auto s = b.status();
    CHECK_FALSE(s.register_internal);
    CHECK(s.register_external);
    const auto id = b.send_internal();
    CHECK(b.answer_internal(id) == Result::DetectionDisabled);
    CHECK(b.mode() == Mode::Detecting);
    CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
    CHECK_FALSE(b.status().register_internal);
    CHECK_FALSE(b.nd.next_deadline());
}

TEST_CASE("2002 profile: internal HA alone first, a plain authenticated direct reply means inside") {
    Bench b([](ND::Config& c) {
        c.profile = ND::Profile::PlainInternalFirst;
        c.plain_internal_wait = 3s;
    });
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    auto s = b.status();
    CHECK(s.register_internal);
    CHECK_FALSE(s.register_external);
    CHECK(b.nd.next_deadline() == b.now + 3s);

    SUBCASE("an answer without TNC is enough (the weakness)") {
        const auto id = b.send_internal();
        b.advance(1s);
        ReplySpec no_tnc;
        no_tnc.tnc = false;
        CHECK(b.answer_internal(id, eth, no_tnc) == Result::MadeInside);
        CHECK(b.status().decided_by.cause == Cause::InternalPlain);
    }
    SUBCASE("an answer with TNC is recorded as such") {
        CHECK(b.answer_internal(b.send_internal()) == Result::MadeInside);
        CHECK(b.status().decided_by.cause == Cause::InternalTnc);
    }
    SUBCASE("no answer: the external HA is asked after the wait") {
        const auto id = b.send_internal();
        b.advance(3s);
        CHECK(b.status().register_external);
        CHECK(b.nd.next_deadline() == b.now + 27s);
        CHECK(b.answer_external(b.send_external()) == Result::MadeOutside);
        // Still: wrong key, tunnel and stale replies never make it inside.
        ReplySpec wrong;
        wrong.key = &other_key;
        CHECK(b.answer_internal(id, eth, wrong) == Result::BadAuthenticator);
        CHECK(b.internal(eth, Bench::reply(id), ND::Path::Tunnel) == Result::ViaTunnel);
        CHECK(b.answer_internal(id + 77) == Result::UnknownIdentification);
        CHECK(b.mode() == Mode::OutsideCoLocated);
    }
}

TEST_CASE("end to end with the home agent core: only a trusted source gets the TNC that makes it inside") {
    test::SeededRandom random;
    const core::Duration ntp_off = std::chrono::seconds(3'900'000'000LL);
    mip::HomeAgent::Config hc;
    hc.address = internal_ha;
    hc.home_network = *core::Ipv4Prefix::parse("10.1.0.0/24");
    hc.ntp_offset = ntp_off;
    hc.trusted_networks = {*core::Ipv4Prefix::parse("10.2.0.0/16")};
    hc.mobile_nodes.push_back({home, test::make_sa(256, internal_key), ""});
    mip::HomeAgent ha(std::move(hc), random);

    Bench b;
    REQUIRE(b.nd.attachment_changed(eth, ND::Attachment::CoLocated, b.now));
    auto request = [&](core::Ipv4Address coa, std::uint64_t id) {
        auto m = mip::build_request({0x02, 600, home, internal_ha, coa, id}, {}, {256, internal_key});
        REQUIRE(m);
        return test::Bytes(m->bytes().begin(), m->bytes().end());
    };
    // Outside (source not trusted): silence, so nothing to decide on.
    const auto outside_coa = ip("192.0.2.10");
    const auto id1 = mip::ntp_time(b.now, ntp_off);
    b.nd.request_sent(eth, ND::Target::Internal, id1, b.now);
    CHECK_FALSE(ha.process(request(outside_coa, id1), {outside_coa, internal_ha, 434, 434}, b.now).reply);
    // Inside (trusted source): the reply carries TNC and the node concludes inside.
    const auto inside_coa = ip("10.2.3.4");
    b.now += 1s;
    const auto id2 = mip::ntp_time(b.now, ntp_off);
    b.nd.request_sent(eth, ND::Target::Internal, id2, b.now);
    auto out = ha.process(request(inside_coa, id2), {inside_coa, internal_ha, 434, 434}, b.now);
    REQUIRE(out.reply);
    test::Bytes reply(out.reply->bytes().begin(), out.reply->bytes().end());
    CHECK(b.internal(eth, reply) == Result::MadeInside);
    CHECK(b.status().decided_by.identification == id2);
}

TEST_CASE("names for status") {
    CHECK(ND::mode_name(Mode::Detecting) == "detecting");
    CHECK(ND::mode_name(Mode::InsideForeignAgent) == "f");
    CHECK(ND::mode_name(Mode::OutsideForeignAgent) == "fvc");
    CHECK(ND::cause_name(Cause::InternalTnc) == "internal_ha_tnc_reply");
    CHECK(ND::cause_name(Cause::MonitorExpired) == "t_monitor_expired");
    for (std::size_t r = 0; r < ND::reply_result_count; ++r) CHECK(ND::result_name(static_cast<Result>(r)) != "?");
    CHECK(ND::is_rejection(Result::ViaTunnel));
    CHECK_FALSE(ND::is_rejection(Result::NoChange));
}
