// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <string>

#include "crypto/mac.hpp"
#include "mip/registration_wire.hpp"
#include "tests/mip/mip_test_support.hpp"
#include "tests/support/hex.hpp"
#include "tests/support/vectors.hpp"

using namespace mipsec;
using namespace mipsec::test::literals;
using test::ip;
using test::to_hex;

namespace {

// RFC 5944 §3.3: D,T set, lifetime 600, no extensions.
const auto request_bytes = "01 22 02 58 0a 01 00 4d 0a 01 00 01 c0 a8 01 17 e7 a1 b2 c3 00 00 00 01"_hex;
// RFC 5944 §3.4: code 133, lifetime 0.
const auto reply_bytes = "03 85 00 00 0a 01 00 4d 0a 01 00 01 e7 a1 b2 c4 00 00 00 01"_hex;

mip::RegistrationRequest example_request() {
    return {0x22, 600, ip("10.1.0.77"), ip("10.1.0.1"), ip("192.168.1.23"), 0xe7a1b2c300000001u};
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Worked example (vectors/mipv4_registration_worked_example.json), byte for byte.

TEST_CASE("worked example: registration request with UDP Tunnel Request and MHAE (RFC 5944 §3.5.1)") {
    const auto v = test::load_vectors("mipv4_registration_worked_example.json");
    const auto key = test::from_hex(v["mn_ha_key"].get<std::string>());
    const auto spi = v["spi"].get<std::uint32_t>();
    const auto& rq = v["registration_request"];

    mip::RegistrationRequest r;
    r.flags = static_cast<std::uint8_t>(std::stoul(rq["flags_hex"].get<std::string>(), nullptr, 16));
    r.lifetime = rq["lifetime"].get<std::uint16_t>();
    r.home_address = ip(rq["home_address"].get<std::string>().c_str());
    r.home_agent = ip(rq["home_agent"].get<std::string>().c_str());
    r.care_of_address = ip(rq["care_of_address"].get<std::string>().c_str());
    r.identification = std::stoull(rq["identification"].get<std::string>(), nullptr, 16);

    const auto tunnel_bytes = test::from_hex(rq["udp_tunnel_request_ext"].get<std::string>());
    auto tunnel_view = mip::UdpTunnelRequestView::check(tunnel_bytes);
    REQUIRE(tunnel_view);
    mip::RequestExtensions ext;
    ext.udp_tunnel = mip::UdpTunnelRequest::parse(*tunnel_view);
    CHECK(ext.udp_tunnel->encapsulation == 4);

    auto built = mip::build_request(r, ext, {spi, key});
    REQUIRE(built);
    CHECK(built->len == rq["udp_payload_len"].get<std::size_t>());
    CHECK(to_hex(built->bytes()) == rq["udp_payload"].get<std::string>());

    // The covered span is exactly what the vector lists, and the authenticator matches.
    mip::ScannedExtensions scanned;
    REQUIRE_FALSE(mip::scan_extensions(built->bytes(), mip::RegistrationRequest::len, mip::MessageKind::Request, scanned));
    REQUIRE(scanned.mobile_home_auth);
    CHECK(scanned.mobile_home_auth->spi == spi);
    CHECK(to_hex(mip::authenticated_bytes(built->bytes(), scanned.mobile_home_auth->offset)) ==
          rq["authenticated_bytes"].get<std::string>());
    CHECK(to_hex(scanned.mobile_home_auth->authenticator) == rq["authenticator"].get<std::string>());
    CHECK(mip::verify_authenticator(built->bytes(), *scanned.mobile_home_auth, key));
    CHECK(scanned.udp_tunnel_request_before_mhae);

    // Any one-byte change in the covered part breaks verification.
    for (std::size_t i = 0; i < scanned.mobile_home_auth->offset + 6; ++i) {
        CAPTURE(i);
        auto tampered = test::Bytes(built->bytes().begin(), built->bytes().end());
        tampered[i] ^= 0x01;
        mip::ScannedExtensions s2;
        if (mip::scan_extensions(tampered, mip::RegistrationRequest::len, mip::MessageKind::Request, s2) ||
            !s2.mobile_home_auth)
            continue;  // the change broke the structure, which is also a rejection
        CHECK_FALSE(mip::verify_authenticator(tampered, *s2.mobile_home_auth, key));
    }
}

TEST_CASE("worked example: registration reply with UDP Tunnel Reply and MHAE") {
    const auto v = test::load_vectors("mipv4_registration_worked_example.json");
    const auto key = test::from_hex(v["mn_ha_key"].get<std::string>());
    const auto spi = v["spi"].get<std::uint32_t>();
    const auto& rp = v["registration_reply"];
    const auto& rq = v["registration_request"];

    mip::RegistrationReply r;
    r.code = rp["code"].get<std::uint8_t>();
    r.lifetime = rp["lifetime"].get<std::uint16_t>();
    r.home_address = ip(rq["home_address"].get<std::string>().c_str());
    r.home_agent = ip(rq["home_agent"].get<std::string>().c_str());
    r.identification = std::stoull(rp["identification"].get<std::string>(), nullptr, 16);
    const auto tunnel_bytes = test::from_hex(rp["udp_tunnel_reply_ext"].get<std::string>());
    auto tr = mip::UdpTunnelReplyView::check(tunnel_bytes);
    REQUIRE(tr);
    mip::ReplyExtensions ext;
    ext.udp_tunnel = mip::UdpTunnelReply::parse(*tr);
    CHECK(ext.udp_tunnel->keepalive_interval == 110);
    CHECK(ext.udp_tunnel->assents());

    auto built = mip::build_reply(r, ext, {spi, key});
    REQUIRE(built);
    CHECK(to_hex(built->bytes()) == rp["udp_payload"].get<std::string>());
    mip::ScannedExtensions scanned;
    REQUIRE_FALSE(mip::scan_extensions(built->bytes(), mip::RegistrationReply::len, mip::MessageKind::Reply, scanned));
    REQUIRE(scanned.mobile_home_auth);
    CHECK(to_hex(mip::authenticated_bytes(built->bytes(), scanned.mobile_home_auth->offset)) ==
          rp["authenticated_bytes"].get<std::string>());
    CHECK(to_hex(scanned.mobile_home_auth->authenticator) == rp["authenticator"].get<std::string>());
    CHECK(mip::verify_authenticator(built->bytes(), *scanned.mobile_home_auth, key));
    CHECK_FALSE(mip::verify_authenticator(built->bytes(), *scanned.mobile_home_auth, "00"_hex));
}

TEST_CASE("an MHAE built and verified with a re-keyed context equals one without") {
    // The home agent keeps one HMAC-MD5 context and re-keys it per mobile node; the result
    // must not depend on which key the context held before.
    const auto v = test::load_vectors("mipv4_registration_worked_example.json");
    const auto key_a = test::from_hex(v["mn_ha_key"].get<std::string>());
    const auto key_b = "000102030405060708090a0b0c0d0e0f"_hex;
    auto context = crypto::Mac::create(crypto::MacAlgorithm::HmacMd5, key_b);
    REQUIRE(context);
    const auto covered = "0102030405060708090a"_hex;
    for (const auto& key : {key_a, key_b, key_a}) {
        std::array<std::uint8_t, mip::hmac_md5_len> fresh{}, reused{};
        REQUIRE(mip::compute_authenticator(key, covered, fresh));
        REQUIRE(mip::compute_authenticator(key, covered, reused, context->get()));
        CHECK(fresh == reused);
    }
    // A non-MD5 context is refused rather than producing a wrong-length or wrong-algorithm tag.
    auto sha1 = crypto::Mac::create(crypto::MacAlgorithm::HmacSha1, key_a);
    REQUIRE(sha1);
    std::array<std::uint8_t, mip::hmac_md5_len> out{};
    CHECK_FALSE(mip::compute_authenticator(key_a, covered, out, sha1->get()));
}

TEST_CASE("worked example: MIP Tunnel Data header (RFC 3519 §3.3)") {
    const auto v = test::load_vectors("mipv4_registration_worked_example.json");
    const auto& td = v["tunnel_data_message_example"];
    const auto payload = test::from_hex(td["udp_payload"].get<std::string>());
    auto view = mip::TunnelDataView::check(payload);
    REQUIRE(view);
    CHECK(view->next_header() == 4);
    CHECK(view->reserved() == 0);
    CHECK(to_hex(view->payload()) == td["inner_ipv4_packet"].get<std::string>());
    test::Bytes out(4);
    mip::TunnelDataHeader::parse(*view).emit(out);
    CHECK(to_hex(out) == td["mip_tunnel_data_header"].get<std::string>());
}

// ---------------------------------------------------------------------------------------------
// Registration Request view: the smoltcp set.

TEST_CASE("request view reads every field") {
    auto v = mip::RegistrationRequestView::check(request_bytes);
    REQUIRE(v);
    CHECK(v->type() == 1);
    CHECK(v->flags() == 0x22);
    CHECK(v->decapsulation_by_mn());
    CHECK(v->reverse_tunnel());
    CHECK_FALSE(v->simultaneous_bindings());
    CHECK_FALSE(v->broadcast());
    CHECK_FALSE(v->minimal_encapsulation());
    CHECK_FALSE(v->gre());
    CHECK(v->lifetime() == 600);
    CHECK(v->home_address() == ip("10.1.0.77"));
    CHECK(v->home_agent() == ip("10.1.0.1"));
    CHECK(v->care_of_address() == ip("192.168.1.23"));
    CHECK(v->identification() == 0xe7a1b2c300000001u);
    CHECK(v->extensions().empty());
}

TEST_CASE("request view setters write the fixed bytes") {
    test::Bytes out(24, 0);
    auto v = mip::RegistrationRequestMutView::check([&] { out[0] = 1; return std::span(out); }());
    REQUIRE(v);
    v->set_flags(0x22);
    v->set_lifetime(600);
    v->set_home_address(ip("10.1.0.77"));
    v->set_home_agent(ip("10.1.0.1"));
    v->set_care_of_address(ip("192.168.1.23"));
    v->set_identification(0xe7a1b2c300000001u);
    CHECK(to_hex(out) == to_hex(request_bytes));
}

TEST_CASE("request view rejects every truncation and a wrong type") {
    for (std::size_t len = 0; len < request_bytes.size(); ++len) {
        CAPTURE(len);
        CHECK_FALSE(mip::RegistrationRequestView::check(std::span(request_bytes).first(len)));
    }
    auto wrong = request_bytes;
    wrong[0] = 3;
    CHECK_FALSE(mip::RegistrationRequestView::check(wrong));
}

TEST_CASE("request struct: parse, emit, round-trip") {
    const auto parsed = mip::RegistrationRequest::parse(*mip::RegistrationRequestView::check(request_bytes));
    CHECK(parsed == example_request());
    test::Bytes out(24);
    example_request().emit(out);
    CHECK(to_hex(out) == to_hex(request_bytes));
    CHECK(mip::RegistrationRequest::parse(*mip::RegistrationRequestView::check(out)) == parsed);
}

// ---------------------------------------------------------------------------------------------
// Registration Reply view.

TEST_CASE("reply view: read, write, truncations, round-trip") {
    auto v = mip::RegistrationReplyView::check(reply_bytes);
    REQUIRE(v);
    CHECK(v->code() == 133);
    CHECK(v->lifetime() == 0);
    CHECK(v->home_address() == ip("10.1.0.77"));
    CHECK(v->home_agent() == ip("10.1.0.1"));
    CHECK(v->identification() == 0xe7a1b2c400000001u);

    test::Bytes out(20, 0);
    out[0] = 3;
    auto m = mip::RegistrationReplyMutView::check(out);
    REQUIRE(m);
    m->set_code(133);
    m->set_lifetime(0);
    m->set_home_address(ip("10.1.0.77"));
    m->set_home_agent(ip("10.1.0.1"));
    m->set_identification(0xe7a1b2c400000001u);
    CHECK(to_hex(out) == to_hex(reply_bytes));

    for (std::size_t len = 0; len < reply_bytes.size(); ++len) {
        CAPTURE(len);
        CHECK_FALSE(mip::RegistrationReplyView::check(std::span(reply_bytes).first(len)));
    }
    const auto s = mip::RegistrationReply::parse(*v);
    CHECK(s == mip::RegistrationReply{133, 0, ip("10.1.0.77"), ip("10.1.0.1"), 0xe7a1b2c400000001u});
    test::Bytes again(20);
    s.emit(again);
    CHECK(to_hex(again) == to_hex(reply_bytes));
}

// ---------------------------------------------------------------------------------------------
// Extensions.

TEST_CASE("UDP Tunnel Request view and struct (RFC 3519 §3.1)") {
    const auto bytes = "90 06 00 00 c0 04 00 00"_hex;
    auto v = mip::UdpTunnelRequestView::check(bytes);
    REQUIRE(v);
    CHECK(v->sub_type() == 0);
    CHECK(v->force());
    CHECK(v->registered_via_fa());
    CHECK(v->encapsulation() == 4);
    CHECK(v->reserved3_valid());
    const auto s = mip::UdpTunnelRequest::parse(*v);
    CHECK(s == mip::UdpTunnelRequest{true, true, 4});
    test::Bytes out(8, 0xEE);
    s.emit(out);
    CHECK(to_hex(out) == to_hex(bytes));
    for (std::size_t len = 0; len < bytes.size(); ++len) {
        CAPTURE(len);
        CHECK_FALSE(mip::UdpTunnelRequestView::check(std::span(bytes).first(len)));
    }
    auto wrong_len = bytes;
    wrong_len[1] = 7;
    CHECK_FALSE(mip::UdpTunnelRequestView::check(wrong_len));
    auto reserved = bytes;
    auto mv = mip::UdpTunnelRequestMutView::check(reserved);
    mv->set_reserved3(1);
    CHECK_FALSE(mip::UdpTunnelRequestView::check(reserved)->reserved3_valid());
}

TEST_CASE("UDP Tunnel Reply view and struct (RFC 3519 §3.2)") {
    const auto bytes = "2c 06 00 40 80 00 00 3c"_hex;
    auto v = mip::UdpTunnelReplyView::check(bytes);
    REQUIRE(v);
    CHECK(v->reply_code() == 64);
    CHECK_FALSE(v->assents());
    CHECK(v->forced());
    CHECK(v->keepalive_interval() == 60);
    const auto s = mip::UdpTunnelReply::parse(*v);
    CHECK(s == mip::UdpTunnelReply{64, true, 60});
    test::Bytes out(8);
    s.emit(out);
    CHECK(to_hex(out) == to_hex(bytes));
    for (std::size_t len = 0; len < bytes.size(); ++len) {
        CAPTURE(len);
        CHECK_FALSE(mip::UdpTunnelReplyView::check(std::span(bytes).first(len)));
    }
}

TEST_CASE("authentication extension view") {
    const auto bytes = "20 14 00 00 01 00 33 19 24 ee 77 3d e5 de cb b4 8d 8c 5b 0c 21 f8"_hex;
    auto v = mip::AuthExtensionView::check(bytes);
    REQUIRE(v);
    CHECK(v->type() == 32);
    CHECK(v->length() == 20);
    CHECK(v->spi() == 256);
    CHECK(to_hex(v->authenticator()) == "331924ee773de5decbb48d8c5b0c21f8");
    for (std::size_t len = 0; len < bytes.size(); ++len) {
        CAPTURE(len);
        CHECK_FALSE(mip::AuthExtensionView::check(std::span(bytes).first(len)));
    }
    auto short_len = bytes;
    short_len[1] = 3;  // Length must cover at least the SPI
    CHECK_FALSE(mip::AuthExtensionView::check(short_len));
    auto copy = bytes;
    mip::AuthExtensionMutView::check(copy)->set_spi(0x01020304);
    CHECK(to_hex(std::span(copy).subspan(2, 4)) == "01020304");
}

TEST_CASE("tunnel data view: fields, setters, truncation, type check") {
    const auto bytes = "04 37 00 00 45"_hex;
    auto v = mip::TunnelDataView::check(bytes);
    REQUIRE(v);
    CHECK(v->next_header() == 55);
    CHECK(v->payload().size() == 1);
    test::Bytes out(4, 0);
    out[0] = 4;
    auto m = mip::TunnelDataMutView::check(out);
    m->set_next_header(55);
    m->set_reserved(0);
    CHECK(to_hex(out) == "04370000");
    for (std::size_t len = 0; len < 4; ++len) CHECK_FALSE(mip::TunnelDataView::check(std::span(bytes).first(len)));
    auto wrong = bytes;
    wrong[0] = 1;
    CHECK_FALSE(mip::TunnelDataView::check(wrong));
}

TEST_CASE("extension reader handles pad, simple TLV and the long encoding") {
    // pad | NAI "ab" | type 36 long: subtype 1, length 0x0003 | pad | 144 tunnel request
    const auto list = "00 83 02 61 62 24 01 00 03 aa bb cc 00 90 06 00 00 00 04 00 00"_hex;
    mip::ExtensionReader r(list);
    struct Row {
        std::uint8_t type;
        mip::ExtensionEncoding enc;
        std::size_t offset, len, data_len;
    };
    const Row rows[] = {
        {0, mip::ExtensionEncoding::Pad, 0, 1, 0},
        {131, mip::ExtensionEncoding::Simple, 1, 4, 2},
        {36, mip::ExtensionEncoding::Long, 5, 7, 3},
        {0, mip::ExtensionEncoding::Pad, 12, 1, 0},
        {144, mip::ExtensionEncoding::Simple, 13, 8, 6},
    };
    for (const auto& row : rows) {
        CAPTURE(row.offset);
        auto e = r.next();
        REQUIRE(e);
        CHECK(e->type == row.type);
        CHECK(e->encoding == row.enc);
        CHECK(e->offset == row.offset);
        CHECK(e->bytes.size() == row.len);
        CHECK(e->data.size() == row.data_len);
    }
    auto long_ext = mip::ExtensionReader(std::span(list).subspan(5, 7)).next();
    CHECK(long_ext->sub_type == 1);
    CHECK(to_hex(long_ext->data) == "aabbcc");
    CHECK_FALSE(r.next());
    CHECK_FALSE(r.truncated());
    CHECK(r.at_end());
}

TEST_CASE("extension reader: a length past the end stops with truncated()") {
    const test::Bytes cases[] = {
        "83"_hex,              // simple TLV missing its length
        "83 05 61 62"_hex,     // length 5, 2 bytes present
        "24 01 00"_hex,        // long header cut
        "24 01 01 00 aa"_hex,  // 16-bit length 256
        "00 00 20 14 00"_hex,  // pads then a cut auth extension
    };
    for (const auto& c : cases) {
        CAPTURE(to_hex(c));
        mip::ExtensionReader r(c);
        while (r.next()) {
        }
        CHECK(r.truncated());
    }
}

TEST_CASE("scan_extensions applies the skip-or-reject rule (RFC 5944 §3.8.3.1)") {
    const auto header = request_bytes;
    struct Row {
        const char* name;
        const char* extensions;
        std::optional<mip::ScanError> error;
    };
    const Row rows[] = {
        {"no extensions", "", std::nullopt},
        {"unknown skippable 200 is skipped", "c8 02 01 02", std::nullopt},
        {"unknown non-skippable 50 rejects", "32 02 01 02", mip::ScanError::UnknownNonSkippable},
        {"generalized auth 36 (long) rejects as unknown", "24 01 00 00", mip::ScanError::UnknownNonSkippable},
        {"reply-only 44 in a request rejects", "2c 06 00 00 00 00 00 00", mip::ScanError::UnknownNonSkippable},
        {"truncated", "83 09 61", mip::ScanError::Truncated},
        {"auth extension with length 2", "20 02 00 00", mip::ScanError::Malformed},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto msg = header;
        const auto ext = test::from_hex(row.extensions);
        msg.insert(msg.end(), ext.begin(), ext.end());
        mip::ScannedExtensions out;
        CHECK(mip::scan_extensions(msg, 24, mip::MessageKind::Request, out) == row.error);
    }
}

TEST_CASE("scan_extensions records positions relative to the MHAE and the Reserved-3 rule") {
    auto msg = request_bytes;
    // NAI, MHAE, tunnel request after the MHAE (FA-added), then one with Reserved 3 != 0.
    const auto ext = test::from_hex("83 03 61 62 63" "20 14 00 00 01 00" "00000000000000000000000000000000"
                      "90 06 00 00 00 04 00 00" "90 06 00 00 00 04 00 01");
    msg.insert(msg.end(), ext.begin(), ext.end());
    mip::ScannedExtensions s;
    REQUIRE_FALSE(mip::scan_extensions(msg, 24, mip::MessageKind::Request, s));
    CHECK(s.nai_present);
    CHECK(s.nai_before_mhae);
    CHECK(std::string(s.nai.begin(), s.nai.end()) == "abc");
    REQUIRE(s.mobile_home_auth);
    CHECK(s.mobile_home_auth->offset == 29);
    CHECK(s.mobile_home_auth_count == 1);
    CHECK(s.udp_tunnel_request.size() == 8);
    CHECK_FALSE(s.udp_tunnel_request_before_mhae);
    CHECK(s.udp_tunnel_request_ignored);  // the second one, Reserved 3 = 1
}

TEST_CASE("builders: NAI and TNC placement, NAI length limit") {
    const auto key = "00112233445566778899aabbccddeeff"_hex;
    mip::RequestExtensions ext;
    ext.nai = "mn@example.org";
    auto built = mip::build_request(example_request(), ext, {300, key});
    REQUIRE(built);
    mip::ScannedExtensions s;
    REQUIRE_FALSE(mip::scan_extensions(built->bytes(), 24, mip::MessageKind::Request, s));
    CHECK(s.nai_before_mhae);
    CHECK(s.mobile_home_auth->offset == 24 + 2 + 14);
    CHECK(s.mobile_home_auth->spi == 300);
    CHECK(mip::verify_authenticator(built->bytes(), *s.mobile_home_auth, key));

    const std::string too_long(256, 'x');
    ext.nai = too_long;
    CHECK(mip::build_request(example_request(), ext, {300, key}).error() == core::Errc::InvalidArgument);

    mip::ReplyExtensions rext;
    rext.trusted_networks = true;
    auto reply = mip::build_reply({0, 60, ip("10.1.0.77"), ip("10.1.0.1"), 5}, rext, {300, key});
    REQUIRE(reply);
    mip::ScannedExtensions rs;
    REQUIRE_FALSE(mip::scan_extensions(reply->bytes(), 20, mip::MessageKind::Reply, rs));
    CHECK(rs.trusted_networks);
    CHECK(rs.mobile_home_auth->offset == 24);
    CHECK(mip::verify_authenticator(reply->bytes(), *rs.mobile_home_auth, key));
}

// ---------------------------------------------------------------------------------------------
// Trusted Networks Configured extension (RFC 5265 §5)

TEST_CASE("TNC extension: fixed bytes, parse and emit") {
    const auto bytes = "95 02 00 00"_hex;
    auto v = mip::TrustedNetworksView::check(bytes);
    REQUIRE(v);
    CHECK(v->sub_type() == 0);
    CHECK(v->reserved() == 0);
    CHECK(mip::TrustedNetworks::parse(*v).has_value());
    test::Bytes out(4, 0xAA);
    mip::TrustedNetworks{}.emit(out);
    CHECK(to_hex(out) == "95020000");

    // Reserved is ignored on receipt (RFC 5265 §5).
    const auto reserved_set = "95 02 00 7f"_hex;
    auto r = mip::TrustedNetworksView::check(reserved_set);
    REQUIRE(r);
    CHECK(r->reserved() == 0x7f);
    CHECK(mip::TrustedNetworks::parse(*r).has_value());

    // An unknown Sub-Type is not this extension.
    const auto other_sub_type = "95 02 01 00"_hex;
    auto o = mip::TrustedNetworksView::check(other_sub_type);
    REQUIRE(o);
    CHECK_FALSE(o->known_sub_type());
    CHECK_FALSE(mip::TrustedNetworks::parse(*o).has_value());

    // The mutable view writes what the reader reads.
    test::Bytes m = bytes;
    auto mv = mip::TrustedNetworksMutView::check(m);
    REQUIRE(mv);
    mv->set_sub_type(3);
    mv->set_reserved(9);
    CHECK(to_hex(m) == "95020309");
}

TEST_CASE("TNC extension: every truncation and a wrong Type or Length fail check()") {
    const auto bytes = "95 02 00 00"_hex;
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        CAPTURE(n);
        CHECK_FALSE(mip::TrustedNetworksView::check(std::span(bytes).first(n)));
    }
    for (std::uint8_t length : {0, 1, 3, 4, 255}) {
        CAPTURE(int{length});
        auto wrong = bytes;
        wrong[1] = length;
        CHECK_FALSE(mip::TrustedNetworksView::check(wrong));
    }
    auto wrong_type = bytes;
    wrong_type[0] = 148;
    CHECK_FALSE(mip::TrustedNetworksView::check(wrong_type));
    // Longer input: the view covers only the extension.
    const auto longer = "95 02 00 00 ff ff"_hex;
    auto v = mip::TrustedNetworksView::check(longer);
    REQUIRE(v);
}

namespace {
// A reply (code 0) with `ext` after the fixed part.
test::Bytes reply_with(const test::Bytes& ext) {
    auto msg = "03 00 00 3c 0a 01 00 4d 0a 01 00 01 00 00 00 00 00 00 00 05"_hex;
    msg.insert(msg.end(), ext.begin(), ext.end());
    return msg;
}
const char* const mhae_zero = "20 14 00 00 01 00 00000000000000000000000000000000";
}  // namespace

TEST_CASE("scan_extensions: TNC before the MHAE is authenticated, after it is not") {
    mip::ScannedExtensions s;
    const auto before = reply_with(test::from_hex(std::string("95 02 00 00") + mhae_zero));
    REQUIRE_FALSE(mip::scan_extensions(before, 20, mip::MessageKind::Reply, s));
    CHECK(s.trusted_networks);
    CHECK(s.trusted_networks_before_mhae);
    CHECK(s.trusted_networks_authenticated());
    CHECK_FALSE(s.trusted_networks_ignored);
    CHECK(s.mobile_home_auth->offset == 24);

    // Wrong place: after the MHAE (an FA or anyone on the path could have appended it).
    const auto after = reply_with(test::from_hex(std::string(mhae_zero) + "95 02 00 00"));
    REQUIRE_FALSE(mip::scan_extensions(after, 20, mip::MessageKind::Reply, s));
    CHECK(s.trusted_networks);
    CHECK_FALSE(s.trusted_networks_before_mhae);
    CHECK_FALSE(s.trusted_networks_authenticated());

    // No TNC at all.
    const auto none = reply_with(test::from_hex(mhae_zero));
    REQUIRE_FALSE(mip::scan_extensions(none, 20, mip::MessageKind::Reply, s));
    CHECK_FALSE(s.trusted_networks);
    CHECK_FALSE(s.trusted_networks_authenticated());
}

TEST_CASE("scan_extensions: a TNC with a wrong Length or Sub-Type is skipped, never trusted") {
    mip::ScannedExtensions s;
    // Length 3 with three data bytes: walkable, skippable (149 >= 128), not understood.
    const auto long_tnc = reply_with(test::from_hex(std::string("95 03 00 00 00") + mhae_zero));
    REQUIRE_FALSE(mip::scan_extensions(long_tnc, 20, mip::MessageKind::Reply, s));
    CHECK_FALSE(s.trusted_networks);
    CHECK(s.trusted_networks_ignored);
    REQUIRE(s.mobile_home_auth);
    CHECK(s.mobile_home_auth->offset == 25);

    const auto short_tnc = reply_with(test::from_hex(std::string("95 01 00") + mhae_zero));
    REQUIRE_FALSE(mip::scan_extensions(short_tnc, 20, mip::MessageKind::Reply, s));
    CHECK_FALSE(s.trusted_networks);
    CHECK(s.trusted_networks_ignored);

    const auto sub_type = reply_with(test::from_hex(std::string("95 02 01 00") + mhae_zero));
    REQUIRE_FALSE(mip::scan_extensions(sub_type, 20, mip::MessageKind::Reply, s));
    CHECK_FALSE(s.trusted_networks);
    CHECK(s.trusted_networks_ignored);

    // A wrong TNC followed by a good one: the good one counts.
    const auto both = reply_with(test::from_hex(std::string("95 02 01 00 95 02 00 00") + mhae_zero));
    REQUIRE_FALSE(mip::scan_extensions(both, 20, mip::MessageKind::Reply, s));
    CHECK(s.trusted_networks_authenticated());
    CHECK(s.trusted_networks_ignored);
}

TEST_CASE("scan_extensions: a truncated TNC truncates the message") {
    const auto full = reply_with("95 02 00 00"_hex);
    for (std::size_t cut = 1; cut < 4; ++cut) {
        CAPTURE(cut);
        const test::Bytes msg(full.begin(), full.end() - static_cast<std::ptrdiff_t>(cut));
        mip::ScannedExtensions s;
        CHECK(mip::scan_extensions(msg, 20, mip::MessageKind::Reply, s) == mip::ScanError::Truncated);
        CHECK_FALSE(s.trusted_networks);
    }
}

TEST_CASE("scan_extensions: TNC in a request is an unknown skippable extension") {
    auto msg = request_bytes;
    const auto ext = test::from_hex(std::string("95 02 00 00") + mhae_zero);
    msg.insert(msg.end(), ext.begin(), ext.end());
    mip::ScannedExtensions s;
    REQUIRE_FALSE(mip::scan_extensions(msg, 24, mip::MessageKind::Request, s));
    CHECK_FALSE(s.trusted_networks);
    REQUIRE(s.mobile_home_auth);
    CHECK(s.mobile_home_auth->offset == 28);
}

TEST_CASE("build_reply: TNC sits after NAI and UDP Tunnel Reply and before the MHAE, covered by it") {
    const auto key = "00112233445566778899aabbccddeeff"_hex;
    mip::ReplyExtensions rext;
    rext.nai = "mn";
    rext.udp_tunnel = mip::UdpTunnelReply{0, false, 110};
    rext.trusted_networks = true;
    auto reply = mip::build_reply({0, 60, ip("10.1.0.77"), ip("10.1.0.1"), 5}, rext, {300, key});
    REQUIRE(reply);
    const auto bytes = reply->bytes();
    // 20 fixed + 4 NAI + 8 tunnel reply, then the TNC, then the MHAE.
    CHECK(to_hex(bytes.subspan(32, 4)) == "95020000");
    mip::ScannedExtensions s;
    REQUIRE_FALSE(mip::scan_extensions(bytes, 20, mip::MessageKind::Reply, s));
    CHECK(s.trusted_networks_authenticated());
    CHECK(s.mobile_home_auth->offset == 36);
    CHECK(mip::verify_authenticator(bytes, *s.mobile_home_auth, key));
    // Flipping the TNC's Sub-Type breaks the authenticator: the MHAE covers it.
    test::Bytes tampered(bytes.begin(), bytes.end());
    tampered[34] = 1;
    CHECK_FALSE(mip::verify_authenticator(tampered, *s.mobile_home_auth, key));

    rext.trusted_networks = false;
    auto plain = mip::build_reply({0, 60, ip("10.1.0.77"), ip("10.1.0.1"), 5}, rext, {300, key});
    REQUIRE(plain);
    CHECK(plain->len == reply->len - 4);
    REQUIRE_FALSE(mip::scan_extensions(plain->bytes(), 20, mip::MessageKind::Reply, s));
    CHECK_FALSE(s.trusted_networks);
}
