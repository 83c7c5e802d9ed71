// SPDX-License-Identifier: MIT
// The smoltcp set for every payload body: fixed bytes (one payload with its generic header,
// Next Payload 0) parse to the expected value; the value emits to the same bytes; every
// truncation is rejected; and bodies inconsistent with themselves are rejected with a reason.
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
const core::Ipv4Address vip = core::Ipv4Address::from_octets(10, 99, 200, 2);

test::Bytes cookies() { return "1122334455667788 99aabbccddeeff00"_hex; }

test::Bytes cat(test::Bytes a, const test::Bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

struct Row {
    const char* name;
    std::uint8_t type;
    test::Bytes bytes;
    PayloadBody value;
};

std::vector<Row> rows() {
    std::vector<Row> r;
    // strongSwan's Main Mode SA: one proposal, one KEY_IKE transform, TV attributes in its order.
    r.push_back({"SA phase 1", payload_type::sa,
                 "00 00 00 38 00000001 00000001"
                 " 00 00 00 2c 01 01 00 01"
                 "  00 00 00 24 01 01 0000"
                 "   8001 0007 800e 0080 8002 0002 8004 000e 8003 0001 800b 0001 800c 3de0"_hex,
                 SaPayload{doi::ipsec, situation::identity_only,
                           {Proposal{1, protocol_id::isakmp, {},
                                     {Transform{1, transform_key_ike,
                                                {DataAttribute::basic(phase1_attr::encryption, phase1_encryption::aes_cbc),
                                                 DataAttribute::basic(phase1_attr::key_length, 128),
                                                 DataAttribute::basic(phase1_attr::hash, phase1_hash::sha1),
                                                 DataAttribute::basic(phase1_attr::group_description, dh_group::modp_2048),
                                                 DataAttribute::basic(phase1_attr::auth_method, auth_method::pre_shared_key),
                                                 DataAttribute::basic(phase1_attr::life_type, life_type::seconds),
                                                 DataAttribute::basic(phase1_attr::life_duration, 15840)}}}}}}});
    // Quick Mode ESP proposal: SPI, AES-GCM-16 then AES-CBC/HMAC-SHA1, TLV life duration.
    r.push_back({"SA phase 2", payload_type::sa,
                 "00 00 00 50 00000001 00000001"
                 " 00 00 00 44 01 03 04 02 c1c2c3c4"
                 "  03 00 00 1c 01 14 0000 8006 0080 8004 0003 8001 0001 0002 0004 00015180"
                 "  00 00 00 1c 02 0c 0000 8006 0080 8005 0002 8004 0003 8001 0001 8002 0f78"_hex,
                 SaPayload{doi::ipsec, situation::identity_only,
                           {Proposal{1, protocol_id::ipsec_esp, "c1c2c3c4"_hex,
                                     {Transform{1, esp_transform::aes_gcm_16,
                                                {DataAttribute::basic(phase2_attr::key_length, 128),
                                                 DataAttribute::basic(phase2_attr::encapsulation_mode, encapsulation_mode::udp_tunnel),
                                                 DataAttribute::basic(phase2_attr::sa_life_type, life_type::seconds),
                                                 DataAttribute::integer(phase2_attr::sa_life_duration, 86400)}},
                                      Transform{2, esp_transform::aes_cbc,
                                                {DataAttribute::basic(phase2_attr::key_length, 128),
                                                 DataAttribute::basic(phase2_attr::auth_algorithm, auth_algorithm::hmac_sha1),
                                                 DataAttribute::basic(phase2_attr::encapsulation_mode, encapsulation_mode::udp_tunnel),
                                                 DataAttribute::basic(phase2_attr::sa_life_type, life_type::seconds),
                                                 DataAttribute::basic(phase2_attr::sa_life_duration, 3960)}}}}}}});
    // Two proposals (Next Payload 2 then 0), each with one attribute-less transform.
    r.push_back({"SA two proposals", payload_type::sa,
                 "00 00 00 34 00000001 00000001"
                 " 02 00 00 14 01 03 04 01 aabbccdd  00 00 00 08 01 0c 0000"
                 " 00 00 00 14 02 03 04 01 11223344  00 00 00 08 01 03 0000"_hex,
                 SaPayload{doi::ipsec, situation::identity_only,
                           {Proposal{1, protocol_id::ipsec_esp, "aabbccdd"_hex, {Transform{1, esp_transform::aes_cbc, {}}}},
                            Proposal{2, protocol_id::ipsec_esp, "11223344"_hex, {Transform{1, esp_transform::triple_des, {}}}}}}});
    r.push_back({"KE", payload_type::ke, "00 00 00 0c 0001020304050607"_hex, KePayload{"0001020304050607"_hex}});
    r.push_back({"ID_IPV4_ADDR", payload_type::id, "00 00 00 0c 01 00 0000 0a63c802"_hex, IdPayload::ipv4_addr(vip)});
    r.push_back({"ID_IPV4_ADDR 17/500", payload_type::id, "00 00 00 0c 01 11 01f4 c0000201"_hex,
                 IdPayload::ipv4_addr(core::Ipv4Address::from_octets(192, 0, 2, 1), 17, 500)});
    r.push_back({"ID_IPV4_ADDR_SUBNET", payload_type::id, "00 00 00 10 04 00 0000 0a630100 ffffff00"_hex,
                 IdPayload::ipv4_subnet(*core::Ipv4Prefix::parse("10.99.1.0/24"))});
    r.push_back({"ID_IPV4_ADDR_RANGE", payload_type::id, "00 00 00 10 07 00 0000 0a630105 0a630109"_hex,
                 IdPayload::ipv4_range(core::Ipv4Address::from_octets(10, 99, 1, 5), core::Ipv4Address::from_octets(10, 99, 1, 9))});
    r.push_back({"ID_FQDN", payload_type::id, "00 00 00 17 02 00 0000 636c692e6c61622e6578616d706c65"_hex,
                 IdPayload::fqdn("cli.lab.example")});
    r.push_back({"HASH", payload_type::hash, "00 00 00 18 000102030405060708090a0b0c0d0e0f10111213"_hex,
                 HashPayload{"000102030405060708090a0b0c0d0e0f10111213"_hex}});
    r.push_back({"NONCE", payload_type::nonce, "00 00 00 0c 5a5a5a5a a5a5a5a5"_hex, NoncePayload{"5a5a5a5aa5a5a5a5"_hex}});
    r.push_back({"N INITIAL-CONTACT", payload_type::notification,
                 cat("00 00 00 1c 00000001 01 10 6002"_hex, cookies()),
                 NotifyPayload{doi::ipsec, protocol_id::isakmp, notify_type::initial_contact, cookies(), {}}});
    r.push_back({"N R-U-THERE", payload_type::notification,
                 cat(cat("00 00 00 20 00000001 01 10 8d28"_hex, cookies()), "00001234"_hex),
                 NotifyPayload{doi::ipsec, protocol_id::isakmp, notify_type::r_u_there, cookies(), "00001234"_hex}});
    r.push_back({"N NO-PROPOSAL-CHOSEN", payload_type::notification, "00 00 00 0c 00000001 01 00 000e"_hex,
                 NotifyPayload{doi::ipsec, protocol_id::isakmp, notify_type::no_proposal_chosen, {}, {}}});
    r.push_back({"D ESP", payload_type::deletion, "00 00 00 10 00000001 03 04 0001 c1c2c3c4"_hex,
                 DeletePayload{doi::ipsec, protocol_id::ipsec_esp, 4, {"c1c2c3c4"_hex}}});
    r.push_back({"D ESP x2", payload_type::deletion, "00 00 00 14 00000001 03 04 0002 c1c2c3c4 d1d2d3d4"_hex,
                 DeletePayload{doi::ipsec, protocol_id::ipsec_esp, 4, {"c1c2c3c4"_hex, "d1d2d3d4"_hex}}});
    r.push_back({"D ISAKMP", payload_type::deletion, cat("00 00 00 1c 00000001 01 10 0001"_hex, cookies()),
                 DeletePayload{doi::ipsec, protocol_id::isakmp, 16, {cookies()}}});
    r.push_back({"VID DPD", payload_type::vendor_id, "00 00 00 14 afcad71368a1f1c96b8696fc77570100"_hex,
                 VendorIdPayload{test::Bytes(vendor_id::dpd.begin(), vendor_id::dpd.end())}});
    r.push_back({"NAT-D", payload_type::nat_d, "00 00 00 18 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00010203"_hex,
                 NatDPayload{"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00010203"_hex, false}});
    r.push_back({"NAT-D draft (130)", payload_type::nat_d_draft, "00 00 00 18 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00010203"_hex,
                 NatDPayload{"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00010203"_hex, true}});
    r.push_back({"NAT-OA", payload_type::nat_oa, "00 00 00 0c 01 00 0000 c0a80102"_hex,
                 NatOaPayload::ipv4(core::Ipv4Address::from_octets(192, 168, 1, 2))});
    r.push_back({"NAT-OA draft (131)", payload_type::nat_oa_draft, "00 00 00 0c 01 00 0000 c0a80102"_hex,
                 NatOaPayload::ipv4(core::Ipv4Address::from_octets(192, 168, 1, 2), true)});
    r.push_back({"NAT-OA IPv6", payload_type::nat_oa, "00 00 00 18 05 00 0000 20010db8000000000000000000000001"_hex,
                 NatOaPayload{id_type::ipv6_addr, "20010db8000000000000000000000001"_hex, false}});
    r.push_back({"ATTR CFG_REQUEST", payload_type::attribute, "00 00 00 0c 01 00 0000 0001 0000"_hex,
                 AttributePayload{cfg_type::request, 0, {DataAttribute::variable(cfg_attr::internal_ip4_address, {})}}});
    r.push_back({"ATTR CFG_REPLY", payload_type::attribute, "00 00 00 10 02 00 0000 0001 0004 0a636401"_hex,
                 AttributePayload{cfg_type::reply, 0, {DataAttribute::variable(cfg_attr::internal_ip4_address, "0a636401"_hex)}}});
    r.push_back({"ATTR CFG_SET TV+TLV", payload_type::attribute, "00 00 00 14 03 00 1234 8005 0e10 0002 0004 ffffff00"_hex,
                 AttributePayload{cfg_type::set, 0x1234,
                                  {DataAttribute::basic(cfg_attr::internal_address_expiry, 3600),
                                   DataAttribute::variable(cfg_attr::internal_ip4_netmask, "ffffff00"_hex)}}});
    r.push_back({"CERT kept as unknown", payload_type::cert, "00 00 00 08 04 deadbe"_hex,
                 UnknownPayload{payload_type::cert, "04deadbe"_hex}});
    r.push_back({"type 99 kept as unknown", 99, "00 00 00 05 42"_hex, UnknownPayload{99, "42"_hex}});
    r.push_back({"empty VID", payload_type::vendor_id, "00 00 00 04"_hex, VendorIdPayload{}});
    return r;
}
}  // namespace

TEST_CASE("every payload: fixed bytes parse to the expected value") {
    for (const auto& row : rows()) {
        CAPTURE(row.name);
        auto p = parse_payloads(row.bytes, row.type);
        REQUIRE(p);
        REQUIRE(p->size() == 1);
        CHECK((*p)[0].body == row.value);
        CHECK((*p)[0].type() == row.type);
        CHECK((*p)[0].wire == WireRange{0, row.bytes.size()});
        // The body alone decodes to the same value.
        auto body = parse_body(row.type, std::span(row.bytes).subspan(4));
        REQUIRE(body);
        CHECK(*body == row.value);
    }
}

TEST_CASE("every payload: the value emits the fixed bytes") {
    for (const auto& row : rows()) {
        CAPTURE(row.name);
        CHECK(payload_type_of(row.value) == row.type);
        test::Bytes out;
        const Payload one[] = {row.value};
        REQUIRE(emit_payloads(one, out));
        CHECK(test::to_hex(out) == test::to_hex(row.bytes));
        auto body = emit_body(row.value);
        REQUIRE(body);
        CHECK(test::to_hex(*body) == test::to_hex(std::span(row.bytes).subspan(4)));
    }
}

TEST_CASE("every payload: each truncation is rejected") {
    for (const auto& row : rows()) {
        CAPTURE(row.name);
        for (std::size_t n = 0; n < row.bytes.size(); ++n) {
            CAPTURE(n);
            CHECK_FALSE(parse_payloads(std::span(row.bytes).first(n), row.type));
        }
    }
}

TEST_CASE("every payload: parse -> emit -> parse round-trips") {
    for (const auto& row : rows()) {
        CAPTURE(row.name);
        auto p = parse_payloads(row.bytes, row.type);
        REQUIRE(p);
        test::Bytes out;
        REQUIRE(emit_payloads(*p, out));
        CHECK(out == row.bytes);
        auto again = parse_payloads(out, row.type);
        REQUIRE(again);
        CHECK(*again == *p);
    }
}

TEST_CASE("payload bodies inconsistent with themselves are rejected with a reason") {
    struct Bad {
        const char* name;
        std::uint8_t type;
        test::Bytes bytes;
        Errc want;
    };
    const Bad bad[] = {
        {"SA body shorter than DOI+situation", payload_type::sa, "00 00 00 0b 00000001 000000"_hex, Errc::InvalidLength},
        {"SA secrecy situation", payload_type::sa, "00 00 00 0c 00000001 00000002"_hex, Errc::UnsupportedSituation},
        {"proposal Next Payload 5", payload_type::sa,
         "00 00 00 1c 00000001 00000001 05 00 00 10 01 01 00 01 00 00 00 08 01 01 0000"_hex, Errc::InvalidNextPayload},
        {"transform Next Payload 2", payload_type::sa,
         "00 00 00 1c 00000001 00000001 00 00 00 10 01 01 00 01 02 00 00 08 01 01 0000"_hex, Errc::InvalidNextPayload},
        {"# transforms 2 with one present", payload_type::sa,
         "00 00 00 1c 00000001 00000001 00 00 00 10 01 01 00 02 00 00 00 08 01 01 0000"_hex, Errc::Malformed},
        {"# transforms 0 with one present", payload_type::sa,
         "00 00 00 1c 00000001 00000001 00 00 00 10 01 01 00 00 00 00 00 08 01 01 0000"_hex, Errc::Malformed},
        {"proposal SPI size past its end", payload_type::sa,
         "00 00 00 14 00000001 00000001 00 00 00 08 01 03 08 00"_hex, Errc::Malformed},
        {"bytes after the last proposal", payload_type::sa,
         "00 00 00 20 00000001 00000001 00 00 00 10 01 01 00 01 00 00 00 08 01 01 0000 00000000"_hex, Errc::Malformed},
        {"proposal length 3", payload_type::sa, "00 00 00 10 00000001 00000001 00 00 00 03"_hex, Errc::InvalidLength},
        {"proposal body below 4", payload_type::sa, "00 00 00 13 00000001 00000001 00 00 00 07 01 01 00"_hex,
         Errc::InvalidLength},
        {"proposal past the SA", payload_type::sa, "00 00 00 14 00000001 00000001 00 00 00 10 01 01 00 00"_hex,
         Errc::PayloadPastEnd},
        {"transform body below 4", payload_type::sa,
         "00 00 00 1b 00000001 00000001 00 00 00 0f 01 01 00 01 00 00 00 07 01 01 00"_hex, Errc::InvalidLength},
        {"attribute overruns its transform", payload_type::sa,
         "00 00 00 20 00000001 00000001 00 00 00 14 01 01 00 01 00 00 00 0c 01 01 0000 000c 0004"_hex, Errc::Malformed},
        {"ID body below 4", payload_type::id, "00 00 00 07 01 00 00"_hex, Errc::InvalidLength},
        {"N body below 8", payload_type::notification, "00 00 00 0b 00000001 01 00 00"_hex, Errc::InvalidLength},
        {"N SPI size past the end", payload_type::notification, "00 00 00 10 00000001 01 10 6002 11223344"_hex,
         Errc::Malformed},
        {"D body below 8", payload_type::deletion, "00 00 00 0b 00000001 03 04 00"_hex, Errc::InvalidLength},
        {"D fewer SPI bytes than # SPIs", payload_type::deletion, "00 00 00 10 00000001 03 04 0002 c1c2c3c4"_hex,
         Errc::Malformed},
        {"D more SPI bytes than # SPIs", payload_type::deletion, "00 00 00 14 00000001 03 04 0001 c1c2c3c4 d1d2d3d4"_hex,
         Errc::Malformed},
        {"D zero-size SPIs", payload_type::deletion, "00 00 00 0c 00000001 03 00 0005"_hex, Errc::Malformed},
        {"NAT-OA body below 4", payload_type::nat_oa, "00 00 00 07 01 00 00"_hex, Errc::InvalidLength},
        {"NAT-OA IPv4 with 3 bytes", payload_type::nat_oa, "00 00 00 0b 01 00 0000 c0a801"_hex, Errc::Malformed},
        {"NAT-OA ID type FQDN", payload_type::nat_oa, "00 00 00 0c 02 00 0000 61626364"_hex, Errc::Malformed},
        {"ATTR body below 4", payload_type::attribute, "00 00 00 07 01 00 00"_hex, Errc::InvalidLength},
        {"ATTR attribute cut", payload_type::attribute, "00 00 00 0e 02 00 0000 0001 0004 0a63"_hex, Errc::Malformed},
    };
    for (const auto& b : bad) {
        CAPTURE(b.name);
        auto p = parse_payloads(b.bytes, b.type);
        REQUIRE_FALSE(p);
        CHECK(p.error() == make_error_code(b.want));
    }
}

TEST_CASE("ID helpers read back typed values and refuse the wrong type") {
    auto a = IdPayload::ipv4_addr(vip);
    CHECK(a.as_ipv4_addr() == vip);
    CHECK_FALSE(a.as_ipv4_subnet());
    CHECK_FALSE(a.as_name());
    auto s = IdPayload::ipv4_subnet(*core::Ipv4Prefix::parse("10.99.1.77/24"));
    REQUIRE(s.as_ipv4_subnet());
    CHECK(s.as_ipv4_subnet()->address == core::Ipv4Address::from_octets(10, 99, 1, 0));  // network, host bits cleared
    CHECK(s.as_ipv4_subnet()->mask == core::Ipv4Address::from_octets(255, 255, 255, 0));
    CHECK(s.as_ipv4_prefix() == core::Ipv4Prefix::parse("10.99.1.0/24"));
    auto any = IdPayload::ipv4_subnet(core::Ipv4Address{}, core::Ipv4Address{});
    CHECK(any.as_ipv4_prefix() == core::Ipv4Prefix::parse("0.0.0.0/0"));
    auto odd = IdPayload::ipv4_subnet(core::Ipv4Address{}, core::Ipv4Address::from_octets(255, 0, 255, 0));
    CHECK(odd.as_ipv4_subnet());
    CHECK_FALSE(odd.as_ipv4_prefix());  // non-contiguous mask
    auto r = IdPayload::ipv4_range(core::Ipv4Address::from_octets(10, 0, 0, 1), core::Ipv4Address::from_octets(10, 0, 0, 9));
    REQUIRE(r.as_ipv4_range());
    CHECK(r.as_ipv4_range()->end == core::Ipv4Address::from_octets(10, 0, 0, 9));
    CHECK(IdPayload::fqdn("gw.lab.example").as_name() == "gw.lab.example");
    CHECK(IdPayload::user_fqdn("a@b").id_type == id_type::user_fqdn);
    IdPayload wrong_len{id_type::ipv4_addr, 0, 0, "0a0000"_hex};
    CHECK_FALSE(wrong_len.as_ipv4_addr());
    CHECK(NatOaPayload::ipv4(vip).as_ipv4() == vip);
}

TEST_CASE("payload emit rejects values that do not fit their fields") {
    struct Bad {
        const char* name;
        PayloadBody value;
    };
    const Bad bad[] = {
        {"delete SPI of the wrong size", DeletePayload{doi::ipsec, protocol_id::ipsec_esp, 4, {"c1c2c3"_hex}}},
        {"proposal SPI over 255 bytes", SaPayload{doi::ipsec, situation::identity_only, {Proposal{1, 3, test::Bytes(256, 0), {}}}}},
        {"notify SPI over 255 bytes", NotifyPayload{doi::ipsec, 1, 1, test::Bytes(256, 0), {}}},
        {"unknown payload type 0", UnknownPayload{0, {}}},
        {"TV attribute with 3 bytes", AttributePayload{cfg_type::set, 0, {DataAttribute{5, true, "010203"_hex}}}},
    };
    for (const auto& b : bad) {
        CAPTURE(b.name);
        CHECK(emit_body(b.value).error() == Errc::InvalidArgument);
    }
    // A payload longer than the 16-bit Payload Length.
    const Payload huge[] = {KePayload{test::Bytes(0xFFFC, 0)}};
    test::Bytes out;
    CHECK(emit_payloads(huge, out).error() == Errc::InvalidArgument);
    CHECK(out.empty());
    const Payload fits[] = {KePayload{test::Bytes(0xFFFB, 0)}};
    CHECK(emit_payloads(fits, out));
    CHECK(out.size() == 0xFFFF);
}
