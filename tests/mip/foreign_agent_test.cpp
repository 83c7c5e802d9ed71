// SPDX-License-Identifier: MIT
// ForeignAgent core and ForeignAgentStage: advertisements, relay checks and codes, reply
// matching, visitor list, pending timeouts, expiry; the stage's data path (reverse tunnel,
// delivery to visitors, RFC 3024 source checks).
#include <doctest/doctest.h>

#include "mip/foreign_agent.hpp"
#include "mip/foreign_agent_stage.hpp"
#include "mip/tunnel_encap.hpp"
#include "tests/mip/mip_test_support.hpp"
#include "tests/mip/mobile_ip_world.hpp"
#include "tests/mip/stage_network.hpp"
#include "tests/support/fake_stage_context.hpp"

using namespace mipsec;
using namespace std::chrono_literals;
using test::ip;
using namespace mipsec::test::literals;

namespace {

const auto key_a = "00112233445566778899aabbccddeeff"_hex;
const auto key_b = "ffeeddccbbaa99887766554433221100"_hex;
const auto home_a = ip("10.1.0.77");
const auto home_b = ip("10.1.0.78");
const auto ha_addr = ip("203.0.113.1");
const auto fa_link = ip("198.51.100.1");
const auto other_coa = ip("192.0.2.9");
constexpr std::uint8_t flag_t = mip::RegistrationRequestView::flag_t;

mip::ForeignAgent::Config fa_config() {
    mip::ForeignAgent::Config c;
    c.link_address = fa_link;
    c.registration_lifetime = 600;
    c.advertisement_interval = 3s;
    c.advertisement_lifetime = 9;
    c.advertisement_jitter = 0;
    c.max_pending = 2;
    c.max_visitors = 2;
    c.pending_timeout = 5s;
    return c;
}

struct Fixture {
    test::SeededRandom random;
    core::TimePoint now = core::TimePoint{} + 1h;
    mip::ForeignAgent fa;
    explicit Fixture(mip::ForeignAgent::Config c = fa_config()) : fa(std::move(c), random) {}
};

test::Bytes request(core::Ipv4Address home, const test::Bytes& key, std::uint8_t flags = flag_t, std::uint16_t lifetime = 300,
                    core::Ipv4Address coa = fa_link, std::uint64_t id = 0x1122334455667788, core::Ipv4Address ha = ha_addr) {
    auto m = mip::build_request({flags, lifetime, home, ha, coa, id}, {}, {256, key});
    REQUIRE(m);
    return {m->bytes().begin(), m->bytes().end()};
}

test::Bytes reply(core::Ipv4Address home, const test::Bytes& key, std::uint8_t code = 0, std::uint16_t lifetime = 300,
                  std::uint64_t id = 0x1122334455667788) {
    auto m = mip::build_reply({code, lifetime, home, ha_addr, id}, {}, {256, key});
    REQUIRE(m);
    return {m->bytes().begin(), m->bytes().end()};
}

mip::ForeignAgent::RequestInfo from_mn(core::Ipv4Address home, std::uint8_t ttl = 255) { return {home, fa_link, ttl, 434}; }

std::uint8_t denial_code(const mip::ForeignAgent::Output& out) {
    REQUIRE(out.datagram);
    CHECK(out.datagram->toward == mip::ForeignAgent::Toward::Link);
    auto v = mip::RegistrationReplyView::check(out.datagram->bytes());
    REQUIRE(v);
    return v->code();
}

}  // namespace

TEST_CASE("FA advertises periodically to 224.0.0.1 and answers solicitations at once") {
    Fixture f;
    auto out = f.fa.poll(f.now);
    REQUIRE(out.advertisement);
    const auto& a = *out.advertisement;
    CHECK(a.destination == mip::all_systems_multicast);
    CHECK(a.source == fa_link);
    CHECK(a.advert.foreign_agent());
    CHECK(a.advert.reverse_tunnel());
    CHECK(a.advert.care_of_count == 1);
    CHECK(a.advert.care_of[0] == fa_link);
    CHECK(a.advert.registration_lifetime == 600);
    CHECK(a.advert.sequence_number == 0);
    // Nothing more until the interval (3 s, at most Lifetime/3) has passed.
    CHECK_FALSE(f.fa.poll(f.now + 2s).advertisement);
    auto next = f.fa.poll(f.now + 3s);
    REQUIRE(next.advertisement);
    CHECK(next.advertisement->advert.sequence_number == 1);
    auto solicited = f.fa.on_solicitation(home_a, f.now + 4s);
    REQUIRE(solicited.advertisement);
    CHECK(solicited.advertisement->destination == home_a);
}

TEST_CASE("FA relays a valid request unchanged from its care-of address and adds the visitor on the HA's accept") {
    Fixture f;
    const auto req = request(home_a, key_a);
    auto out = f.fa.on_request(req, from_mn(home_a), f.now);
    REQUIRE(out.datagram);
    const auto& d = *out.datagram;
    CHECK(d.toward == mip::ForeignAgent::Toward::HomeAgent);
    CHECK(d.source == core::Endpoint{fa_link, 434});
    CHECK(d.destination == core::Endpoint{ha_addr, 434});
    CHECK(test::to_hex(d.bytes()) == test::to_hex(req));  // RFC 5944 §3.7.2.2: MHAE-covered bytes untouched
    CHECK(f.fa.pending_count() == 1);
    CHECK(f.fa.visitor(home_a) == nullptr);  // not before the HA accepts

    auto back = f.fa.on_reply(reply(home_a, key_a), {ha_addr, 434}, f.now + 10ms);
    REQUIRE(back.datagram);
    CHECK(back.datagram->toward == mip::ForeignAgent::Toward::Link);
    CHECK(back.datagram->destination == core::Endpoint{home_a, 434});
    CHECK(back.datagram->source.address == fa_link);
    REQUIRE(back.change);
    CHECK(back.change->added);
    const auto* v = f.fa.visitor(home_a);
    REQUIRE(v);
    CHECK(v->home_agent == ha_addr);
    CHECK(v->care_of_address == fa_link);
    CHECK(v->reverse_tunnel);
    CHECK_FALSE(v->colocated);
    CHECK(f.fa.pending_count() == 0);
    CHECK(f.fa.is_care_of_address(fa_link));
}

TEST_CASE("FA denies what RFC 5944 §3.7.1 and RFC 3024 make it deny, with the right code") {
    struct Row {
        const char* name;
        test::Bytes req;
        std::uint8_t ttl;
        std::uint8_t code;
    };
    const Row rows[] = {
        {"T with TTL 64: mobile node too distant", request(home_a, key_a, flag_t), 64, 76},
        {"lifetime above the advertised maximum", request(home_a, key_a, flag_t, 900), 255, 69},
        {"D clear and a care-of address not ours", request(home_a, key_a, flag_t, 300, other_coa), 255, 77},
        {"home agent 0.0.0.0", request(home_a, key_a, flag_t, 300, fa_link, 1, core::Ipv4Address{0}), 255, 98},
        {"home agent multicast", request(home_a, key_a, flag_t, 300, fa_link, 1, ip("224.0.0.5")), 255, 194},
        {"minimal encapsulation asked", request(home_a, key_a, flag_t | mip::RegistrationRequestView::flag_m), 255, 72},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        Fixture f;
        auto out = f.fa.on_request(row.req, from_mn(home_a, row.ttl), f.now);
        CHECK(denial_code(out) == row.code);
        REQUIRE(out.denied);
        CHECK(*out.denied == row.code);
        CHECK(f.fa.pending_count() == 0);
    }
    Fixture f;
    auto first = f.fa.on_request(request(home_a, key_a), from_mn(home_a, 64), f.now);
    CHECK(denial_code(first) == 76);
    // RFC 3024 §3.3: at most one 76 per second; the rest are discarded.
    auto second = f.fa.on_request(request(home_a, key_a), from_mn(home_a, 64), f.now + 100ms);
    CHECK(second.discard == mip::ForeignAgent::Discard::RateLimited);
    CHECK_FALSE(second.datagram);
    // Garbage is not answered at all.
    const auto junk = "0100"_hex;
    CHECK(f.fa.on_request(junk, from_mn(home_a), f.now).discard == mip::ForeignAgent::Discard::Malformed);
}

TEST_CASE("FA without reverse tunnelling answers T with 74; requiring it answers no-T with 75") {
    auto off = fa_config();
    off.reverse_tunnel = false;
    Fixture f(off);
    CHECK(denial_code(f.fa.on_request(request(home_a, key_a, flag_t), from_mn(home_a), f.now)) == 74);
    auto required = fa_config();
    required.reverse_tunnel_required = true;
    Fixture g(required);
    CHECK(denial_code(g.fa.on_request(request(home_a, key_a, 0), from_mn(home_a, 64), g.now)) == 75);
}

TEST_CASE("FA replies: only from the request's HA, only for a pending request; limits answer 66") {
    Fixture f;
    REQUIRE(f.fa.on_request(request(home_a, key_a), from_mn(home_a), f.now).datagram);
    CHECK(f.fa.on_reply(reply(home_a, key_a), {ip("203.0.113.99"), 434}, f.now).discard ==
          mip::ForeignAgent::Discard::NotFromHomeAgent);
    CHECK(f.fa.on_reply(reply(home_b, key_b), {ha_addr, 434}, f.now).discard == mip::ForeignAgent::Discard::NoPending);
    CHECK(f.fa.on_reply(reply(home_a, key_a, 0, 300, 0x99), {ha_addr, 434}, f.now).discard ==
          mip::ForeignAgent::Discard::NoPending);  // another Identification
    CHECK(f.fa.pending_count() == 1);
    // max_pending 2: a second MN fits, a third gets 66.
    REQUIRE(f.fa.on_request(request(home_b, key_b), from_mn(home_b), f.now).datagram);
    const auto home_c = ip("10.1.0.79");
    CHECK(denial_code(f.fa.on_request(request(home_c, key_a), from_mn(home_c), f.now)) == 66);
    // A denial from the HA is relayed, and adds no visitor.
    auto denied = f.fa.on_reply(reply(home_b, key_b, 131), {ha_addr, 434}, f.now);
    REQUIRE(denied.datagram);
    CHECK_FALSE(denied.change);
    CHECK(f.fa.visitor(home_b) == nullptr);
}

TEST_CASE("FA answers 78 when the HA never replies, and forgets the request") {
    Fixture f;
    REQUIRE(f.fa.on_request(request(home_a, key_a), from_mn(home_a), f.now).datagram);
    std::optional<mip::ForeignAgent::Output> timeout;
    for (auto t = f.now; t <= f.now + 6s && !timeout; t += 500ms) {
        auto out = f.fa.poll(t);
        if (out.denied) timeout = out;
    }
    REQUIRE(timeout);
    CHECK(*timeout->denied == 78);
    CHECK(denial_code(*timeout) == 78);
    CHECK(f.fa.pending_count() == 0);
}

TEST_CASE("FA visitors leave on deregistration and on expiry; others stay") {
    Fixture f;
    for (const auto& [home, key] : {std::pair{home_a, key_a}, std::pair{home_b, key_b}}) {
        REQUIRE(f.fa.on_request(request(home, key, flag_t, 30), from_mn(home), f.now).datagram);
        REQUIRE(f.fa.on_reply(reply(home, key, 0, 30), {ha_addr, 434}, f.now).change);
    }
    CHECK(f.fa.visitor_count() == 2);
    // home_a deregisters (lifetime 0).
    REQUIRE(f.fa.on_request(request(home_a, key_a, flag_t, 0, fa_link, 0x2000), from_mn(home_a), f.now + 1s).datagram);
    auto gone = f.fa.on_reply(reply(home_a, key_a, 0, 0, 0x2000), {ha_addr, 434}, f.now + 1s);
    REQUIRE(gone.change);
    CHECK_FALSE(gone.change->added);
    CHECK(f.fa.visitor(home_a) == nullptr);
    REQUIRE(f.fa.visitor(home_b) != nullptr);
    // home_b's 30 s run out.
    bool expired = false;
    for (auto t = f.now + 2s; t <= f.now + 40s && !expired; t += 1s) {
        auto out = f.fa.poll(t);
        expired = out.change && !out.change->added && out.change->visitor.home_address == home_b;
    }
    CHECK(expired);
    CHECK(f.fa.visitor_count() == 0);
}

namespace {

// The stage between a visitor link (inner side) and the network (outer side).
struct StageFixture {
    core::BufferPool pool{64, 2048};
    test::SeededRandom random;
    test::FakeStageContext ctx{pool};
    mip::ForeignAgentStage stage;
    StageFixture() : stage({fa_config(), 0, 64, false, 100}, random) {}

    core::PacketBuf udp(core::Endpoint src, core::Endpoint dst, const test::Bytes& payload, std::uint8_t ttl = 255) {
        auto buf = pool.acquire(128);
        REQUIRE(mip::emit_udp_packet(buf, src, dst, ttl, payload));
        return buf;
    }
    void register_visitor(core::Ipv4Address home, const test::Bytes& key) {
        auto req = udp({home, 434}, {fa_link, 434}, request(home, key));
        REQUIRE(stage.encapsulate(req, ctx).action == core::Action::Consumed);
        auto rep = udp({ha_addr, 434}, {fa_link, 434}, reply(home, key));
        REQUIRE(stage.decapsulate(rep, ctx).action == core::Action::Consumed);
    }
};

}  // namespace

TEST_CASE("FA stage: relays over the network, delivers replies on the link, raises the visitor") {
    StageFixture s;
    s.register_visitor(home_a, key_a);
    REQUIRE(s.ctx.sent.size() == 1);  // the relayed request
    auto relayed = core::Ipv4View::check(s.ctx.sent[0].bytes());
    REQUIRE(relayed);
    CHECK(relayed->source() == fa_link);
    CHECK(relayed->destination() == ha_addr);
    REQUIRE(s.ctx.delivered.size() == 1);  // the relayed reply, onto the visitor link
    auto delivered = core::Ipv4View::check(s.ctx.delivered[0].bytes());
    REQUIRE(delivered);
    CHECK(delivered->destination() == home_a);
    REQUIRE(s.ctx.events.size() == 1);
    const auto* change = std::get_if<core::RegistrationChanged>(&s.ctx.events[0]);
    REQUIRE(change);
    CHECK(change->registered);
    CHECK(change->home_address == home_a);
    CHECK(s.stage.counters().requests_relayed == 1);
    CHECK(s.stage.counters().replies_relayed == 1);
}

TEST_CASE("FA stage: reverse tunnel for visitors, delivery of the HA's tunnel, RFC 3024 source checks") {
    StageFixture s;
    s.register_visitor(home_a, key_a);
    const auto cn = ip("10.1.0.10");

    // A visitor's packet on the link goes to its HA inside IP-in-IP from the care-of address.
    auto out = test::load(s.pool, test::echo_packet(home_a, cn, 1, 16, 64));
    REQUIRE(s.stage.encapsulate(out, s.ctx).passed());
    auto outer = core::Ipv4View::check(out.bytes());
    REQUIRE(outer);
    CHECK(outer->protocol() == core::ip_protocol::ipip);
    CHECK(outer->source() == fa_link);
    CHECK(outer->destination() == ha_addr);
    auto inner = core::Ipv4View::check(outer->payload());
    REQUIRE(inner);
    CHECK(inner->ttl() == 63);  // forwarded by the FA (RFC 2003 §3.1)
    CHECK(s.stage.counters().reverse_tunnelled == 1);

    // The HA's tunnel to the care-of address is unwrapped for the visitor.
    auto in = test::load(s.pool, test::echo_packet(cn, home_a, 2, 16, 64));
    REQUIRE(mip::push_ip_in_ip(in, {ha_addr, fa_link}).passed());
    REQUIRE(s.stage.decapsulate(in, s.ctx).passed());
    auto plain = core::Ipv4View::check(in.bytes());
    REQUIRE(plain);
    CHECK(plain->destination() == home_a);
    CHECK(plain->ttl() == 63);
    CHECK(s.stage.counters().delivered_to_visitors == 1);

    // From another tunnel source: not the visitor's HA.
    auto spoofed = test::load(s.pool, test::echo_packet(cn, home_a));
    REQUIRE(mip::push_ip_in_ip(spoofed, {ip("203.0.113.66"), fa_link}).passed());
    CHECK(s.stage.decapsulate(spoofed, s.ctx).reason == core::DropReason::BindingMismatch);
    // For someone who is not visiting.
    auto stranger = test::load(s.pool, test::echo_packet(cn, home_b));
    REQUIRE(mip::push_ip_in_ip(stranger, {ha_addr, fa_link}).passed());
    CHECK(s.stage.decapsulate(stranger, s.ctx).reason == core::DropReason::NoBinding);
    // A non-visitor's packet on the link is the kernel's business: unchanged.
    const auto other = test::echo_packet(home_b, cn);
    auto passing = test::load(s.pool, other);
    REQUIRE(s.stage.encapsulate(passing, s.ctx).action == core::Action::NotMine);
    CHECK(test::to_hex(passing.bytes()) == test::to_hex(other));
    // The visitor list is untouched by all of that.
    CHECK(s.stage.agent().visitor(home_a) != nullptr);
}

TEST_CASE("FA stage: a request with a bad UDP checksum is dropped, the visitor list unchanged") {
    StageFixture s;
    auto req = s.udp({home_a, 434}, {fa_link, 434}, request(home_a, key_a));
    req.bytes()[27] ^= 0x01;  // UDP checksum
    CHECK(s.stage.encapsulate(req, s.ctx).reason == core::DropReason::Malformed);
    CHECK(s.ctx.sent.empty());
    CHECK(s.stage.agent().pending_count() == 0);
}

TEST_CASE("FA under a solicitation flood: at most one advertisement per interval, never amplified, and a visitor "
          "soliciting in the middle still hears one within the interval") {
    Fixture f;
    (void)f.fa.poll(f.now);  // the first periodic advertisement
    const auto interval = f.fa.config().solicited_min_interval;
    std::size_t direct = 0, multicast = 0, held_back = 0;
    std::optional<core::TimePoint> visitor_heard;
    const core::TimePoint visitor_at = f.now + 1s + 37ms;
    const core::Ipv4Address visitor = ip("198.51.100.77");
    // 2 s of solicitations, one every millisecond, each from another (spoofed) source, with
    // the FA polled whenever its deadline has come, as the shell does.
    for (int ms = 1; ms <= 2000; ++ms) {
        const auto t = f.now + std::chrono::milliseconds(ms);
        while (auto d = f.fa.next_deadline()) {
            if (*d > t) break;
            auto out = f.fa.poll(*d);
            if (!out.advertisement) break;
            CHECK(out.advertisement->destination == mip::all_systems_multicast);
            ++multicast;
            if (!visitor_heard && *d >= visitor_at) visitor_heard = *d;
        }
        const bool is_visitor = t == visitor_at;
        auto out = f.fa.on_solicitation(is_visitor ? visitor : core::Ipv4Address{0x0A000000u + static_cast<std::uint32_t>(ms)}, t);
        if (out.discard == mip::ForeignAgent::Discard::RateLimited) {
            ++held_back;
            CHECK_FALSE(out.advertisement);
        } else {
            REQUIRE(out.advertisement);
            ++direct;
            if (is_visitor) visitor_heard = t;
        }
    }
    // Every solicitation answered at once or held back; at most one advertisement per
    // 100 ms interval (plus the periodic ones every 3 s) however many solicitations came.
    CHECK(direct + held_back == 2000);
    const auto intervals = static_cast<std::size_t>(2s / interval);
    CHECK(direct + multicast <= intervals + 2);
    CHECK(direct + multicast >= intervals - 1);
    CHECK(held_back >= 2000 - intervals - 2);
    REQUIRE(visitor_heard);
    CHECK(*visitor_heard - visitor_at <= interval);
}

TEST_CASE("FA stage under a solicitation flood: every solicitation counted, at most one advertisement per 100 ms on the link") {
    StageFixture s;
    (void)s.stage.poll(s.ctx);  // the first periodic advertisement
    const auto adverts_before = s.stage.counters().advertisements_sent;
    // 1 s of solicitations, one per millisecond, from spoofed on-link sources (ICMP 10, TTL 1).
    for (int ms = 1; ms <= 1000; ++ms) {
        s.ctx.advance(1ms);
        if (auto d = s.stage.poll(s.ctx); d && *d <= s.ctx.now()) (void)s.stage.poll(s.ctx);
        auto buf = s.pool.acquire(128);
        const std::size_t len = core::Ipv4Header::len + mip::AgentSolicitationView::len;
        REQUIRE(buf.put(len));
        core::Ipv4Header h;
        h.total_length = static_cast<std::uint16_t>(len);
        h.ttl = 1;
        h.protocol = core::ip_protocol::icmp;
        h.source = core::Ipv4Address{ip("198.51.100.0").value + static_cast<std::uint32_t>(2 + ms % 250)};
        h.destination = mip::all_mobility_agents;
        h.emit(buf.bytes());
        auto icmp = buf.bytes().subspan(core::Ipv4Header::len);
        icmp[0] = mip::AgentSolicitationView::icmp_type;
        core::IcmpMutView::check(icmp)->update_checksum();
        CHECK(s.stage.encapsulate(buf, s.ctx).action == core::Action::Consumed);
    }
    const auto& c = s.stage.counters();
    CHECK(c.solicitations == 1000);
    const auto sent = c.advertisements_sent - adverts_before;
    CHECK(sent >= 9);
    CHECK(sent <= 11);
    // Only the first was answered at once; every later one fell inside an interval.
    CHECK(c.solicitations_held_back == 999);
    CHECK(c.messages_discarded == 0);  // held back is not discarded: it is answered later
}

// ---------------------------------------------------------------------------------------------
// RFC 3519 between the FA and the home agent (an FA behind a NAT, coexistence alternatives 2g/2h)

namespace {

using UdpMode = mip::ForeignAgent::UdpTunnelling;

mip::ForeignAgent::Config fa_udp_config(UdpMode mode) {
    auto c = fa_config();
    c.home_agent_udp_tunnelling = mode;
    c.keepalive_default = 30s;
    return c;
}

/// The UDP Tunnel Request the FA appended after the MHAE of a relayed request, if any.
std::optional<mip::UdpTunnelRequest> appended_tunnel_request(const mip::ForeignAgent::Output& out, std::size_t original_len) {
    REQUIRE(out.datagram);
    const auto bytes = out.datagram->bytes();
    if (bytes.size() == original_len) return std::nullopt;
    REQUIRE(bytes.size() == original_len + mip::UdpTunnelRequest::len);
    auto v = mip::UdpTunnelRequestView::check(bytes.subspan(original_len));
    REQUIRE(v);
    CHECK(v->reserved3_valid());
    return mip::UdpTunnelRequest::parse(*v);
}

/// An accepting reply with `tunnel` before the MHAE (as our home agent builds it) or after it.
test::Bytes udp_reply(core::Ipv4Address home, const test::Bytes& key, std::optional<mip::UdpTunnelReply> tunnel,
                      bool after_mhae = false, std::uint64_t id = 0x1122334455667788) {
    mip::ReplyExtensions ext;
    if (!after_mhae) ext.udp_tunnel = tunnel;
    auto m = mip::build_reply({0, 300, home, ha_addr, id}, ext, {256, key});
    REQUIRE(m);
    test::Bytes out(m->bytes().begin(), m->bytes().end());
    if (after_mhae && tunnel) {
        out.resize(out.size() + mip::UdpTunnelReply::len);
        tunnel->emit(std::span(out).last(mip::UdpTunnelReply::len));
    }
    return out;
}

const mip::UdpTunnelReply assent20{mip::UdpTunnelReply::code_assent, false, 20};

}  // namespace

TEST_CASE("FA relays with a UDP Tunnel Request after the MHAE when configured, never for co-located MNs or deregistrations") {
    const auto req = request(home_a, key_a);
    SUBCASE("off: relayed exactly through the MHAE, as before") {
        Fixture f(fa_udp_config(UdpMode::Off));
        CHECK_FALSE(appended_tunnel_request(f.fa.on_request(req, from_mn(home_a), f.now), req.size()));
    }
    SUBCASE("wanted: F clear, IP-in-UDP") {
        Fixture f(fa_udp_config(UdpMode::Wanted));
        auto out = f.fa.on_request(req, from_mn(home_a), f.now);
        CHECK(test::to_hex(out.datagram->bytes().first(req.size())) == test::to_hex(req));  // MHAE part unchanged
        auto tr = appended_tunnel_request(out, req.size());
        REQUIRE(tr);
        CHECK_FALSE(tr->force);
        CHECK_FALSE(tr->registered_via_fa);
        CHECK(tr->encapsulation == core::ip_protocol::ipip);
        // Our home agent's scanner sees it after the MHAE, i.e. added by an FA (D must be clear).
        mip::ScannedExtensions scanned;
        REQUIRE_FALSE(mip::scan_extensions(out.datagram->bytes(), mip::RegistrationRequestView::header_len,
                                           mip::MessageKind::Request, scanned));
        CHECK_FALSE(scanned.udp_tunnel_request.empty());
        CHECK_FALSE(scanned.udp_tunnel_request_before_mhae);
    }
    SUBCASE("forced: F set") {
        Fixture f(fa_udp_config(UdpMode::Forced));
        auto tr = appended_tunnel_request(f.fa.on_request(req, from_mn(home_a), f.now), req.size());
        REQUIRE(tr);
        CHECK(tr->force);
    }
    SUBCASE("a co-located MN (D) tunnels itself; a deregistration needs no tunnel") {
        Fixture f(fa_udp_config(UdpMode::Forced));
        const auto colocated = request(home_a, key_a, flag_t | mip::RegistrationRequestView::flag_d, 300, other_coa);
        CHECK_FALSE(appended_tunnel_request(f.fa.on_request(colocated, from_mn(home_a), f.now), colocated.size()));
        const auto dereg = request(home_b, key_b, flag_t, 0, fa_link, 0x99);
        CHECK_FALSE(appended_tunnel_request(f.fa.on_request(dereg, from_mn(home_b), f.now), dereg.size()));
    }
}

TEST_CASE("FA: the HA's UDP Tunnel Reply decides the visitor's tunnel") {
    auto registered = [](UdpMode mode, const test::Bytes& reply_bytes) {
        Fixture f(fa_udp_config(mode));
        REQUIRE(f.fa.on_request(request(home_a, key_a), from_mn(home_a), f.now).datagram);
        auto out = f.fa.on_reply(reply_bytes, {ha_addr, 434}, f.now + 1s);
        REQUIRE(out.change);
        REQUIRE(out.change->added);
        const auto* v = f.fa.visitor(home_a);
        REQUIRE(v);
        return *v;
    };
    SUBCASE("assent before the MHAE: IP-in-UDP with the HA's keepalive interval") {
        auto v = registered(UdpMode::Wanted, udp_reply(home_a, key_a, assent20));
        CHECK(v.mode == mip::TunnelMode::Udp);
        CHECK(v.keepalive_interval == 20s);
    }
    SUBCASE("assent after the MHAE is read too, and stripped before the MN sees it") {
        Fixture f(fa_udp_config(UdpMode::Wanted));
        REQUIRE(f.fa.on_request(request(home_a, key_a), from_mn(home_a), f.now).datagram);
        const auto bytes = udp_reply(home_a, key_a, assent20, true);
        auto out = f.fa.on_reply(bytes, {ha_addr, 434}, f.now + 1s);
        REQUIRE(out.datagram);
        CHECK(out.datagram->len == bytes.size() - mip::UdpTunnelReply::len);
        CHECK(f.fa.visitor(home_a)->mode == mip::TunnelMode::Udp);
    }
    SUBCASE("interval 0 means our default; below 10 s is raised to 10 s") {
        CHECK(registered(UdpMode::Wanted, udp_reply(home_a, key_a, mip::UdpTunnelReply{0, false, 0})).keepalive_interval == 30s);
        CHECK(registered(UdpMode::Wanted, udp_reply(home_a, key_a, mip::UdpTunnelReply{0, false, 3})).keepalive_interval == 10s);
    }
    SUBCASE("declined, or no Tunnel Reply at all (an HA without RFC 3519): IP-in-IP") {
        const mip::UdpTunnelReply declined{mip::UdpTunnelReply::code_declined, false, 0};
        CHECK(registered(UdpMode::Wanted, udp_reply(home_a, key_a, declined)).mode == mip::TunnelMode::IpInIp);
        CHECK(registered(UdpMode::Forced, udp_reply(home_a, key_a, std::nullopt)).mode == mip::TunnelMode::IpInIp);
    }
    SUBCASE("an assent we never asked for is not followed") {
        CHECK(registered(UdpMode::Off, udp_reply(home_a, key_a, assent20)).mode == mip::TunnelMode::IpInIp);
    }
}

TEST_CASE("FA keepalives: due after K idle seconds from the request, deferred by data, answered by sequence") {
    Fixture f(fa_udp_config(UdpMode::Wanted));
    (void)f.fa.poll(f.now);  // the first advertisement; the next is 3 s later
    REQUIRE(f.fa.on_request(request(home_a, key_a), from_mn(home_a), f.now).datagram);
    REQUIRE(f.fa.on_reply(udp_reply(home_a, key_a, assent20), {ha_addr, 434}, f.now + 1s).change);
    auto keepalive_at = [&](core::TimePoint t) -> std::optional<mip::ForeignAgent::Keepalive> {
        for (int i = 0; i < 8; ++i) {  // advertisements may come first: one thing per poll
            auto out = f.fa.poll(t);
            if (out.keepalive) return out.keepalive;
            if (!out.advertisement) break;
        }
        return std::nullopt;
    };
    // K = 20 s counted from the relayed request, not from the reply.
    CHECK_FALSE(keepalive_at(f.now + 19s));
    auto first = keepalive_at(f.now + 20s);
    REQUIRE(first);
    CHECK(first->home_address == home_a);
    CHECK(first->home_agent == ha_addr);
    CHECK(first->care_of_address == fa_link);
    CHECK(f.fa.visitor(home_a)->keepalives_unanswered == 1);
    // A reply to something else is not ours; the right sequence is.
    CHECK_FALSE(f.fa.on_keepalive_reply(home_a, static_cast<std::uint16_t>(first->sequence + 1)));
    CHECK_FALSE(f.fa.on_keepalive_reply(home_b, first->sequence));
    CHECK(f.fa.on_keepalive_reply(home_a, first->sequence));
    CHECK(f.fa.visitor(home_a)->keepalives_unanswered == 0);
    // Data toward the HA at +30 s pushes the next one from +40 s to +50 s.
    f.fa.note_sent_to_home_agent(home_a, f.now + 30s);
    CHECK_FALSE(keepalive_at(f.now + 40s));
    CHECK(f.fa.next_deadline() <= f.now + 50s);
    auto second = keepalive_at(f.now + 50s);
    REQUIRE(second);
    CHECK(second->sequence == first->sequence + 1);
    // Unanswered ones are counted until the next reply.
    REQUIRE(keepalive_at(f.now + 70s));
    CHECK(f.fa.visitor(home_a)->keepalives_unanswered == 2);
}

TEST_CASE("FA keepalives: none for IP-in-IP visitors") {
    Fixture f(fa_udp_config(UdpMode::Wanted));
    REQUIRE(f.fa.on_request(request(home_a, key_a), from_mn(home_a), f.now).datagram);
    REQUIRE(f.fa.on_reply(reply(home_a, key_a), {ha_addr, 434}, f.now).change);
    for (auto t = f.now; t <= f.now + 200s; t += 1s) CHECK_FALSE(f.fa.poll(t).keepalive);
}

namespace {

struct UdpStageFixture {
    core::BufferPool pool{64, 2048};
    test::SeededRandom random;
    test::FakeStageContext ctx{pool};
    mip::ForeignAgentStage stage;
    UdpStageFixture() : stage({fa_udp_config(UdpMode::Wanted), 0, 64, false, 100}, random) {}

    core::PacketBuf udp(core::Endpoint src, core::Endpoint dst, const test::Bytes& payload, std::uint8_t ttl = 255) {
        auto buf = pool.acquire(128);
        REQUIRE(mip::emit_udp_packet(buf, src, dst, ttl, payload));
        return buf;
    }
    void register_visitor(core::Ipv4Address home, const test::Bytes& key, std::optional<mip::UdpTunnelReply> tunnel) {
        auto req = udp({home, 434}, {fa_link, 434}, request(home, key));
        REQUIRE(stage.encapsulate(req, ctx).action == core::Action::Consumed);
        auto rep = udp({ha_addr, 434}, {fa_link, 434}, udp_reply(home, key, tunnel));
        REQUIRE(stage.decapsulate(rep, ctx).action == core::Action::Consumed);
    }
    /// `inner` as the HA sends it to us: IP-in-UDP HA:434 -> care-of:434.
    core::PacketBuf from_ha(const test::Bytes& inner, std::uint16_t source_port = 434) {
        auto buf = test::load(pool, inner);
        REQUIRE(mip::push_ip_in_udp(buf, {ha_addr, fa_link}, source_port, 434).passed());
        return buf;
    }
};

}  // namespace

TEST_CASE("FA stage: RFC 3519 IP-in-UDP both ways for a visitor whose HA assented") {
    UdpStageFixture s;
    CHECK(s.stage.headroom() == mip::ip_in_udp_overhead);
    s.register_visitor(home_a, key_a, assent20);
    const auto cn = ip("10.1.0.10");

    // Outward: care-of:434 -> HA:434, Tunnel Data header with Next Header 4, then the inner packet.
    auto out = test::load(s.pool, test::echo_packet(home_a, cn, 1, 16, 64));
    REQUIRE(s.stage.encapsulate(out, s.ctx).passed());
    auto outer = core::Ipv4View::check(out.bytes());
    REQUIRE(outer);
    auto udp = mip::udp_of(*outer);
    REQUIRE(udp);
    CHECK(outer->source() == fa_link);
    CHECK(outer->destination() == ha_addr);
    CHECK(udp->source_port() == 434);
    CHECK(udp->destination_port() == 434);
    CHECK(udp->checksum_valid(outer->source(), outer->destination()));
    auto data = mip::TunnelDataView::check(udp->payload());
    REQUIRE(data);
    CHECK(data->next_header() == core::ip_protocol::ipip);
    auto inner = core::Ipv4View::check(data->payload());
    REQUIRE(inner);
    CHECK(inner->source() == home_a);
    CHECK(inner->ttl() == 63);
    CHECK(s.stage.counters().reverse_tunnelled_udp == 1);

    // Inward: unwrapped and delivered to the visitor.
    auto in = s.from_ha(test::echo_packet(cn, home_a, 2, 16, 64));
    REQUIRE(s.stage.decapsulate(in, s.ctx).passed());
    auto plain = core::Ipv4View::check(in.bytes());
    REQUIRE(plain);
    CHECK(plain->destination() == home_a);
    CHECK(plain->ttl() == 63);
    CHECK(s.stage.counters().delivered_from_udp == 1);

    // Once in UDP, IP-in-IP for it is not accepted (RFC 3519 §3.3: all data uses the tunnel).
    auto ipip = test::load(s.pool, test::echo_packet(cn, home_a));
    REQUIRE(mip::push_ip_in_ip(ipip, {ha_addr, fa_link}).passed());
    CHECK(s.stage.decapsulate(ipip, s.ctx).reason == core::DropReason::BindingMismatch);
    CHECK(s.stage.counters().dropped_binding_mismatch == 1);
}

TEST_CASE("FA stage: bad RFC 3519 tunnel input is dropped with its reason and counted") {
    UdpStageFixture s;
    s.register_visitor(home_a, key_a, assent20);
    s.register_visitor(home_b, key_b, std::nullopt);  // IP-in-IP (the HA sent no Tunnel Reply)
    REQUIRE(s.stage.agent().visitor(home_b)->mode == mip::TunnelMode::IpInIp);
    const auto cn = ip("10.1.0.10");
    const auto before = s.stage.counters();

    SUBCASE("another Next Header than IP-in-IP") {
        auto p = s.from_ha(test::echo_packet(cn, home_a));
        core::Ipv4View v = *core::Ipv4View::check(p.bytes());
        p.bytes()[v.header_len() + core::UdpHeader::len + 1] = 47;  // GRE
        auto u = core::UdpMutView::check(p.bytes().subspan(v.header_len()));
        u->update_checksum(ha_addr, fa_link);
        CHECK(s.stage.decapsulate(p, s.ctx).reason == core::DropReason::BadNextHeader);
    }
    SUBCASE("a UDP checksum that does not verify") {
        auto p = s.from_ha(test::echo_packet(cn, home_a));
        p.bytes()[p.size() - 1] ^= 0x01;
        CHECK(s.stage.decapsulate(p, s.ctx).reason == core::DropReason::Malformed);
    }
    SUBCASE("not from the HA's port 434") {
        auto p = s.from_ha(test::echo_packet(cn, home_a), 5555);
        CHECK(s.stage.decapsulate(p, s.ctx).reason == core::DropReason::UnexpectedProtocol);
    }
    SUBCASE("IP-in-UDP for an IP-in-IP visitor") {
        auto p = s.from_ha(test::echo_packet(cn, home_b));
        CHECK(s.stage.decapsulate(p, s.ctx).reason == core::DropReason::BindingMismatch);
        CHECK(s.stage.counters().dropped_binding_mismatch == before.dropped_binding_mismatch + 1);
    }
    SUBCASE("for nobody visiting") {
        auto p = s.from_ha(test::echo_packet(cn, ip("10.1.0.99")));
        CHECK(s.stage.decapsulate(p, s.ctx).reason == core::DropReason::NoBinding);
        CHECK(s.stage.counters().dropped_no_visitor == before.dropped_no_visitor + 1);
    }
    SUBCASE("truncated Tunnel Data header: not a tunnel, not ours") {
        auto buf = s.udp({ha_addr, 434}, {fa_link, 434}, test::Bytes{4, 4});
        CHECK(s.stage.decapsulate(buf, s.ctx).action == core::Action::NotMine);
        CHECK(s.stage.counters().passed_other == before.passed_other + 1);
    }
    CHECK(s.stage.counters().delivered_to_visitors == before.delivered_to_visitors);
}

TEST_CASE("FA stage: keepalives go out inside the UDP tunnel; the HA's echo reply is consumed, others delivered") {
    UdpStageFixture s;
    s.register_visitor(home_a, key_a, assent20);
    s.ctx.sent.clear();
    s.ctx.advance(20s);
    (void)s.stage.poll(s.ctx);
    std::optional<core::PacketBuf> keepalive;
    for (auto& p : s.ctx.sent) {
        auto v = core::Ipv4View::check(p.bytes());
        if (v && v->protocol() == core::ip_protocol::udp) keepalive = std::move(p);
    }
    REQUIRE(keepalive);
    CHECK(s.stage.counters().keepalives_sent == 1);
    auto outer = core::Ipv4View::check(keepalive->bytes());
    auto tunnel = mip::peek_tunnel(*outer);
    REQUIRE(tunnel);
    CHECK(tunnel->kind == mip::TunnelKind::Udp);
    CHECK(tunnel->source == fa_link);
    CHECK(tunnel->destination == ha_addr);
    CHECK(tunnel->source_port == 434);
    CHECK(tunnel->destination_port == 434);
    REQUIRE(mip::strip_tunnel(*keepalive, *tunnel).passed());
    auto inner = core::Ipv4View::check(keepalive->bytes());
    CHECK(inner->source() == home_a);
    CHECK(inner->destination() == ha_addr);
    auto icmp = core::IcmpView::check(inner->payload());
    REQUIRE(icmp);
    CHECK(icmp->type() == core::icmp_type::echo_request);
    CHECK(icmp->echo_identifier() == 434);

    auto echo_reply = [&](std::uint16_t identifier, std::uint16_t sequence) {
        auto buf = s.pool.acquire(128);
        REQUIRE(mip::emit_echo_packet(buf, ha_addr, home_a, core::icmp_type::echo_reply, identifier, sequence));
        REQUIRE(mip::push_ip_in_udp(buf, {ha_addr, fa_link}, 434, 434).passed());
        return buf;
    };
    // The MN's own ping of its HA (another identifier or sequence) is the MN's.
    auto mine_not = echo_reply(0x1234, icmp->echo_sequence());
    CHECK(s.stage.decapsulate(mine_not, s.ctx).passed());
    auto late = echo_reply(434, static_cast<std::uint16_t>(icmp->echo_sequence() + 7));
    CHECK(s.stage.decapsulate(late, s.ctx).passed());
    CHECK(s.stage.agent().visitor(home_a)->keepalives_unanswered == 1);
    auto answer = echo_reply(434, icmp->echo_sequence());
    CHECK(s.stage.decapsulate(answer, s.ctx).action == core::Action::Consumed);
    CHECK(s.stage.counters().keepalive_replies == 1);
    CHECK(s.stage.agent().visitor(home_a)->keepalives_unanswered == 0);

    // Reported per visitor.
    test::FlatStatus st;
    s.stage.report(st);
    CHECK(st.values["visitors[0].mode"] == "ip_in_udp");
    CHECK(st.values["visitors[0].keepalive_interval_s"] == "20");
    CHECK(st.values["counters.keepalives_sent"] == "1");
}

TEST_CASE("FA behind a NAT and our HA stage: registration relayed with the Tunnel Request, IP-in-UDP both ways, keepalives answered") {
    // Coexistence alternative 2g in one process: mn == fa ## nat ## ha.
    test::World w;
    const auto nat_public = ip("198.18.9.1");
    auto& ha = w.add_ha(test::ha_stage_config(ha_addr, *core::Ipv4Prefix::parse("10.1.0.0/24"), {{home_a, &key_a}}), {ha_addr});
    auto fa_cfg = fa_udp_config(UdpMode::Wanted);
    test::FaStation fa(w.pool, {fa_cfg, 0, 64, false, 100}, w.random, "fa", {fa_link});
    w.net.nodes.push_back(&fa.node);
    w.net.set_now(w.now);
    w.add_nat(fa_link, nat_public, 30434);

    // The visitor's request on the link (its care-of address is the FA's).
    mip::RegistrationRequest r;
    r.flags = flag_t;
    r.lifetime = 300;
    r.home_address = home_a;
    r.home_agent = ha_addr;
    r.care_of_address = fa_link;
    r.identification = mip::ntp_time(w.now, test::world_ntp_offset);
    auto msg = mip::build_request(r, {}, test::make_sa(256, key_a).auth_key());
    REQUIRE(msg);
    auto req = test::load(w.pool, test::udp_packet({home_a, 434}, {fa_link, 434}, msg->bytes(), 255));
    REQUIRE(fa.stage.encapsulate(req, fa.ctx).action == core::Action::Consumed);
    w.net.pump();

    // The HA saw the NAT (source != care-of address) and bound the NAT's mapping.
    auto b = ha.stage.agent().binding(home_a);
    REQUIRE(b);
    CHECK(b->mode == mip::TunnelMode::Udp);
    CHECK(b->udp_endpoint == core::Endpoint{nat_public, 30434});
    CHECK_FALSE(b->half_bound);
    const auto* v = fa.stage.agent().visitor(home_a);
    REQUIRE(v);
    CHECK(v->mode == mip::TunnelMode::Udp);
    CHECK(v->keepalive_interval == 20s);  // ha_stage_config's
    REQUIRE(fa.ctx.delivered.size() == 1);  // the accepting reply, onto the link
    auto delivered = core::Ipv4View::check(fa.ctx.delivered[0].bytes());
    CHECK(mip::RegistrationReplyView::check(mip::udp_of(*delivered)->payload())->code() == 0);

    // Correspondent -> home address: the HA tunnels in UDP to the NAT, the FA delivers it.
    const auto cn = ip("10.1.0.10");
    REQUIRE(w.send(ha, test::echo_packet(cn, home_a, 1, 16, 64)).passed());
    REQUIRE(fa.node.inward.size() == 1);
    CHECK(core::Ipv4View::check(fa.node.inward[0])->destination() == home_a);
    // Visitor -> correspondent: reverse-tunnelled in UDP through the NAT, accepted by the HA.
    REQUIRE(w.send(fa, test::echo_packet(home_a, cn, 2, 16, 64)).passed());
    REQUIRE(ha.node.inward.size() == 1);
    CHECK(core::Ipv4View::check(ha.node.inward[0])->source() == home_a);
    CHECK(ha.node.drops.empty());

    // Idle for K: the FA's keepalive keeps the mapping; the HA answers it; nothing reaches the visitor.
    w.advance(21s);
    w.poll();
    CHECK(fa.stage.counters().keepalives_sent == 1);
    CHECK(ha.stage.counters().keepalives_answered == 1);
    CHECK(fa.stage.counters().keepalive_replies == 1);
    CHECK(fa.node.inward.size() == 1);
    CHECK(fa.stage.agent().visitor(home_a)->keepalives_unanswered == 0);
}

TEST_CASE("FA stage: a visitor's DF packet too big for its tunnel is answered with fragmentation needed (RFC 2003 §5.1)") {
    UdpStageFixture s;
    s.register_visitor(home_a, key_a, assent20);
    s.register_visitor(home_b, key_b, std::nullopt);  // IP-in-IP
    const auto cn = ip("10.1.0.10");
    s.ctx.delivered.clear();
    auto frag_needed_mtu = [&]() -> std::optional<std::uint16_t> {
        if (s.ctx.delivered.empty()) return std::nullopt;
        auto v = core::Ipv4View::check(s.ctx.delivered.back().bytes());
        REQUIRE(v);
        auto icmp = core::IcmpView::check(v->payload());
        REQUIRE(icmp);
        CHECK(icmp->type() == core::icmp_type::destination_unreachable);
        CHECK(v->destination() == home_a);
        return icmp->next_hop_mtu();
    };
    // 1480 bytes (what a mobile node sends when it counts the agent's 20-byte IP-in-IP): fits
    // IP-in-IP under 1500, not IP-in-UDP.
    auto fits = test::load(s.pool, test::echo_packet(home_b, cn, 1, 1480 - 28));
    CHECK(s.stage.encapsulate(fits, s.ctx).passed());
    auto big = test::load(s.pool, test::echo_packet(home_a, cn, 1, 1480 - 28));
    CHECK(s.stage.encapsulate(big, s.ctx).reason == core::DropReason::TooBig);
    CHECK(frag_needed_mtu() == 1500 - mip::ip_in_udp_overhead);
    CHECK(s.stage.counters().too_big_answered == 1);
    auto ok = test::load(s.pool, test::echo_packet(home_a, cn, 2, 1468 - 28));
    CHECK(s.stage.encapsulate(ok, s.ctx).passed());

    // A smaller path learnt by the shell lowers it.
    s.stage.on_event(test::external(core::PathMtuChanged{1400, ha_addr}), s.ctx);
    auto now_big = test::load(s.pool, test::echo_packet(home_a, cn, 3, 1468 - 28));
    CHECK(s.stage.encapsulate(now_big, s.ctx).reason == core::DropReason::TooBig);
    CHECK(frag_needed_mtu() == 1400 - mip::ip_in_udp_overhead);
    CHECK(s.stage.counters().too_big_dropped == 2);
}
