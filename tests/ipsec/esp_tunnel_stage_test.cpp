// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <string>

#include "core/buffer_pool.hpp"
#include "core/ipv4.hpp"
#include "core/udp.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "ipsec/esp_wire.hpp"
#include "nat/udp_encap_stage.hpp"
#include "tests/support/fake_stage_context.hpp"
#include "tests/support/fixed_random.hpp"
#include "tests/support/flat_status.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/packets.hpp"
#include "tests/support/vectors.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using namespace std::chrono_literals;
using core::DropReason;
using ipsec::EspSuite;
using ipsec::EspTunnelStage;
using ipsec::Sa;

namespace {

const auto gw_a = *core::Ipv4Address::parse("192.0.2.1");
const auto gw_b = *core::Ipv4Address::parse("198.51.100.2");
const auto host_a = *core::Ipv4Address::parse("10.1.0.5");
const auto host_b = *core::Ipv4Address::parse("10.2.0.9");

using test::load;

test::Bytes bytes_of(const core::PacketBuf& p) { return {p.bytes().begin(), p.bytes().end()}; }

// An inner UDP datagram host_a -> host_b with `len` payload bytes, TOS and DF as given.
test::Bytes inner_packet(std::size_t len, std::uint8_t tos = 0, bool df = false,
                         core::Ipv4Address src = host_a, core::Ipv4Address dst = host_b) {
    test::Bytes p(28 + len);
    core::Ipv4Header ip;
    ip.tos = tos;
    ip.total_length = static_cast<std::uint16_t>(p.size());
    ip.identification = 0x1234;
    ip.flags_fragment = df ? core::Ipv4View::flag_df : 0;
    ip.protocol = core::ip_protocol::udp;
    ip.source = src;
    ip.destination = dst;
    ip.emit(p);
    core::UdpHeader{1111, 2222, static_cast<std::uint16_t>(8 + len), 0}.emit(std::span(p).subspan(20));
    for (std::size_t i = 0; i < len; ++i) p[28 + i] = static_cast<std::uint8_t>(i * 13 + 1);
    return p;
}

crypto::SecretBytes keymat_for(EspSuite suite, std::uint8_t seed) {
    crypto::SecretBytes k(ipsec::keymat_len(suite));
    for (std::size_t i = 0; i < k.size(); ++i) k.mutable_span()[i] = static_cast<std::uint8_t>(seed * 31 + i);
    return k;
}

Sa make_sa(Sa::Direction dir, Sa::Config cfg, std::uint8_t seed, crypto::Random& rnd, core::TimePoint now) {
    auto sa = Sa::create(dir, cfg, keymat_for(cfg.suite, seed), rnd, now);
    REQUIRE(sa);
    return std::move(*sa);
}

// Two gateways with one SA pair: A -> B uses SPI 0xA0B0 (keys seed 1), B -> A SPI 0xB0A0 (seed 2).
struct Tunnel {
    explicit Tunnel(EspSuite suite, bool esn = false, EspTunnelStage::Config a_cfg = {gw_a, gw_b},
                    EspTunnelStage::Config b_cfg = {gw_b, gw_a}, ipsec::SaLifetimes lifetime = {})
        : pool(16, 2048), ctx_a(pool), ctx_b(pool), a(a_cfg), b(b_cfg) {
        Sa::Config ab{.spi = 0xA0B0, .suite = suite, .esn = esn, .lifetime = lifetime};
        Sa::Config ba{.spi = 0xB0A0, .suite = suite, .esn = esn, .lifetime = lifetime};
        REQUIRE(a.install(make_sa(Sa::Direction::Inbound, ba, 2, rnd, ctx_a.now()),
                          make_sa(Sa::Direction::Outbound, ab, 1, rnd, ctx_a.now()), &ctx_a));
        REQUIRE(b.install(make_sa(Sa::Direction::Inbound, ab, 1, rnd, ctx_b.now()),
                          make_sa(Sa::Direction::Outbound, ba, 2, rnd, ctx_b.now()), &ctx_b));
    }
    core::BufferPool pool;
    test::FakeStageContext ctx_a;
    test::FakeStageContext ctx_b;
    test::CountingRandom rnd;
    EspTunnelStage a;
    EspTunnelStage b;
};

// Seals `payload` with the A -> B keys and next_header, then wraps it in an outer header to B.
test::Bytes forge(Tunnel& t, std::span<const std::uint8_t> payload, std::uint8_t next_header, std::uint64_t seq) {
    Sa::Config cfg{.spi = 0xA0B0, .suite = t.a.outbound()->suite(), .esn = t.a.outbound()->esn(), .initial_seq = seq - 1};
    auto sa = make_sa(Sa::Direction::Outbound, cfg, 1, t.rnd, t.ctx_a.now());
    auto buf = load(t.pool, payload);
    REQUIRE(sa.seal(buf, next_header, t.ctx_a.now()).passed());
    REQUIRE(buf.push(20));
    core::Ipv4Header ip;
    ip.total_length = static_cast<std::uint16_t>(buf.size());
    ip.protocol = core::ip_protocol::esp;
    ip.source = gw_a;
    ip.destination = gw_b;
    ip.emit(buf.bytes());
    return bytes_of(buf);
}


}  // namespace

TEST_CASE("round trip for every suite with and without ESN, in place, outer header per RFC 4301 §5.1.2.1") {
    for (auto suite : ipsec::all_esp_suites) {
        for (bool esn : {false, true}) {
            CAPTURE(ipsec::to_string(suite));
            CAPTURE(esn);
            Tunnel t(suite, esn);
            CHECK(t.a.headroom() == 44);
            CHECK(t.a.tailroom() == 33);
            for (std::size_t len : {0u, 1u, 2u, 3u, 15u, 16u, 17u, 100u, 1372u}) {
                CAPTURE(len);
                const std::uint8_t tos = static_cast<std::uint8_t>(len & 0xFC) | 0x02;  // ECT(0)
                const bool df = len % 2 == 1;
                const auto original = inner_packet(len, tos, df);
                auto buf = load(t.pool, original, t.a.headroom());
                const auto* block = buf.block();
                const auto* inner_at = buf.data();
                REQUIRE(t.a.encapsulate(buf, t.ctx_a).passed());
                CHECK(buf.block() == block);
                CHECK(buf.headroom() == 0 + (ipsec::is_aead(suite) ? 8 : 0));  // AEAD IVs are 8 bytes shorter

                auto outer = core::Ipv4View::check(buf.bytes());
                REQUIRE(outer);
                CHECK(outer->checksum_valid());
                CHECK(outer->protocol() == core::ip_protocol::esp);
                CHECK(outer->source() == gw_a);
                CHECK(outer->destination() == gw_b);
                CHECK(outer->tos() == tos);
                CHECK(outer->dont_fragment() == df);
                CHECK(outer->ttl() == 64);
                CHECK(outer->total_length() == buf.size());
                auto esp = ipsec::EspView::check(outer->payload());
                REQUIRE(esp);
                CHECK(esp->spi() == 0xA0B0);
                CHECK(esp->seq() == t.a.outbound()->sequence());
                // The ciphertext sits exactly where the inner packet was: nothing moved.
                CHECK(outer->payload().data() + 8 + ipsec::iv_len(suite) == inner_at);

                REQUIRE(t.b.decapsulate(buf, t.ctx_b).passed());
                CHECK(buf.data() == inner_at);
                CHECK(test::to_hex(buf.bytes()) == test::to_hex(original));
            }
            // And the other direction.
            auto back = load(t.pool, inner_packet(40, 0, false, host_b, host_a), t.b.headroom());
            REQUIRE(t.b.encapsulate(back, t.ctx_b).passed());
            REQUIRE(t.a.decapsulate(back, t.ctx_a).passed());
            CHECK(core::Ipv4View::check(back.bytes())->source() == host_b);
            CHECK(t.b.find_inbound(0xA0B0)->counters().packets == 9);
            CHECK(t.a.find_inbound(0xB0A0)->counters().packets == 1);
        }
    }
}

TEST_CASE("known answer through the stage: RFC 7634 Appendix A tunnel packet") {
    auto v = test::load_vectors("esp_chacha20poly1305_rfc7634.json");
    core::BufferPool pool(4, 2048);
    test::FakeStageContext ctx(pool);
    const auto local = *core::Ipv4Address::parse(v["outer_src"].get<std::string>());
    const auto remote = *core::Ipv4Address::parse(v["outer_dst"].get<std::string>());
    EspTunnelStage stage({local, remote});
    test::FixedRandom iv(test::from_hex(v["iv"].get<std::string>()));
    const auto keymat = crypto::SecretBytes(test::from_hex(v["keymat"].get<std::string>()));
    Sa::Config cfg{.spi = 0x01020304, .suite = EspSuite::ChaCha20Poly1305, .initial_seq = 4, .aead_iv = Sa::AeadIv::Random};
    auto sa = Sa::create(Sa::Direction::Outbound, cfg, keymat, iv, ctx.now());
    REQUIRE(sa);
    REQUIRE(stage.install_outbound(std::move(*sa)));
    auto buf = load(pool, test::from_hex(v["inner_packet"].get<std::string>()), stage.headroom());
    REQUIRE(stage.encapsulate(buf, ctx).passed());
    const auto expected = test::from_hex(v["esp_packet_with_ip"].get<std::string>());
    auto got = bytes_of(buf);
    REQUIRE(got.size() == expected.size());
    // The vector's outer Identification (0x2345) is its sender's; ours counts from 0.
    CHECK(core::load_be16(got.data() + 4) == 0);
    core::store_be16(got.data() + 4, 0x2345);
    core::Ipv4MutView::check(std::span(got))->update_checksum();
    CHECK(test::to_hex(got) == test::to_hex(expected));

    // The receiving gateway opens the published bytes.
    EspTunnelStage peer({remote, local});
    auto in = Sa::create(Sa::Direction::Inbound, cfg, keymat, iv, ctx.now());
    REQUIRE(in);
    REQUIRE(peer.install_inbound(std::move(*in)));
    auto wire = load(pool, expected);
    REQUIRE(peer.decapsulate(wire, ctx).passed());
    CHECK(test::to_hex(wire.bytes()) == v["inner_packet"].get<std::string>());
}

TEST_CASE("hostile outer packets: every refusal has its reason and leaves the window alone") {
    Tunnel t(EspSuite::AesCbc128HmacSha1);
    auto good_buf = load(t.pool, inner_packet(64), t.a.headroom());
    REQUIRE(t.a.encapsulate(good_buf, t.ctx_a).passed());
    const auto good = bytes_of(good_buf);
    auto with = [&](auto edit) {
        auto p = good;
        edit(p);
        core::Ipv4MutView::check(std::span(p))->update_checksum();
        return p;
    };
    struct Row {
        const char* name;
        test::Bytes packet;
        DropReason expected;
    };
    const Row rows[] = {
        {"not IPv4", "60 00 00 00 00 00 3b 40"_hex, DropReason::UnexpectedProtocol},
        {"shorter than an IPv4 header", test::Bytes(good.begin(), good.begin() + 19), DropReason::Truncated},
        {"UDP instead of ESP", with([](auto& p) { p[9] = core::ip_protocol::udp; }), DropReason::UnexpectedProtocol},
        {"addressed to someone else", with([](auto& p) { p[19] ^= 1; }), DropReason::NotForUs},
        {"from someone else", with([](auto& p) { p[15] ^= 1; }), DropReason::NotForUs},
        {"a fragment", with([](auto& p) { p[6] = 0x20; }), DropReason::Fragment},
        {"ESP header cut to 7 bytes",
         with([](auto& p) {
             p.resize(27);
             core::store_be16(p.data() + 2, 27);
         }),
         DropReason::Truncated},
        {"unknown SPI", with([](auto& p) { p[23] ^= 0x55; }), DropReason::UnknownSpi},
        {"tampered ICV", with([](auto& p) { p.back() ^= 0x80; }), DropReason::AuthFailed},
        {"tampered ciphertext", with([](auto& p) { p[60] ^= 0x01; }), DropReason::AuthFailed},
        {"ciphertext not whole blocks",
         with([](auto& p) {
             p.pop_back();
             core::store_be16(p.data() + 2, static_cast<std::uint16_t>(p.size()));
         }),
         DropReason::Malformed},
    };
    for (const auto& r : rows) {
        CAPTURE(std::string(r.name));
        auto buf = load(t.pool, r.packet);
        CHECK(t.b.decapsulate(buf, t.ctx_b).reason == r.expected);
        CHECK(t.b.find_inbound(0xA0B0)->sequence() == 0);
    }
    auto buf = load(t.pool, good);
    REQUIRE(t.b.decapsulate(buf, t.ctx_b).passed());
    auto replay = load(t.pool, good);
    CHECK(t.b.decapsulate(replay, t.ctx_b).reason == DropReason::ReplayedSequence);
    const auto& c = t.b.find_inbound(0xA0B0)->counters();
    CHECK(c.packets == 1);
    CHECK(c.auth_failures == 2);
    CHECK(c.replay_drops == 1);
    CHECK(c.drops == 4);  // two auth failures, one Malformed, one replay
}

TEST_CASE("hostile: a packet truncated at every length never passes and never moves the window") {
    for (auto suite : {EspSuite::AesGcm256, EspSuite::AesCbc256HmacSha256}) {
        CAPTURE(ipsec::to_string(suite));
        Tunnel t(suite, true);
        auto g = load(t.pool, inner_packet(33), t.a.headroom());
        REQUIRE(t.a.encapsulate(g, t.ctx_a).passed());
        const auto good = bytes_of(g);
        for (std::size_t len = 0; len < good.size(); ++len) {
            CAPTURE(len);
            // Both a cut buffer with the original Total Length and a consistent shorter one.
            for (bool fix_length : {false, true}) {
                auto p = test::Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len));
                if (fix_length && len >= 20) {
                    core::store_be16(p.data() + 2, static_cast<std::uint16_t>(len));
                    core::Ipv4MutView::check(std::span(p))->update_checksum();
                }
                auto buf = load(t.pool, p);
                CHECK_FALSE(t.b.decapsulate(buf, t.ctx_b).passed());
            }
        }
        CHECK(t.b.find_inbound(0xA0B0)->sequence() == 0);
        auto buf = load(t.pool, good);
        CHECK(t.b.decapsulate(buf, t.ctx_b).passed());
    }
}

TEST_CASE("too old: left of the window after the peer moved on") {
    Tunnel t(EspSuite::AesGcm128);
    auto first = load(t.pool, inner_packet(10), t.a.headroom());
    REQUIRE(t.a.encapsulate(first, t.ctx_a).passed());
    const auto old = bytes_of(first);
    auto late = forge(t, inner_packet(10), 4, 2000);
    auto b1 = load(t.pool, late);
    REQUIRE(t.b.decapsulate(b1, t.ctx_b).passed());
    auto b2 = load(t.pool, old);  // seq 1, window 1024 below 2000
    CHECK(t.b.decapsulate(b2, t.ctx_b).reason == DropReason::SequenceTooOld);
}

TEST_CASE("next header 59 is a dummy packet: sent on request, dropped silently but it moves the window (RFC 4303 §2.6)") {
    Tunnel t(EspSuite::ChaCha20Poly1305);
    REQUIRE(t.a.send_dummy(t.ctx_a, 40).passed());
    REQUIRE(t.ctx_a.sent.size() == 1);
    CHECK(t.a.counters().dummies_sent == 1);
    auto& dummy = t.ctx_a.sent[0];
    auto outer = core::Ipv4View::check(dummy.bytes());
    REQUIRE(outer);
    CHECK(outer->protocol() == core::ip_protocol::esp);
    CHECK(outer->total_length() == 20 + 8 + 8 + 40 + 2 + 2 + 16);
    CHECK(t.b.decapsulate(dummy, t.ctx_b).reason == DropReason::DummyPacket);
    CHECK(t.b.find_inbound(0xA0B0)->sequence() == 1);
    CHECK(t.b.find_inbound(0xA0B0)->counters().packets == 1);
    // The dummy used sequence number 1; real traffic continues at 2.
    auto buf = load(t.pool, inner_packet(5), t.a.headroom());
    REQUIRE(t.a.encapsulate(buf, t.ctx_a).passed());
    CHECK(ipsec::EspView::check(core::Ipv4View::check(buf.bytes())->payload())->seq() == 2);
    CHECK(t.b.decapsulate(buf, t.ctx_b).passed());
}

TEST_CASE("tunnel mode accepts only next header 4 carrying a valid IPv4 packet") {
    Tunnel t(EspSuite::AesCbc128HmacSha256);
    auto too_long = inner_packet(20);
    core::store_be16(too_long.data() + 2, 100);  // Total Length beyond the decrypted payload
    struct Row {
        const char* name;
        test::Bytes payload;
        std::uint8_t next_header;
        DropReason expected;
    };
    const Row rows[] = {
        {"TCP (a transport mode payload)", inner_packet(20), core::ip_protocol::tcp, DropReason::BadNextHeader},
        {"IPv6 in the tunnel", inner_packet(20), 41, DropReason::BadNextHeader},
        {"NH 4 but not IPv4", "60 00 00 00 00 00 3b 40 00 00"_hex, 4, DropReason::Malformed},
        {"NH 4, inner Total Length beyond the payload", too_long, 4, DropReason::Malformed},
        {"NH 4, empty payload", ""_hex, 4, DropReason::Malformed},
    };
    std::uint64_t seq = 1;
    for (const auto& r : rows) {
        CAPTURE(std::string(r.name));
        auto p = forge(t, r.payload, r.next_header, seq++);
        auto buf = load(t.pool, p);
        CHECK(t.b.decapsulate(buf, t.ctx_b).reason == r.expected);
    }
    // Authenticated packets move the window even when their content is refused.
    CHECK(t.b.find_inbound(0xA0B0)->sequence() == 5);
}

TEST_CASE("TFC padding after the inner packet is cut off by its Total Length (RFC 4303 §2.7)") {
    Tunnel t(EspSuite::AesGcm128);
    auto inner = inner_packet(30);
    auto padded = inner;
    padded.resize(inner.size() + 77, 0xEE);
    auto buf = load(t.pool, forge(t, padded, 4, 1));
    REQUIRE(t.b.decapsulate(buf, t.ctx_b).passed());
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(inner));
}

TEST_CASE("inbound policy: inner sources outside allowed_inner_source are PolicyMismatch (RFC 4301 §5.2)") {
    Tunnel t(EspSuite::AesGcm256, false, {gw_a, gw_b},
             {.local = gw_b, .remote = gw_a, .allowed_inner_source = core::Ipv4Prefix::parse("10.1.0.0/24")});
    auto ok = load(t.pool, inner_packet(10), t.a.headroom());
    REQUIRE(t.a.encapsulate(ok, t.ctx_a).passed());
    CHECK(t.b.decapsulate(ok, t.ctx_b).passed());
    auto spoof = load(t.pool, inner_packet(10, 0, false, *core::Ipv4Address::parse("10.9.9.9")), t.a.headroom());
    REQUIRE(t.a.encapsulate(spoof, t.ctx_a).passed());
    CHECK(t.b.decapsulate(spoof, t.ctx_b).reason == DropReason::PolicyMismatch);
}

TEST_CASE("encapsulate refuses without an SA, non-IPv4 input, and packets too big for IPv4") {
    core::BufferPool pool(8, 70000);
    test::FakeStageContext ctx(pool);
    EspTunnelStage stage({gw_a, gw_b});
    auto buf = load(pool, inner_packet(10), 44);
    CHECK(stage.encapsulate(buf, ctx).reason == DropReason::NoSa);
    test::CountingRandom rnd;
    REQUIRE(stage.install_outbound(make_sa(Sa::Direction::Outbound, {.spi = 5000}, 1, rnd, ctx.now())));
    auto v6 = load(pool, "60 00 00 00 00 00 3b 40"_hex, 44);
    CHECK(stage.encapsulate(v6, ctx).reason == DropReason::UnexpectedProtocol);
    auto big = load(pool, inner_packet(65535 - 28 - 20), 44);
    CHECK(stage.encapsulate(big, ctx).reason == DropReason::TooBig);
    auto tight = load(pool, inner_packet(10), 30);
    CHECK(stage.encapsulate(tight, ctx).reason == DropReason::NoHeadroom);
    CHECK(stage.outbound()->sequence() == 0);
    // Link padding after Total Length is not encrypted.
    auto padded = inner_packet(10);
    padded.resize(padded.size() + 6, 0);
    auto p = load(pool, padded, 44);
    REQUIRE(stage.encapsulate(p, ctx).passed());
    CHECK(p.size() == 20 + stage.outbound()->sealed_len(38));
}

TEST_CASE("lifetimes with a fake clock: poll raises SaExpired soft, then hard, once each") {
    Tunnel t(EspSuite::AesGcm128, false, {gw_a, gw_b}, {gw_b, gw_a},
             {.soft = {.time = 100s}, .hard = {.time = 120s}});
    t.ctx_a.events.clear();
    const auto start = t.ctx_a.now();
    CHECK(t.a.poll(t.ctx_a) == start + 100s);
    CHECK(t.ctx_a.events.empty());
    t.ctx_a.advance(100s);
    CHECK(t.a.poll(t.ctx_a) == start + 120s);
    REQUIRE(t.ctx_a.events.size() == 2);  // the outbound and the inbound SA
    auto e0 = std::get<core::SaExpired>(t.ctx_a.events[0]);
    auto e1 = std::get<core::SaExpired>(t.ctx_a.events[1]);
    CHECK(e0.spi == 0xA0B0);
    CHECK_FALSE(e0.hard);
    CHECK(e1.spi == 0xB0A0);
    CHECK_FALSE(e1.hard);
    t.ctx_a.advance(10s);
    CHECK(t.a.poll(t.ctx_a) == start + 120s);
    CHECK(t.ctx_a.events.size() == 2);  // soft is not raised twice
    // Still usable between soft and hard.
    auto buf = load(t.pool, inner_packet(8), t.a.headroom());
    CHECK(t.a.encapsulate(buf, t.ctx_a).passed());
    t.ctx_a.advance(10s);
    CHECK_FALSE(t.a.poll(t.ctx_a));
    REQUIRE(t.ctx_a.events.size() == 4);
    CHECK(std::get<core::SaExpired>(t.ctx_a.events[2]).hard);
    CHECK(std::get<core::SaExpired>(t.ctx_a.events[3]).hard);
    auto late = load(t.pool, inner_packet(8), t.a.headroom());
    CHECK(t.a.encapsulate(late, t.ctx_a).reason == DropReason::SaExpired);
    t.ctx_b.advance(130s);
    auto in = load(t.pool, bytes_of(buf));
    CHECK(t.b.decapsulate(in, t.ctx_b).reason == DropReason::SaExpired);
    CHECK(t.a.poll(t.ctx_a) == std::nullopt);
    CHECK(t.ctx_a.events.size() == 4);
}

TEST_CASE("lifetimes by packets are noticed on the packet path") {
    Tunnel t(EspSuite::ChaCha20Poly1305, false, {gw_a, gw_b}, {gw_b, gw_a},
             {.soft = {.packets = 2}, .hard = {.packets = 3}});
    t.ctx_a.events.clear();
    std::vector<DropReason> results;
    for (int i = 0; i < 4; ++i) {
        auto buf = load(t.pool, inner_packet(8), t.a.headroom());
        results.push_back(t.a.encapsulate(buf, t.ctx_a).reason);
    }
    CHECK(results == std::vector<DropReason>{DropReason::None, DropReason::None, DropReason::None, DropReason::SaExpired});
    REQUIRE(t.ctx_a.events.size() == 2);
    CHECK_FALSE(std::get<core::SaExpired>(t.ctx_a.events[0]).hard);
    CHECK(std::get<core::SaExpired>(t.ctx_a.events[1]).hard);
}

TEST_CASE("SA installation at runtime: events, refusals, make-before-break rekey, removal") {
    Tunnel t(EspSuite::AesGcm128);
    REQUIRE(t.ctx_a.events.size() == 1);
    auto installed = std::get<core::SaInstalled>(t.ctx_a.events[0]);
    CHECK(installed.spi_inbound == 0xB0A0);
    CHECK(installed.spi_outbound == 0xA0B0);

    // Refusals.
    CHECK(t.b.install_inbound(make_sa(Sa::Direction::Inbound, {.spi = 0xA0B0}, 1, t.rnd, t.ctx_b.now())).error() ==
          core::Errc::AlreadyExists);
    CHECK(t.b.install_inbound(make_sa(Sa::Direction::Outbound, {.spi = 0x1}, 1, t.rnd, t.ctx_b.now())).error() ==
          core::Errc::InvalidArgument);
    CHECK(t.b.install_outbound(make_sa(Sa::Direction::Inbound, {.spi = 0x1}, 1, t.rnd, t.ctx_b.now())).error() ==
          core::Errc::InvalidArgument);

    // A packet under the old SA is in flight while A rekeys.
    auto in_flight = load(t.pool, inner_packet(12), t.a.headroom());
    REQUIRE(t.a.encapsulate(in_flight, t.ctx_a).passed());
    // B installs the new inbound SA first, then A switches its outbound SA.
    REQUIRE(t.b.install_inbound(make_sa(Sa::Direction::Inbound, {.spi = 0xC0C0}, 7, t.rnd, t.ctx_b.now()), &t.ctx_b));
    CHECK(std::get<core::SaInstalled>(t.ctx_b.events.back()).spi_inbound == 0xC0C0);
    REQUIRE(t.a.install_outbound(make_sa(Sa::Direction::Outbound, {.spi = 0xC0C0}, 7, t.rnd, t.ctx_a.now()), &t.ctx_a));
    CHECK(std::get<core::SaInstalled>(t.ctx_a.events.back()).spi_outbound == 0xC0C0);
    CHECK(t.b.inbound_count() == 2);
    auto fresh = load(t.pool, inner_packet(12), t.a.headroom());
    REQUIRE(t.a.encapsulate(fresh, t.ctx_a).passed());
    CHECK(ipsec::EspView::check(core::Ipv4View::check(fresh.bytes())->payload())->spi() == 0xC0C0);
    CHECK(t.b.decapsulate(fresh, t.ctx_b).passed());
    CHECK(t.b.decapsulate(in_flight, t.ctx_b).passed());  // the old SA still opens late packets
    // Removing the old SA: its packets are unknown from now on.
    CHECK(t.b.remove_inbound(0xA0B0));
    CHECK_FALSE(t.b.remove_inbound(0xA0B0));
    CHECK(t.b.inbound_count() == 1);
    auto stale = load(t.pool, forge(t, inner_packet(3), 4, 50));
    CHECK(t.b.decapsulate(stale, t.ctx_b).reason == DropReason::UnknownSpi);
    CHECK(t.a.remove_outbound());
    auto none = load(t.pool, inner_packet(3), t.a.headroom());
    CHECK(t.a.encapsulate(none, t.ctx_a).reason == DropReason::NoSa);
}

std::uint32_t sealed_spi(const core::PacketBuf& p) {
    return ipsec::EspView::check(core::Ipv4View::check(p.bytes())->payload())->spi();
}

TEST_CASE("after our own rekey the new outbound SA waits until the peer uses the pair, or for a deadline") {
    Tunnel t(EspSuite::AesGcm128);
    // A ran Quick Mode as initiator: new pair A->B 0xC0C0 (seed 7), B->A 0xD0D0 (seed 8). B
    // has not processed QM3 yet, so it cannot open 0xC0C0.
    REQUIRE(t.a.install_inbound(make_sa(Sa::Direction::Inbound, {.spi = 0xD0D0, .suite = EspSuite::AesGcm128}, 8, t.rnd, t.ctx_a.now())));
    REQUIRE(t.a.install_outbound_when_confirmed(make_sa(Sa::Direction::Outbound, {.spi = 0xC0C0, .suite = EspSuite::AesGcm128}, 7, t.rnd,
                                                        t.ctx_a.now()),
                                                true, 0xD0D0, t.ctx_a.now() + 2s));
    REQUIRE(t.a.pending_outbound() != nullptr);
    auto early = load(t.pool, inner_packet(12), t.a.headroom());
    REQUIRE(t.a.encapsulate(early, t.ctx_a).passed());
    CHECK(sealed_spi(early) == 0xA0B0);  // still the old SA: B can open it
    CHECK_FALSE(early.meta().esp_wants_udp);
    CHECK(t.b.decapsulate(early, t.ctx_b).passed());
    // A packet on the OLD inbound SA proves nothing about the new pair.
    auto old_reply = load(t.pool, inner_packet(5), t.b.headroom());
    REQUIRE(t.b.encapsulate(old_reply, t.ctx_b).passed());
    REQUIRE(t.a.decapsulate(old_reply, t.ctx_a).passed());
    CHECK(t.a.pending_outbound() != nullptr);
    // B processes QM3 and answers with the new SA: A switches.
    REQUIRE(t.b.install(make_sa(Sa::Direction::Inbound, {.spi = 0xC0C0, .suite = EspSuite::AesGcm128}, 7, t.rnd, t.ctx_b.now()),
                        make_sa(Sa::Direction::Outbound, {.spi = 0xD0D0, .suite = EspSuite::AesGcm128}, 8, t.rnd, t.ctx_b.now())));
    auto reply = load(t.pool, inner_packet(5), t.b.headroom());
    REQUIRE(t.b.encapsulate(reply, t.ctx_b).passed());
    REQUIRE(t.a.decapsulate(reply, t.ctx_a).passed());
    CHECK(t.a.pending_outbound() == nullptr);
    auto late = load(t.pool, inner_packet(12), t.a.headroom());
    REQUIRE(t.a.encapsulate(late, t.ctx_a).passed());
    CHECK(sealed_spi(late) == 0xC0C0);
    CHECK(late.meta().esp_wants_udp);  // the pending SA's own encapsulation came with it
    CHECK(t.b.decapsulate(late, t.ctx_b).passed());

    SUBCASE("a silent peer: the deadline switches, on the packet path and in poll") {
        REQUIRE(t.a.install_outbound_when_confirmed(make_sa(Sa::Direction::Outbound, {.spi = 0xE0E0}, 9, t.rnd, t.ctx_a.now()), false,
                                                    0xF0F0, t.ctx_a.now() + 2s));
        auto next = t.a.poll(t.ctx_a);
        REQUIRE(next);
        CHECK(*next <= t.ctx_a.now() + 2s);
        t.ctx_a.advance(2s);
        auto p = load(t.pool, inner_packet(12), t.a.headroom());
        REQUIRE(t.a.encapsulate(p, t.ctx_a).passed());
        CHECK(sealed_spi(p) == 0xE0E0);
        REQUIRE(t.a.install_outbound_when_confirmed(make_sa(Sa::Direction::Outbound, {.spi = 0xE1E1}, 9, t.rnd, t.ctx_a.now()), false,
                                                    0xF1F1, t.ctx_a.now() + 2s));
        t.ctx_a.advance(3s);
        t.a.poll(t.ctx_a);
        CHECK(t.a.pending_outbound() == nullptr);
        CHECK(t.a.outbound()->spi() == 0xE1E1);
    }
    SUBCASE("the peer deletes the current outbound SA: the pending one takes over at once") {
        REQUIRE(t.a.install_outbound_when_confirmed(make_sa(Sa::Direction::Outbound, {.spi = 0xE0E0}, 9, t.rnd, t.ctx_a.now()), false,
                                                    0xF0F0, t.ctx_a.now() + 2s));
        CHECK(t.a.remove_outbound());
        REQUIRE(t.a.outbound() != nullptr);
        CHECK(t.a.outbound()->spi() == 0xE0E0);
        CHECK(t.a.pending_outbound() == nullptr);
    }
    SUBCASE("without a current outbound SA there is nothing to wait for") {
        CHECK(t.a.remove_outbound());
        REQUIRE(t.a.install_outbound_when_confirmed(make_sa(Sa::Direction::Outbound, {.spi = 0xE0E0}, 9, t.rnd, t.ctx_a.now()), false,
                                                    0xF0F0, t.ctx_a.now() + 2s));
        REQUIRE(t.a.outbound() != nullptr);
        CHECK(t.a.outbound()->spi() == 0xE0E0);
    }
}

TEST_CASE("a deleted current outbound SA falls back to the one it replaced while both ends still hold it") {
    Tunnel t(EspSuite::AesGcm128);
    // A late extra pair (0xC0C0 A->B) replaced 0xA0B0, which B can still open.
    REQUIRE(t.b.install_inbound(make_sa(Sa::Direction::Inbound, {.spi = 0xC0C0, .suite = EspSuite::AesGcm128}, 7, t.rnd, t.ctx_b.now())));
    REQUIRE(t.a.install_outbound(make_sa(Sa::Direction::Outbound, {.spi = 0xC0C0, .suite = EspSuite::AesGcm128}, 7, t.rnd, t.ctx_a.now())));
    REQUIRE(t.a.previous_outbound() != nullptr);
    CHECK(t.a.previous_outbound()->spi() == 0xA0B0);
    CHECK_FALSE(t.a.forget_outbound(0x9999, t.ctx_a.now()));

    SUBCASE("the late pair is deleted: back to the previous SA, which the peer opens") {
        REQUIRE(t.a.forget_outbound(0xC0C0, t.ctx_a.now()));
        REQUIRE(t.a.outbound() != nullptr);
        CHECK(t.a.outbound()->spi() == 0xA0B0);
        CHECK(t.a.previous_outbound() == nullptr);
        CHECK(t.a.counters().outbound_fallbacks == 1);
        auto p = load(t.pool, inner_packet(12), t.a.headroom());
        REQUIRE(t.a.encapsulate(p, t.ctx_a).passed());
        CHECK(sealed_spi(p) == 0xA0B0);
        CHECK(t.b.decapsulate(p, t.ctx_b).passed());
        // Nothing further to fall back to.
        REQUIRE(t.a.forget_outbound(0xA0B0, t.ctx_a.now()));
        auto none = load(t.pool, inner_packet(3), t.a.headroom());
        CHECK(t.a.encapsulate(none, t.ctx_a).reason == DropReason::NoSa);
    }
    SUBCASE("the previous pair was deleted first: no fallback to it later") {
        REQUIRE(t.a.forget_outbound(0xA0B0, t.ctx_a.now()));
        CHECK(t.a.previous_outbound() == nullptr);
        CHECK(t.a.outbound()->spi() == 0xC0C0);
        REQUIRE(t.a.forget_outbound(0xC0C0, t.ctx_a.now()));
        CHECK(t.a.outbound() == nullptr);
        CHECK(t.a.counters().outbound_fallbacks == 0);
    }
    SUBCASE("remove_outbound means stop sending: no fallback") {
        CHECK(t.a.remove_outbound());
        CHECK(t.a.outbound() == nullptr);
        CHECK(t.a.previous_outbound() == nullptr);
    }
    SUBCASE("a waiting rekeyed SA takes precedence over the previous one") {
        REQUIRE(t.a.install_outbound_when_confirmed(make_sa(Sa::Direction::Outbound, {.spi = 0xE0E0}, 9, t.rnd, t.ctx_a.now()), false,
                                                    0xF0F0, t.ctx_a.now() + 2s));
        REQUIRE(t.a.forget_outbound(0xC0C0, t.ctx_a.now()));
        CHECK(t.a.outbound()->spi() == 0xE0E0);
        CHECK(t.a.previous_outbound() == nullptr);
        CHECK(t.a.counters().outbound_fallbacks == 0);
    }
}

TEST_CASE("a hard-expired previous outbound SA is never fallen back to") {
    ipsec::SaLifetimes short_lived;
    short_lived.hard.time = 10s;
    Tunnel t(EspSuite::AesGcm128, false, {gw_a, gw_b}, {gw_b, gw_a}, short_lived);
    REQUIRE(t.a.install_outbound(make_sa(Sa::Direction::Outbound, {.spi = 0xC0C0, .suite = EspSuite::AesGcm128}, 7, t.rnd, t.ctx_a.now())));
    t.ctx_a.advance(11s);
    REQUIRE(t.a.forget_outbound(0xC0C0, t.ctx_a.now()));
    CHECK(t.a.outbound() == nullptr);
    CHECK(t.a.counters().outbound_fallbacks == 0);
}

TEST_CASE("an inbound SA we deleted keeps opening the peer's packets for a while, then goes") {
    Tunnel t(EspSuite::AesGcm128);
    CHECK_FALSE(t.b.retire_inbound(0x1234, t.ctx_b.now() + 2s));
    REQUIRE(t.b.retire_inbound(0xA0B0, t.ctx_b.now() + 2s));
    auto in_flight = load(t.pool, inner_packet(12), t.a.headroom());
    REQUIRE(t.a.encapsulate(in_flight, t.ctx_a).passed());
    auto next = t.b.poll(t.ctx_b);
    REQUIRE(next);
    CHECK(*next == t.ctx_b.now() + 2s);
    t.ctx_b.advance(1s);
    t.b.poll(t.ctx_b);
    CHECK(t.b.decapsulate(in_flight, t.ctx_b).passed());
    t.ctx_b.advance(1s);
    t.b.poll(t.ctx_b);
    CHECK(t.b.inbound_count() == 0);
    auto late = load(t.pool, inner_packet(12), t.a.headroom());
    REQUIRE(t.a.encapsulate(late, t.ctx_a).passed());
    CHECK(t.b.decapsulate(late, t.ctx_b).reason == DropReason::UnknownSpi);
}

TEST_CASE("stacked on nat.udp_encap: through a NAT the source may change, and the new endpoint floats") {
    // A (behind a NAT, private 192.0.2.1) talks to B over UDP 4500; the NAT rewrites A's
    // source to 203.0.113.50:40000. B's ESP accepts the rewritten source for UDP-encapsulated
    // packets only, and tells the UDP stage below where A really is.
    Tunnel t(EspSuite::AesCbc256HmacSha1, true);
    t.a.set_udp_encapsulation(true);
    nat::UdpEncapStage udp_a({.keepalive = 0s});
    nat::UdpEncapStage udp_b({.keepalive = 0s});
    const core::Endpoint nat_public{*core::Ipv4Address::parse("203.0.113.50"), 40000};
    auto send = [&](std::size_t len) {
        auto buf = load(t.pool, inner_packet(len), t.a.headroom() + udp_a.headroom());
        REQUIRE(t.a.encapsulate(buf, t.ctx_a).passed());
        REQUIRE(udp_a.encapsulate(buf, t.ctx_a).passed());
        // The NAT.
        auto ip = core::Ipv4MutView::check(buf.bytes());
        REQUIRE(ip);
        ip->set_source(nat_public.address);
        ip->update_checksum();
        core::UdpMutView::check(ip->payload())->set_source_port(nat_public.port);
        return buf;
    };
    auto buf = send(50);
    t.ctx_b.events.clear();
    REQUIRE(udp_b.decapsulate(buf, t.ctx_b).passed());
    REQUIRE(buf.meta().esp_in_udp);
    CHECK(buf.meta().esp_in_udp->from == nat_public);
    REQUIRE(t.b.decapsulate(buf, t.ctx_b).passed());
    CHECK_FALSE(buf.meta().esp_in_udp);  // consumed by the layer it was meant for
    CHECK(test::to_hex(buf.bytes()) == test::to_hex(inner_packet(50)));
    REQUIRE(t.ctx_b.events.size() == 1);
    auto floated = std::get<core::PeerFloated>(t.ctx_b.events[0]);
    CHECK(floated.new_peer == nat_public);
    CHECK(floated.local.port == 4500);  // addressed to the UDP layer the packet came through
    udp_b.on_event({0, t.ctx_b.events[0]}, t.ctx_b);
    CHECK(udp_b.peer() == nat_public);
    CHECK(t.b.peer() == nat_public);
    // The same endpoint again raises nothing.
    auto again = send(10);
    REQUIRE(udp_b.decapsulate(again, t.ctx_b).passed());
    REQUIRE(t.b.decapsulate(again, t.ctx_b).passed());
    CHECK(t.ctx_b.events.size() == 1);
    // A forged packet from a new endpoint must not move the peer.
    auto forged = send(10);
    auto fip = core::Ipv4MutView::check(forged.bytes());
    core::UdpMutView::check(fip->payload())->set_source_port(40001);
    forged.bytes()[forged.size() - 1] ^= 1;
    REQUIRE(udp_b.decapsulate(forged, t.ctx_b).passed());
    CHECK(t.b.decapsulate(forged, t.ctx_b).reason == DropReason::AuthFailed);
    CHECK(t.ctx_b.events.size() == 1);
    CHECK(t.b.peer() == nat_public);
    // Plain ESP (no UDP marker in the metadata) from the NAT address is not accepted.
    auto plain = load(t.pool, inner_packet(10), t.a.headroom());
    REQUIRE(t.a.encapsulate(plain, t.ctx_a).passed());
    auto pip = core::Ipv4MutView::check(plain.bytes());
    pip->set_source(nat_public.address);
    pip->update_checksum();
    CHECK(t.b.decapsulate(plain, t.ctx_b).reason == DropReason::NotForUs);
}

TEST_CASE("ECN: congestion experienced on the outer header reaches an ECN-capable inner packet (RFC 6040)") {
    Tunnel t(EspSuite::AesGcm128);
    struct Row {
        std::uint8_t inner_ecn, outer_ecn, expected_inner;
    };
    const Row rows[] = {{0, 3, 0}, {1, 3, 3}, {2, 3, 3}, {2, 0, 2}, {2, 1, 2}, {3, 3, 3}};
    for (const auto& r : rows) {
        CAPTURE(int{r.inner_ecn});
        CAPTURE(int{r.outer_ecn});
        auto buf = load(t.pool, inner_packet(20, static_cast<std::uint8_t>(0xB8 | r.inner_ecn)), t.a.headroom());
        REQUIRE(t.a.encapsulate(buf, t.ctx_a).passed());
        auto outer = core::Ipv4MutView::check(buf.bytes());
        outer->set_tos(static_cast<std::uint8_t>(0xB8 | r.outer_ecn));
        outer->update_checksum();
        REQUIRE(t.b.decapsulate(buf, t.ctx_b).passed());
        auto inner = core::Ipv4View::check(buf.bytes());
        CHECK(inner->tos() == (0xB8 | r.expected_inner));
        CHECK(inner->checksum_valid());
    }
}

TEST_CASE("the outer source follows OuterAddressChanged for our own address only") {
    Tunnel t(EspSuite::AesGcm128);
    const auto other = *core::Ipv4Address::parse("172.16.0.1");
    const auto moved = *core::Ipv4Address::parse("192.0.2.77");
    t.a.on_event({core::RaisedEvent::external, core::OuterAddressChanged{other, moved, 3}}, t.ctx_a);
    CHECK(t.a.config().local == gw_a);
    t.a.on_event({core::RaisedEvent::external, core::OuterAddressChanged{gw_a, moved, 3}}, t.ctx_a);
    CHECK(t.a.config().local == moved);
    auto buf = load(t.pool, inner_packet(20), t.a.headroom());
    REQUIRE(t.a.encapsulate(buf, t.ctx_a).passed());
    CHECK(core::Ipv4View::check(buf.bytes())->source() == moved);
}

TEST_CASE("report() lists the SAs with their counters for mipsec status") {
    Tunnel t(EspSuite::AesCbc128HmacSha1, true);
    auto buf = load(t.pool, inner_packet(20), t.a.headroom());
    REQUIRE(t.a.encapsulate(buf, t.ctx_a).passed());
    buf.bytes()[30] ^= 1;
    CHECK(t.b.decapsulate(buf, t.ctx_b).reason == DropReason::AuthFailed);
    test::FlatStatus sink;
    t.b.report(sink);
    CHECK(sink.values["local"] == "198.51.100.2");
    CHECK(sink.values["remote"] == "192.0.2.1");
    CHECK(sink.values["outbound.spi"] == "0x0000b0a0");
    CHECK(sink.values["outbound.suite"] == "aes128-sha1");
    CHECK(sink.values["outbound.esn"] == "true");
    CHECK(sink.values["inbound[0].spi"] == "0x0000a0b0");
    CHECK(sink.values["inbound[0].auth_failures"] == "1");
    CHECK(sink.values["inbound[0].drops"] == "1");
    CHECK(sink.values["inbound[0].packets"] == "0");
    CHECK(sink.values["inbound[0].state"] == "live");
}
