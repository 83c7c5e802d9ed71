// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>

#include "mip/home_agent.hpp"
#include "tests/mip/mip_test_support.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using namespace std::chrono_literals;
using test::ip;
using Discard = mip::HomeAgent::Discard;
using Change = mip::HomeAgent::ChangeKind;

namespace {

const auto key_a = "00112233445566778899aabbccddeeff"_hex;
const auto key_b = "ffeeddccbbaa99887766554433221100"_hex;
const auto home_a = ip("10.1.0.77");
const auto home_b = ip("10.1.0.78");
const auto ha_addr = ip("10.1.0.1");
const auto coa = ip("192.168.1.23");
const core::Duration ntp_off = std::chrono::seconds(3'900'000'000LL);

struct Fixture {
    test::SeededRandom random;
    core::TimePoint now = core::TimePoint{} + 1h;
    mip::HomeAgent ha;

    static mip::HomeAgent::Config config(std::function<void(mip::HomeAgent::Config&)> tweak = {}) {
        mip::HomeAgent::Config c;
        c.address = ha_addr;
        c.home_network = *core::Ipv4Prefix::parse("10.1.0.0/24");
        c.max_lifetime = 1000;
        c.ntp_offset = ntp_off;
        c.mobile_nodes.push_back({home_a, test::make_sa(256, key_a), "a@example.org"});
        c.mobile_nodes.push_back({home_b, test::make_sa(257, key_b), ""});
        if (tweak) tweak(c);
        return c;
    }
    explicit Fixture(std::function<void(mip::HomeAgent::Config&)> tweak = {}) : ha(config(std::move(tweak)), random) {}

    std::uint64_t ts(core::Duration skew = {}) const { return mip::ntp_time(now + skew, ntp_off); }
};

struct Req {
    mip::RegistrationRequest fixed{0x22, 600, home_a, ha_addr, coa, 0};
    mip::RequestExtensions ext;
    std::uint32_t spi = 256;
    test::Bytes key = key_a;
};

test::Bytes build(const Req& r) {
    auto m = mip::build_request(r.fixed, r.ext, {r.spi, r.key});
    REQUIRE(m);
    return {m->bytes().begin(), m->bytes().end()};
}

mip::HomeAgent::Received direct(core::Ipv4Address src = coa) { return {src, ha_addr, 40000, 434}; }

struct ParsedReply {
    mip::RegistrationReply fixed;
    mip::ScannedExtensions ext;
    bool authentic = false;
};

// Parses a reply and verifies its MHAE with `key` (the MN's view).
ParsedReply parse_reply(const mip::HomeAgent::Outcome& out, const test::Bytes& key = key_a) {
    REQUIRE(out.reply);
    auto v = mip::RegistrationReplyView::check(out.reply->bytes());
    REQUIRE(v);
    ParsedReply p;
    p.fixed = mip::RegistrationReply::parse(*v);
    REQUIRE_FALSE(mip::scan_extensions(out.reply->bytes(), 20, mip::MessageKind::Reply, p.ext));
    p.authentic = p.ext.mobile_home_auth_count == 1 &&
                  mip::verify_authenticator(out.reply->bytes(), *p.ext.mobile_home_auth, key);
    CHECK(p.fixed.code == out.code);
    return p;
}

}  // namespace

TEST_CASE("HA accepts a valid request: binding, capped lifetime, authenticated reply") {
    Fixture f;
    Req r;
    r.fixed.lifetime = 5000;  // above max_lifetime 1000
    r.fixed.identification = f.ts();
    auto out = f.ha.process(build(r), direct(), f.now);
    CHECK(out.discard == Discard::None);
    const auto p = parse_reply(out);
    CHECK(p.authentic);
    CHECK(p.fixed.code == 0);
    CHECK(p.fixed.lifetime == 1000);  // shortened, never lengthened
    CHECK(p.fixed.home_address == home_a);
    CHECK(p.fixed.home_agent == ha_addr);
    CHECK(p.fixed.identification == r.fixed.identification);
    CHECK(out.reply_to == core::Endpoint{coa, 40000});
    CHECK(out.reply_from == core::Endpoint{ha_addr, 434});
    CHECK(out.change.kind == Change::Added);

    auto b = f.ha.binding(home_a);
    REQUIRE(b);
    CHECK(b->care_of_address == coa);
    CHECK(b->mode == mip::TunnelMode::IpInIp);
    CHECK(b->reverse_tunnel);
    CHECK(b->expires == f.now + 1000s);
    CHECK(f.ha.next_deadline() == f.now + 1000s);
}

TEST_CASE("HA silently discards what it cannot authenticate (RFC 5944 §3.8.2.1 checks 2, 5)") {
    struct Row {
        const char* name;
        std::function<test::Bytes(Fixture&)> make;
        Discard expected;
    };
    const Row rows[] = {
        {"not a request", [](Fixture&) { return "03 00 00 00"_hex; }, Discard::Malformed},
        {"unknown home address",
         [](Fixture& f) {
             Req r;
             r.fixed.home_address = ip("10.1.0.99");
             r.fixed.identification = f.ts();
             return build(r);
         },
         Discard::UnknownMobileNode},
        {"wrong SPI",
         [](Fixture& f) {
             Req r;
             r.spi = 999;
             r.fixed.identification = f.ts();
             return build(r);
         },
         Discard::UnknownSpi},
        {"no MHAE",
         [](Fixture& f) {
             Req r;
             r.fixed.identification = f.ts();
             auto b = build(r);
             b.resize(24);
             return b;
         },
         Discard::NoAuthExtension},
        {"unknown non-skippable extension",
         [](Fixture& f) {
             Req r;
             r.fixed.identification = f.ts();
             auto b = build(r);
             auto extra = "32 00"_hex;
             b.insert(b.end(), extra.begin(), extra.end());
             return b;
         },
         Discard::UnknownExtension},
        {"FHAE without an HA-FA SA",
         [](Fixture& f) {
             Req r;
             r.fixed.identification = f.ts();
             auto b = build(r);
             auto fhae = "22 14 00 00 01 00 00000000000000000000000000000000"_hex;
             b.insert(b.end(), fhae.begin(), fhae.end());
             return b;
         },
         Discard::UnexpectedFhae},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        Fixture f;
        auto out = f.ha.process(row.make(f), direct(), f.now);
        CHECK(out.discard == row.expected);
        CHECK_FALSE(out.reply);
        CHECK(f.ha.bindings().empty());
    }
}

TEST_CASE("HA outcome names the node for logs: home address (from the NAI too), NAI and SPI") {
    Fixture f;
    Req r;
    r.fixed.identification = f.ts();
    r.key = key_b;  // a's request with b's key: 131
    auto out = f.ha.process(build(r), direct(), f.now);
    CHECK(out.code == mip::reply_code::ha_mn_auth_failed);
    CHECK(out.home_address == home_a);
    CHECK(out.nai.empty());
    CHECK(out.spi == 256);

    r.fixed.home_address = core::Ipv4Address{};
    r.ext.nai = "a@example.org";
    r.spi = 300;
    auto test_bytes = build(r);
    out = f.ha.process(test_bytes, direct(), f.now);
    CHECK(out.discard == Discard::UnknownSpi);
    CHECK(out.home_address == home_a);  // resolved from the NAI
    CHECK(std::string(out.nai.begin(), out.nai.end()) == "a@example.org");
    CHECK(out.spi == 300);

    r.ext.nai = "nobody@example.org";
    test_bytes = build(r);
    out = f.ha.process(test_bytes, direct(), f.now);
    CHECK(out.discard == Discard::UnknownMobileNode);
    CHECK(out.home_address.is_unspecified());
    CHECK(std::string(out.nai.begin(), out.nai.end()) == "nobody@example.org");
}

TEST_CASE("HA: tampered request gets 131 and leaves the existing binding alone") {
    Fixture f;
    Req r;
    r.fixed.identification = f.ts();
    REQUIRE(f.ha.process(build(r), direct(), f.now).code == 0);
    const auto before = *f.ha.binding(home_a);

    f.now += 2s;
    Req evil;
    evil.fixed.care_of_address = ip("203.0.113.66");
    evil.fixed.identification = f.ts();
    auto bytes = build(evil);
    bytes[13] ^= 0x01;  // one byte of the CoA after the MAC was computed
    auto out = f.ha.process(bytes, direct(ip("203.0.113.66")), f.now);
    const auto p = parse_reply(out);
    CHECK(p.fixed.code == 131);
    CHECK(p.authentic);  // computed with the SA the MN holds
    CHECK(out.change.kind == Change::None);
    CHECK(f.ha.binding(home_a)->care_of_address == before.care_of_address);
    CHECK(f.ha.binding(home_a)->expires == before.expires);

    // The forgery did not advance replay state: a genuine request right after still works.
    f.now += 1s;
    r.fixed.identification = f.ts();
    CHECK(f.ha.process(build(r), direct(), f.now).code == 0);
}

TEST_CASE("HA: a node cannot register another node's home address") {
    Fixture f;
    Req rb;
    rb.fixed.home_address = home_b;
    rb.spi = 257;
    rb.key = key_b;
    rb.fixed.identification = f.ts();
    REQUIRE(f.ha.process(build(rb), direct(), f.now).code == 0);

    // Node A signs a request for B's home address with A's key and B's SPI.
    Req ra;
    ra.fixed.home_address = home_b;
    ra.fixed.care_of_address = ip("198.51.100.9");
    ra.spi = 257;
    ra.fixed.identification = f.ts(1s);
    auto out = f.ha.process(build(ra), direct(ip("198.51.100.9")), f.now);
    CHECK(out.code == 131);
    CHECK(f.ha.binding(home_b)->care_of_address == coa);
}

TEST_CASE("HA identification: timestamps out of tolerance or not increasing get 133 with resync") {
    Fixture f;
    Req r;
    r.fixed.identification = f.ts(-60s) | 0x1234;  // a minute slow
    auto out = f.ha.process(build(r), direct(), f.now);
    auto p = parse_reply(out);
    CHECK(p.fixed.code == 133);
    CHECK(p.authentic);
    // High 32 bits: the HA's NTP seconds; low 32 bits: the request's.
    CHECK((p.fixed.identification >> 32) == (f.ts() >> 32));
    CHECK((p.fixed.identification & 0xFFFFFFFFu) == (r.fixed.identification & 0xFFFFFFFFu));
    CHECK(f.ha.bindings().empty());

    // Accept id1, then id2 > id1; replaying id1 (fresh within tolerance) must fail. (A second
    // apart each time: at most one 133 per node per second is answered.)
    f.now += 1s;
    Req r1;
    r1.fixed.identification = f.ts();
    REQUIRE(f.ha.process(build(r1), direct(), f.now).code == 0);
    Req r2;
    r2.fixed.identification = f.ts(1s);
    r2.fixed.care_of_address = ip("192.168.1.24");
    REQUIRE(f.ha.process(build(r2), direct(ip("192.168.1.24")), f.now).code == 0);
    auto replay = f.ha.process(build(r1), direct(), f.now);
    CHECK(replay.code == 133);
    CHECK(replay.change.kind == Change::None);
    CHECK(f.ha.binding(home_a)->care_of_address == ip("192.168.1.24"));

    // Within tolerance ahead is fine; beyond it is not.
    Req ahead;
    ahead.fixed.care_of_address = ip("192.168.1.24");
    ahead.fixed.identification = f.ts(6s);
    CHECK(f.ha.process(build(ahead), direct(ip("192.168.1.24")), f.now).code == 0);
    f.now += 1s;
    ahead.fixed.identification = f.ts(30s);
    CHECK(f.ha.process(build(ahead), direct(ip("192.168.1.24")), f.now).code == 133);
}

TEST_CASE("HA duplicate request is answered but does not extend the lifetime") {
    Fixture f;
    Req r;
    r.fixed.identification = f.ts();
    const auto bytes = build(r);
    REQUIRE(f.ha.process(bytes, direct(), f.now).code == 0);
    const auto expires = f.ha.binding(home_a)->expires;
    f.now += 100s;
    auto out = f.ha.process(bytes, direct(), f.now);
    const auto p = parse_reply(out);
    CHECK(p.fixed.code == 0);
    CHECK(p.fixed.lifetime == 500);  // what remains
    CHECK(out.change.kind == Change::None);
    CHECK(f.ha.binding(home_a)->expires == expires);
}

TEST_CASE("HA nonce replay protection self-synchronises (RFC 5944 §5.7.2)") {
    Fixture f([](mip::HomeAgent::Config& c) { c.mobile_nodes[0].sa.replay = mip::ReplayProtection::Nonce; });
    Req r;
    r.fixed.identification = 0x0000000011112222u;  // no nonce known yet
    const auto out1 = f.ha.process(build(r), direct(), f.now);
    auto first = parse_reply(out1);
    CHECK(first.fixed.code == 133);
    CHECK(first.authentic);
    const std::uint32_t nonce = first.fixed.identification >> 32;
    CHECK((first.fixed.identification & 0xFFFFFFFFu) == 0x11112222u);

    r.fixed.identification = (std::uint64_t{nonce} << 32) | 0x33334444u;
    const auto out2 = f.ha.process(build(r), direct(), f.now);
    auto second = parse_reply(out2);
    CHECK(second.fixed.code == 0);
    const std::uint32_t next = second.fixed.identification >> 32;
    CHECK(next != nonce);  // every reply carries a fresh nonce
    CHECK((second.fixed.identification & 0xFFFFFFFFu) == 0x33334444u);

    // The old nonce is no longer valid (a second later: at most one 133 per node per second).
    f.now += 1s;
    r.fixed.identification = (std::uint64_t{nonce} << 32) | 0x55556666u;
    CHECK(f.ha.process(build(r), direct(), f.now).code == 133);
}

TEST_CASE("HA reply codes for policy and form (table)") {
    struct Row {
        const char* name;
        std::function<void(mip::HomeAgent::Config&)> config;
        std::function<void(Req&)> request;
        core::Ipv4Address ip_source;
        core::Ipv4Address ip_destination;
        std::uint8_t code;
    };
    auto none = [](mip::HomeAgent::Config&) {};
    auto keep = [](Req&) {};
    auto udp = [](Req& r) { r.ext.udp_tunnel = mip::UdpTunnelRequest{}; };
    const auto nat_src = ip("203.0.113.5");
    const Row rows[] = {
        {"accepted", none, keep, coa, ha_addr, 0},
        {"S flag: accepted without simultaneous bindings", none, [](Req& r) { r.fixed.flags |= 0x80; }, coa, ha_addr, 1},
        {"reserved bit r", none, [](Req& r) { r.fixed.flags |= 0x04; }, coa, ha_addr, 134},
        {"reserved bit x", none, [](Req& r) { r.fixed.flags |= 0x01; }, coa, ha_addr, 134},
        {"limited broadcast destination", none, keep, coa, ip("255.255.255.255"), 136},
        {"subnet-directed broadcast", none, keep, coa, ip("10.1.0.255"), 136},
        {"another HA's address", none, [](Req& r) { r.fixed.home_agent = ip("10.1.0.2"); }, coa, ha_addr, 136},
        {"T but reverse tunnelling unsupported", [](mip::HomeAgent::Config& c) { c.reverse_tunnel_supported = false; },
         keep, coa, ha_addr, 137},
        {"reverse tunnelling mandatory", [](mip::HomeAgent::Config& c) { c.reverse_tunnel_required = true; },
         [](Req& r) { r.fixed.flags &= ~0x02; }, coa, ha_addr, 138},
        {"minimal encapsulation", none, [](Req& r) { r.fixed.flags |= 0x10; }, coa, ha_addr, 139},
        {"GRE", none, [](Req& r) { r.fixed.flags |= 0x08; }, coa, ha_addr, 139},
        {"NAT but UDP tunnelling disabled", [](mip::HomeAgent::Config& c) { c.udp_tunnelling = false; }, udp, nat_src,
         ha_addr, 129},
        {"F without NAT but forcing disallowed", [](mip::HomeAgent::Config& c) { c.udp_forcing_allowed = false; },
         [](Req& r) { r.ext.udp_tunnel = mip::UdpTunnelRequest{true, false, 4}; }, coa, ha_addr, 129},
        {"GRE-in-UDP unavailable", none, [](Req& r) { r.ext.udp_tunnel = mip::UdpTunnelRequest{false, false, 47}; },
         nat_src, ha_addr, 142},
        {"tunnel request without D", none,
         [](Req& r) {
             r.ext.udp_tunnel = mip::UdpTunnelRequest{};
             r.fixed.flags &= ~0x20;
         },
         nat_src, ha_addr, 134},
        {"max bindings reached", [](mip::HomeAgent::Config& c) { c.max_bindings = 0; }, keep, coa, ha_addr, 130},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        Fixture f(row.config);
        Req r;
        r.fixed.identification = f.ts();
        row.request(r);
        auto out = f.ha.process(build(r), {row.ip_source, row.ip_destination, 40000, 434}, f.now);
        const auto p = parse_reply(out);
        CHECK(p.authentic);
        CHECK(p.fixed.code == row.code);
        CHECK(p.fixed.home_agent == ha_addr);  // always the unicast address
        CHECK(f.ha.bindings().size() == (mip::is_accepted(row.code) ? 1u : 0u));
    }
}

TEST_CASE("HA: Tunnel Request with non-zero Reserved 3 is answered with 134 (RFC 3519 §3.1)") {
    Fixture f;
    Req r;
    r.fixed.identification = f.ts();
    // Build without the MHAE's help: insert the bad extension before the MHAE by hand.
    mip::RegistrationRequest fixed = r.fixed;
    test::Bytes msg(24);
    fixed.emit(msg);
    auto ext = "90 06 00 00 00 04 00 07"_hex;
    msg.insert(msg.end(), ext.begin(), ext.end());
    msg.push_back(32);
    msg.push_back(20);
    msg.insert(msg.end(), {0, 0, 1, 0});
    std::array<std::uint8_t, 16> mac{};
    REQUIRE(mip::compute_authenticator(key_a, msg, mac));
    msg.insert(msg.end(), mac.begin(), mac.end());
    auto out = f.ha.process(msg, direct(ip("203.0.113.5")), f.now);
    CHECK(out.code == 134);
    CHECK(f.ha.bindings().empty());
}

TEST_CASE("HA UDP tunnelling: NAT detection, assent, decline and forcing (RFC 3519 §4)") {
    SUBCASE("NAT detected: assenting Tunnel Reply, binding in UDP mode at the NAT endpoint") {
        Fixture f([](mip::HomeAgent::Config& c) { c.udp_max_lifetime = 60; });
        Req r;
        r.ext.udp_tunnel = mip::UdpTunnelRequest{};
        r.fixed.identification = f.ts();
        auto out = f.ha.process(build(r), {ip("203.0.113.5"), ha_addr, 61000, 434}, f.now);
        const auto p = parse_reply(out);
        REQUIRE(p.fixed.code == 0);
        CHECK(p.fixed.lifetime == 60);
        REQUIRE(p.ext.udp_tunnel_reply.size() == 8);
        auto tr = mip::UdpTunnelReplyView::check(p.ext.udp_tunnel_reply);
        CHECK(tr->assents());
        CHECK(tr->keepalive_interval() == 110);
        CHECK_FALSE(tr->forced());
        auto b = f.ha.binding(home_a);
        CHECK(b->mode == mip::TunnelMode::Udp);
        CHECK(b->udp_endpoint == core::Endpoint{ip("203.0.113.5"), 61000});
        CHECK(b->care_of_address == coa);
        CHECK(out.reply_to == core::Endpoint{ip("203.0.113.5"), 61000});
    }
    SUBCASE("no NAT, no F: declining Tunnel Reply, plain IP-in-IP") {
        Fixture f;
        Req r;
        r.ext.udp_tunnel = mip::UdpTunnelRequest{};
        r.fixed.identification = f.ts();
        const auto out = f.ha.process(build(r), direct(), f.now);
        const auto p = parse_reply(out);
        CHECK(p.fixed.code == 0);
        REQUIRE(p.ext.udp_tunnel_reply.size() == 8);
        CHECK_FALSE(mip::UdpTunnelReplyView::check(p.ext.udp_tunnel_reply)->assents());
        CHECK(f.ha.binding(home_a)->mode == mip::TunnelMode::IpInIp);
    }
    SUBCASE("F without NAT: forced assent") {
        Fixture f;
        Req r;
        r.ext.udp_tunnel = mip::UdpTunnelRequest{true, false, 4};
        r.fixed.identification = f.ts();
        const auto out = f.ha.process(build(r), direct(), f.now);
        const auto p = parse_reply(out);
        CHECK(p.fixed.code == 0);
        auto tr = mip::UdpTunnelReplyView::check(p.ext.udp_tunnel_reply);
        CHECK(tr->assents());
        CHECK(tr->forced());
        CHECK(f.ha.binding(home_a)->mode == mip::TunnelMode::Udp);
    }
    SUBCASE("R flag: half-bound until the first keepalive from the same address") {
        Fixture f;
        Req r;
        r.ext.udp_tunnel = mip::UdpTunnelRequest{false, true, 4};
        r.fixed.identification = f.ts();
        REQUIRE(f.ha.process(build(r), {ip("203.0.113.5"), ha_addr, 434, 434}, f.now).code == 0);
        CHECK(f.ha.binding(home_a)->half_bound);
        CHECK_FALSE(f.ha.complete_half_bound(home_a, {ip("203.0.113.6"), 5555}));
        CHECK(f.ha.complete_half_bound(home_a, {ip("203.0.113.5"), 5555}));
        CHECK(f.ha.binding(home_a)->udp_endpoint == core::Endpoint{ip("203.0.113.5"), 5555});
        CHECK_FALSE(f.ha.binding(home_a)->half_bound);
    }
}

TEST_CASE("HA deregistration: lifetime 0, or CoA = HoA, removes the binding") {
    for (bool coa_is_home : {false, true}) {
        CAPTURE(coa_is_home);
        Fixture f;
        Req r;
        r.fixed.identification = f.ts();
        REQUIRE(f.ha.process(build(r), direct(), f.now).code == 0);
        f.now += 1s;
        Req d;
        d.fixed.identification = f.ts();
        if (coa_is_home) {
            d.fixed.care_of_address = home_a;
            d.fixed.flags = 0;
        }
        d.fixed.lifetime = coa_is_home ? 600 : 0;
        auto out = f.ha.process(build(d), direct(coa_is_home ? home_a : coa), f.now);
        const auto p = parse_reply(out);
        CHECK(p.fixed.code == 0);
        CHECK(p.fixed.lifetime == 0);
        CHECK(out.change.kind == Change::Removed);
        CHECK(out.change.binding.care_of_address == coa);
        CHECK_FALSE(f.ha.binding(home_a));
    }
}

TEST_CASE("HA expiry with a fake clock; poll reports the next deadline and sends nothing") {
    Fixture f;
    Req ra;
    ra.fixed.lifetime = 100;
    ra.fixed.identification = f.ts();
    REQUIRE(f.ha.process(build(ra), direct(), f.now).code == 0);
    Req rb;
    rb.fixed.home_address = home_b;
    rb.spi = 257;
    rb.key = key_b;
    rb.fixed.lifetime = 200;
    rb.fixed.identification = f.ts();
    REQUIRE(f.ha.process(build(rb), direct(), f.now).code == 0);

    std::vector<mip::Binding> expired;
    CHECK(f.ha.poll(f.now + 99s, &expired) == f.now + 100s);
    CHECK(expired.empty());
    CHECK(f.ha.poll(f.now + 100s, &expired) == f.now + 200s);
    REQUIRE(expired.size() == 1);
    CHECK(expired[0].home_address == home_a);
    CHECK_FALSE(f.ha.binding(home_a));
    CHECK(f.ha.binding(home_b));
    CHECK_FALSE(f.ha.poll(f.now + 500s, &expired));
    CHECK(expired.size() == 2);
    CHECK(f.ha.bindings().empty());
}

TEST_CASE("HA NAI: a request with home address 0.0.0.0 is assigned its address (RFC 2794)") {
    Fixture f;
    Req r;
    r.fixed.home_address = {};
    r.ext.nai = "a@example.org";
    r.fixed.identification = f.ts();
    auto out = f.ha.process(build(r), direct(), f.now);
    const auto p = parse_reply(out);
    CHECK(p.fixed.code == 0);
    CHECK(p.fixed.home_address == home_a);
    CHECK(p.ext.nai_present);
    CHECK(std::string(p.ext.nai.begin(), p.ext.nai.end()) == "a@example.org");
    CHECK(f.ha.binding(home_a));
}

// ---------------------------------------------------------------------------------------------
// RFC 5265 §5: internal home agent with trusted networks

TEST_CASE("HA without trusted networks: any source is served and no reply carries TNC") {
    Fixture f;
    Req r;
    r.fixed.identification = f.ts();
    auto out = f.ha.process(build(r), direct(ip("203.0.113.9")), f.now);
    auto p = parse_reply(out);
    CHECK(p.fixed.code == 0);
    CHECK_FALSE(p.ext.trusted_networks);
}

TEST_CASE("HA with trusted networks: untrusted sources are dropped silently, before authentication") {
    Fixture f([](mip::HomeAgent::Config& c) {
        c.trusted_networks = {*core::Ipv4Prefix::parse("192.168.1.0/24"), *core::Ipv4Prefix::parse("172.16.0.0/12")};
    });
    Req r;
    r.fixed.identification = f.ts();
    const auto request = build(r);

    // From outside every prefix: no reply, no binding, no replay state touched.
    for (const char* src : {"192.168.2.1", "203.0.113.9", "172.32.0.1", "10.1.0.50"}) {
        CAPTURE(src);
        auto out = f.ha.process(request, direct(ip(src)), f.now);
        CHECK(out.discard == Discard::UntrustedSource);
        CHECK_FALSE(out.reply);
        CHECK(out.home_address == home_a);  // for the log line
        CHECK(out.change.kind == Change::None);
        CHECK_FALSE(f.ha.binding(home_a));
    }
    // Even garbage and wrong-key requests from an untrusted source get the same silence:
    // an outsider cannot tell a configured home address from an unknown one.
    Req wrong_key = r;
    wrong_key.key = key_b;
    CHECK(f.ha.process(build(wrong_key), direct(ip("203.0.113.9")), f.now).discard == Discard::UntrustedSource);
    const auto junk = "01 02 03"_hex;
    CHECK(f.ha.process(junk, direct(ip("203.0.113.9")), f.now).discard == Discard::UntrustedSource);

    // The same request from a trusted source (NATed sources are judged by the IP source, not
    // the care-of address) is accepted, and the reply carries an authenticated TNC.
    auto out = f.ha.process(request, direct(ip("172.20.1.1")), f.now);
    auto p = parse_reply(out);
    CHECK(p.authentic);
    CHECK(p.fixed.code == 0);
    CHECK(p.ext.trusted_networks_authenticated());
    CHECK(f.ha.binding(home_a));
}

TEST_CASE("HA with trusted networks: every reply to a trusted source carries TNC before the MHAE, denials too") {
    Fixture f([](mip::HomeAgent::Config& c) { c.trusted_networks = {*core::Ipv4Prefix::parse("192.168.1.0/24")}; });
    Req r;
    r.fixed.identification = f.ts();
    r.ext.nai = "a@example.org";
    r.ext.udp_tunnel = mip::UdpTunnelRequest{true, false, 4};
    auto accepted = parse_reply(f.ha.process(build(r), direct(), f.now));
    CHECK(accepted.fixed.code == 0);
    CHECK(accepted.authentic);
    CHECK(accepted.ext.trusted_networks_authenticated());
    CHECK_FALSE(accepted.ext.udp_tunnel_reply.empty());

    // The retransmitted request gets the duplicate answer, with TNC.
    auto dup = parse_reply(f.ha.process(build(r), direct(), f.now));
    CHECK(dup.ext.trusted_networks_authenticated());

    // 131 (authenticated with the MN's key, so the MN can read it), 133, 136: all with TNC.
    Req bad = r;
    bad.key = key_b;
    bad.fixed.identification = f.ts(1s);
    auto denied_auth = parse_reply(f.ha.process(build(bad), direct(), f.now));
    CHECK(denied_auth.fixed.code == mip::reply_code::ha_mn_auth_failed);
    CHECK(denied_auth.ext.trusted_networks_authenticated());

    Req stale = r;
    stale.fixed.identification = f.ts(-1h);
    auto denied_id = parse_reply(f.ha.process(build(stale), direct(), f.now));
    CHECK(denied_id.fixed.code == mip::reply_code::ha_identification_mismatch);
    CHECK(denied_id.ext.trusted_networks_authenticated());

    Req other_ha = r;
    other_ha.fixed.home_agent = ip("10.1.0.2");
    other_ha.fixed.identification = f.ts(2s);
    auto denied_ha = parse_reply(f.ha.process(build(other_ha), direct(), f.now));
    CHECK(denied_ha.fixed.code == mip::reply_code::ha_unknown_home_agent);
    CHECK(denied_ha.ext.trusted_networks_authenticated());
}

TEST_CASE("HA under a flood of forged requests: one 131 per mobile node per interval, the node's own request still accepted") {
    Fixture f;
    Req forged;
    forged.key = key_b;  // home_a's SPI, the wrong key
    forged.fixed.care_of_address = ip("203.0.113.66");
    auto send_forged = [&](std::uint64_t n) {
        forged.fixed.identification = f.ts() + n;
        return f.ha.process(build(forged), direct(ip("203.0.113.66")), f.now);
    };
    auto first = send_forged(0);
    REQUIRE(first.reply);
    CHECK(first.code == mip::reply_code::ha_mn_auth_failed);
    // The rest inside the interval cost one HMAC each and get no reply (no reflection).
    for (std::uint64_t n = 1; n <= 100; ++n) {
        auto out = send_forged(n);
        CHECK_FALSE(out.reply);
        CHECK(out.discard == Discard::AuthFailureUnanswered);
        CHECK(out.change.kind == Change::None);
    }
    // Another node's forgeries are limited separately; the genuine node is served at once.
    Req forged_b = forged;
    forged_b.fixed.home_address = home_b;
    forged_b.spi = 257;
    forged_b.key = key_a;
    forged_b.fixed.identification = f.ts();
    CHECK(f.ha.process(build(forged_b), direct(ip("203.0.113.66")), f.now).code == mip::reply_code::ha_mn_auth_failed);
    Req genuine;
    genuine.fixed.identification = f.ts(1ms);
    CHECK(f.ha.process(build(genuine), direct(), f.now).code == mip::reply_code::accepted);
    CHECK(f.ha.binding(home_a)->care_of_address == coa);
    // After the interval a forged request is answered again.
    f.now += 1s;
    auto later = send_forged(1000);
    REQUIRE(later.reply);
    CHECK(later.code == mip::reply_code::ha_mn_auth_failed);
}

TEST_CASE("HA with denial_reply_interval 0 answers every forged request with 131") {
    Fixture f([](mip::HomeAgent::Config& c) { c.denial_reply_interval = core::Duration::zero(); });
    Req forged;
    forged.key = key_b;
    for (std::uint64_t n = 0; n < 5; ++n) {
        forged.fixed.identification = f.ts() + n;
        CHECK(f.ha.process(build(forged), direct(), f.now).code == mip::reply_code::ha_mn_auth_failed);
    }
}

TEST_CASE("HA under a flood of replays: one 133 per interval, then stale requests are discarded before their HMAC") {
    Fixture f;
    Req r;
    r.fixed.identification = f.ts();
    REQUIRE(f.ha.process(build(r), direct(), f.now).code == mip::reply_code::accepted);
    const auto accepted = r;

    f.now += 100ms;
    Req stale = r;
    stale.fixed.identification = f.ts(-1h);
    auto first = f.ha.process(build(stale), direct(ip("203.0.113.66")), f.now);
    CHECK(first.code == mip::reply_code::ha_identification_mismatch);
    for (int n = 0; n < 50; ++n) {
        stale.fixed.identification = f.ts(-1h) + static_cast<std::uint64_t>(n);
        // The authenticator is not even looked at: a forged stale request meets the same fate.
        stale.key = n % 2 == 0 ? key_a : key_b;
        auto out = f.ha.process(build(stale), direct(ip("203.0.113.66")), f.now);
        CHECK_FALSE(out.reply);
        CHECK(out.discard == Discard::IdentificationUnanswered);
    }
    // The genuine node is unaffected: a retransmission of its accepted request is answered
    // again, and a fresh request is accepted.
    CHECK(f.ha.process(build(accepted), direct(), f.now).code == mip::reply_code::accepted);
    Req renew = r;
    renew.fixed.identification = f.ts();
    CHECK(f.ha.process(build(renew), direct(), f.now).code == mip::reply_code::accepted);
    // After the interval a stale request is answered with 133 again.
    f.now += 1s;
    stale.key = key_a;
    stale.fixed.identification = f.ts(-1h);
    CHECK(f.ha.process(build(stale), direct(ip("203.0.113.66")), f.now).code == mip::reply_code::ha_identification_mismatch);
}
