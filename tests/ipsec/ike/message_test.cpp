// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <ostream>  // doctest prints std::error_code through operator<<

#include "ipsec/ike/errc.hpp"
#include "ipsec/ike/message.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;
using namespace mipsec::test::literals;

namespace {
template <std::size_t N>
test::Bytes bytes(const std::array<std::uint8_t, N>& a) {
    return test::Bytes(a.begin(), a.end());
}

// Main Mode message 1 as strongSwan 5.9 sends it (captured on the wire): SA with the
// AES-128/SHA1/MODP-2048/PSK/15840 s transform, then the XAUTH, DPD, FRAGMENTATION,
// RFC 3947 and draft-02\n Vendor IDs.
test::Bytes mm1_bytes() {
    return "1122334455667788 0000000000000000 01 10 02 00 00000000 000000b4"
           "0d 00 00 38 00000001 00000001"
           " 00 00 00 2c 01 01 00 01"
           "  00 00 00 24 01 01 0000 8001 0007 800e 0080 8002 0002 8004 000e 8003 0001 800b 0001 800c 3de0"
           "0d 00 00 0c 09002689dfd6b712"
           "0d 00 00 14 afcad71368a1f1c96b8696fc77570100"
           "0d 00 00 18 4048b7d56ebce88525e7de7f00d6c2d380000000"
           "0d 00 00 14 4a131c81070358455c5728f20e95452f"
           "00 00 00 14 90cb80913ebb696e086381b5ec427b1f"_hex;
}

Message mm1_message() {
    Message m;
    m.header.initiator_cookie = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    m.header.exchange_type = exchange_type::main_mode;
    Transform t{1, transform_key_ike, {}};
    t.attributes.add(DataAttribute::basic(phase1_attr::encryption, phase1_encryption::aes_cbc))
        .add(DataAttribute::basic(phase1_attr::key_length, 128))
        .add(DataAttribute::basic(phase1_attr::hash, phase1_hash::sha1))
        .add(DataAttribute::basic(phase1_attr::group_description, dh_group::modp_2048))
        .add(DataAttribute::basic(phase1_attr::auth_method, auth_method::pre_shared_key))
        .add(DataAttribute::basic(phase1_attr::life_type, life_type::seconds))
        .add(DataAttribute::integer(phase1_attr::life_duration, 15840));
    m.payloads.push_back(SaPayload{doi::ipsec, situation::identity_only, {Proposal{1, protocol_id::isakmp, {}, {t}}}});
    for (auto v : {bytes(vendor_id::xauth), bytes(vendor_id::dpd), bytes(vendor_id::fragmentation),
                   bytes(vendor_id::nat_t_rfc3947), bytes(vendor_id::nat_t_draft_02_n)})
        m.payloads.push_back(VendorIdPayload{v});
    return m;
}
}  // namespace

TEST_CASE("Main Mode message 1 built like strongSwan's emits the expected bytes") {
    auto m = mm1_message();
    test::Bytes out;
    REQUIRE(m.emit(out));
    CHECK(test::to_hex(out) == test::to_hex(mm1_bytes()));
    CHECK(m.emitted_len().value() == 180);
    test::Bytes buf(200, 0xEE);
    auto n = m.emit(std::span<std::uint8_t>(buf));
    REQUIRE(n);
    CHECK(*n == 180);
    CHECK(std::equal(out.begin(), out.end(), buf.begin()));
    CHECK(buf[180] == 0xEE);  // nothing written past the message
}

TEST_CASE("Main Mode message 1 parses to its fields and re-emits byte-identical") {
    auto raw = mm1_bytes();
    auto m = parse(raw);
    REQUIRE(m);
    CHECK(m->header.next_payload == payload_type::sa);
    CHECK(m->header.exchange_type == exchange_type::main_mode);
    CHECK(m->header.responder_cookie == Cookie{});
    CHECK(m->header.length == 180);
    REQUIRE(m->payloads.size() == 6);
    const SaPayload* sa = m->find<SaPayload>();
    REQUIRE(sa);
    REQUIRE(sa->proposals.size() == 1);
    const Proposal& p = sa->proposals[0];
    CHECK(p.protocol_id == protocol_id::isakmp);
    CHECK(p.spi.empty());
    REQUIRE(p.transforms.size() == 1);
    const auto& attrs = p.transforms[0].attributes;
    CHECK(p.transforms[0].transform_id == transform_key_ike);
    CHECK(attrs.integer(phase1_attr::encryption) == phase1_encryption::aes_cbc);
    CHECK(attrs.integer(phase1_attr::key_length) == 128u);
    CHECK(attrs.integer(phase1_attr::group_description) == dh_group::modp_2048);
    CHECK(attrs.integer(phase1_attr::life_duration) == 15840u);
    auto vids = m->find_all<VendorIdPayload>();
    REQUIRE(vids.size() == 5);
    CHECK(vids[3]->data == bytes(vendor_id::nat_t_rfc3947));
    CHECK_FALSE(m->has_unknown());
    CHECK(m->payloads == mm1_message().payloads);  // header Length/Next Payload are computed by emit

    test::Bytes out;
    REQUIRE(m->emit(out));
    CHECK(out == raw);

    // SAi_b (RFC 2409 §5): the SA body without its generic header, as received.
    CHECK(test::to_hex(m->wire_body(0)) == test::to_hex(std::span(raw).subspan(32, 52)));
    CHECK(m->wire_payload(0).size() == 56);
    CHECK(test::to_hex(m->wire_body(5)) == test::to_hex(bytes(vendor_id::nat_t_draft_02_n)));
    CHECK(m->wire_body(6).empty());  // out of range
    // Our own SA emits to the same SAi_b.
    CHECK(emit_body(m->payloads[0].body).value() == test::Bytes(m->wire_body(0).begin(), m->wire_body(0).end()));

    for (std::size_t n = 0; n < raw.size(); ++n) {
        CAPTURE(n);
        CHECK_FALSE(parse(std::span(raw).first(n)));
    }
}

TEST_CASE("emit reports a short buffer and appends after existing bytes") {
    auto m = mm1_message();
    test::Bytes buf(180);
    for (std::size_t n = 0; n < 180; ++n) {
        CAPTURE(n);
        CHECK(m.emit(std::span(buf).first(n)).error() == Errc::BufferTooSmall);
    }
    test::Bytes out = {0, 0, 0, 0};  // non-ESP marker on port 4500 (RFC 3948 §2.2)
    REQUIRE(m.emit(out));
    CHECK(out.size() == 184);
    CHECK(test::Bytes(out.begin() + 4, out.end()) == mm1_bytes());
    // A failing append leaves the vector as it was.
    Message bad = m;
    bad.payloads.push_back(UnknownPayload{0, {}});
    CHECK(bad.emit(out).error() == Errc::InvalidArgument);
    CHECK(out.size() == 184);
}

TEST_CASE("an encrypted message keeps its ciphertext and re-emits it") {
    test::Bytes ct(48);
    for (std::size_t i = 0; i < ct.size(); ++i) ct[i] = static_cast<std::uint8_t>(0x80 + i);
    auto raw = "1122334455667788 99aabbccddeeff00 05 10 02 01 00000000 0000004c"_hex;
    raw.insert(raw.end(), ct.begin(), ct.end());
    auto m = parse(raw);
    REQUIRE(m);
    CHECK(m->header.encrypted());
    CHECK(m->header.next_payload == payload_type::id);
    CHECK(m->payloads.empty());
    CHECK(m->encrypted_body == ct);
    auto v = IsakmpHeaderView::check(std::span<const std::uint8_t>(raw));
    CHECK(test::to_hex(v->body()) == test::to_hex(ct));
    test::Bytes out;
    REQUIRE(m->emit(out));
    CHECK(out == raw);

    // Building the on-wire form from a header and ciphertext.
    Message built;
    built.header = m->header;
    built.header.length = 0;  // recomputed
    built.encrypted_body = ct;
    test::Bytes out2;
    REQUIRE(built.emit(out2));
    CHECK(out2 == raw);
}

TEST_CASE("a decrypted body parses with its padding ignored (RFC 2409 Appendix B)") {
    const auto cookies = "1122334455667788 99aabbccddeeff00"_hex;
    // MM5 plaintext: ID_FQDN, HASH_I, N(INITIAL-CONTACT), then 5 bytes of padding.
    auto id = "08 00 00 17 02 00 0000 636c692e6c61622e6578616d706c65"_hex;
    auto hash = "0b 00 00 18 000102030405060708090a0b0c0d0e0f10111213"_hex;
    auto n = "00 00 00 1c 00000001 01 10 6002"_hex;
    n.insert(n.end(), cookies.begin(), cookies.end());
    test::Bytes plain = id;
    plain.insert(plain.end(), hash.begin(), hash.end());
    plain.insert(plain.end(), n.begin(), n.end());
    REQUIRE(plain.size() == 75);

    IsakmpHeader h;
    std::copy_n(cookies.begin(), 8, h.initiator_cookie.begin());
    std::copy_n(cookies.begin() + 8, 8, h.responder_cookie.begin());
    h.next_payload = payload_type::id;
    h.exchange_type = exchange_type::main_mode;
    h.flags = header_flag::encryption;
    h.length = 28 + 80;

    for (std::uint8_t pad_byte : {std::uint8_t{0}, std::uint8_t{0x04}, std::uint8_t{0xA5}}) {
        CAPTURE(int(pad_byte));
        test::Bytes padded = plain;
        padded.resize(80, pad_byte);
        auto m = parse_decrypted(h, padded);
        REQUIRE(m);
        REQUIRE(m->payloads.size() == 3);
        CHECK(m->payloads[0].get<IdPayload>()->as_name() == "cli.lab.example");
        CHECK(m->payloads[2].get<NotifyPayload>()->notify_type == notify_type::initial_contact);
        CHECK(m->payloads[2].get<NotifyPayload>()->spi == cookies);
        // IDii_b: ID body without the generic header (RFC 2409 §5).
        CHECK(test::to_hex(m->wire_body(0)) == test::to_hex(std::span(id).subspan(4)));
        CHECK(m->wire.size() == 28 + 75);  // padding excluded
        CHECK(test::to_hex(m->wire_from(1)) == test::to_hex(std::span(plain).subspan(23)));
    }
    // The payload chain itself must still be sound.
    test::Bytes cut(plain.begin(), plain.begin() + 60);
    CHECK(parse_decrypted(h, cut).error() == Errc::PayloadPastEnd);
    // Re-emitting the payloads gives the unpadded plaintext.
    auto m = parse_decrypted(h, plain);
    REQUIRE(m);
    test::Bytes chain;
    REQUIRE(emit_payloads(m->payloads, chain));
    CHECK(chain == plain);
    CHECK(first_payload_type(m->payloads) == payload_type::id);
}

TEST_CASE("Quick Mode: wire_from(1) is the HASH(1) input and matches emit_payloads") {
    Message qm;
    qm.header.initiator_cookie = {1, 2, 3, 4, 5, 6, 7, 8};
    qm.header.responder_cookie = {9, 10, 11, 12, 13, 14, 15, 16};
    qm.header.exchange_type = exchange_type::quick_mode;
    qm.header.message_id = 0x01020304;
    Transform t{1, esp_transform::aes_gcm_16, {}};
    t.attributes.add(DataAttribute::basic(phase2_attr::key_length, 128))
        .add(DataAttribute::basic(phase2_attr::encapsulation_mode, encapsulation_mode::udp_tunnel))
        .add(DataAttribute::basic(phase2_attr::sa_life_type, life_type::seconds))
        .add(DataAttribute::integer(phase2_attr::sa_life_duration, 3960));
    qm.payloads = {HashPayload{test::Bytes(20, 0)},
                   SaPayload{doi::ipsec, situation::identity_only, {Proposal{1, protocol_id::ipsec_esp, "c0ffee01"_hex, {t}}}},
                   NoncePayload{test::Bytes(32, 0x42)},
                   IdPayload::ipv4_addr(core::Ipv4Address::from_octets(10, 99, 200, 2)),
                   IdPayload::ipv4_subnet(*core::Ipv4Prefix::parse("10.99.1.0/24"))};
    test::Bytes raw;
    REQUIRE(qm.emit(raw));
    auto m = parse(raw);
    REQUIRE(m);
    CHECK(m->payloads == qm.payloads);
    CHECK(m->header.message_id == qm.header.message_id);
    CHECK(m->header.next_payload == payload_type::hash);
    CHECK(m->index_of(payload_type::sa) == 1);
    CHECK(m->index_of(payload_type::ke) == 5);  // absent
    test::Bytes after_hash;
    REQUIRE(emit_payloads(std::span(qm.payloads).subspan(1), after_hash));
    CHECK(test::to_hex(m->wire_from(1)) == test::to_hex(after_hash));
    CHECK(m->wire_from(1).size() == raw.size() - 28 - 24);
    auto ids = m->find_all<IdPayload>();
    REQUIRE(ids.size() == 2);
    CHECK(ids[1]->as_ipv4_prefix() == core::Ipv4Prefix::parse("10.99.1.0/24"));
    // Locally built messages have no wire bytes.
    CHECK(qm.wire_body(0).empty());
    CHECK(qm.wire_from(0).empty());
}

TEST_CASE("unknown payload types are kept for the caller, or rejected on request") {
    // VID -> type 99 -> Proposal at top level (only valid inside an SA).
    auto raw = "1122334455667788 0000000000000000 0d 10 05 00 00000000 00000030"
               "63 00 00 08 01020304"
               "02 00 00 06 abcd"
               "00 00 00 06 0102"_hex;
    auto m = parse(raw);
    REQUIRE(m);
    REQUIRE(m->payloads.size() == 3);
    CHECK(m->has_unknown());
    REQUIRE(m->payloads[1].get<UnknownPayload>());
    CHECK(m->payloads[1].get<UnknownPayload>()->type == 99);
    CHECK(m->payloads[2].get<UnknownPayload>()->type == payload_type::proposal);
    test::Bytes out;
    REQUIRE(m->emit(out));
    CHECK(out == raw);
    auto strict = parse(raw, {.unknown = UnknownPayloads::Reject});
    CHECK(strict.error() == Errc::UnknownPayloadType);
}

TEST_CASE("plaintext messages reject trailing bytes and over-long chains") {
    // One empty VID and 4 more bytes inside Length.
    auto trailing = "1122334455667788 0000000000000000 0d 10 05 00 00000000 00000024 00 00 00 04 00000000"_hex;
    CHECK(parse(trailing).error() == Errc::TrailingData);
    // Length covers the VID but the VID claims more.
    auto overrun = "1122334455667788 0000000000000000 0d 10 05 00 00000000 00000020 00 00 00 08"_hex;
    CHECK(parse(overrun).error() == Errc::PayloadPastEnd);

    auto many = [](std::size_t n) {
        Message m;
        m.header.exchange_type = exchange_type::informational;
        for (std::size_t i = 0; i < n; ++i) m.payloads.push_back(VendorIdPayload{});
        test::Bytes out;
        REQUIRE(m.emit(out));
        return out;
    };
    CHECK(parse(many(64)));
    CHECK(parse(many(65)).error() == Errc::TooManyPayloads);
    CHECK(parse(many(65), {.max_payloads = 65}));
}

TEST_CASE("protected informationals: DPD R-U-THERE and Delete round-trip") {
    Message dpd;
    dpd.header.initiator_cookie = {1, 2, 3, 4, 5, 6, 7, 8};
    dpd.header.responder_cookie = {8, 7, 6, 5, 4, 3, 2, 1};
    dpd.header.exchange_type = exchange_type::informational;
    dpd.header.message_id = 0xcafef00d;
    auto spi = dpd.header.cookies();
    dpd.payloads = {HashPayload{test::Bytes(20, 0x11)},
                    NotifyPayload{doi::ipsec, protocol_id::isakmp, notify_type::r_u_there,
                                  test::Bytes(spi.begin(), spi.end()), "7fffffff"_hex}};
    Message del = dpd;
    del.payloads = {HashPayload{test::Bytes(20, 0x22)},
                    DeletePayload{doi::ipsec, protocol_id::ipsec_esp, 4, {"c1c2c3c4"_hex}}};
    for (const Message* m : {&dpd, &del}) {
        test::Bytes raw;
        REQUIRE(m->emit(raw));
        auto back = parse(raw);
        REQUIRE(back);
        CHECK(back->payloads == m->payloads);
        CHECK(back->header.cookies() == m->header.cookies());
        CHECK(back->payloads.front().type() == payload_type::hash);  // HASH first (RFC 2409 §5.7)
        CHECK(back->wire_from(1).size() == back->payloads[1].wire.len);
    }
}
