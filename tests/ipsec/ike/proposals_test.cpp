// SPDX-License-Identifier: MIT
// Proposal encodings against strongSwan 5.9's bytes (captured on the wire), selection rules and
// traffic-selector IDs.
#include <doctest/doctest.h>

#include <ostream>
#include <string>

#include "ipsec/ike/byte_writer.hpp"
#include "ipsec/ike/proposals.hpp"
#include "tests/support/hex.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;
using namespace mipsec::test::literals;
using std::chrono::seconds;

namespace {
test::Bytes body(const Transform& t) {
    ByteWriter m = ByteWriter::measuring();
    t.write(m);
    test::Bytes out(m.pos());
    ByteWriter w(out);
    t.write(w);
    REQUIRE(w.ok());
    return out;
}
}  // namespace

TEST_CASE("IKE transform: strongSwan's attribute order and values") {
    // strongSwan 5.9 MM1: AES-CBC, Key-Length 128, SHA1, MODP-2048, PSK, seconds, 15840.
    IkeProposal p;
    CHECK(body(p.to_transform(1)) == "01 01 0000 8001 0007 800e 0080 8002 0002 8004 000e 8003 0001 800b 0001 800c 3de0"_hex);
    // 86400 s does not fit TV: a 4-byte TLV (RFC 2408 §3.3).
    IkeProposal day{256, IkeHash::Sha256, crypto::ModpGroup::Modp1024, seconds(86400)};
    CHECK(body(day.to_transform(2)) ==
          "02 01 0000 8001 0007 800e 0100 8002 0004 8004 0002 8003 0001 800b 0001 000c 0004 00015180"_hex);
    auto back = IkeProposal::from_transform(day.to_transform(2));
    REQUIRE(back);
    CHECK(*back == day);
}

TEST_CASE("IKE transform decoding refuses what we cannot honour") {
    struct Row {
        std::string name;
        test::Bytes attrs;
    };
    const Row rows[] = {
        {"3DES", "8001 0005 8002 0002 8004 000e 8003 0001"_hex},
        {"AES without key length", "8001 0007 8002 0002 8004 000e 8003 0001"_hex},
        {"RSA signatures", "8001 0007 800e 0080 8002 0002 8004 000e 8003 0003"_hex},
        {"MD5", "8001 0007 800e 0080 8002 0001 8004 000e 8003 0001"_hex},
        {"MODP 1536", "8001 0007 800e 0080 8002 0002 8004 0005 8003 0001"_hex},
        {"kilobyte lifetime", "8001 0007 800e 0080 8002 0002 8004 000e 8003 0001 800b 0002 800c 1000"_hex},
        {"duration before type", "8001 0007 800e 0080 8002 0002 8004 000e 8003 0001 800c 1000 800b 0001"_hex},
    };
    for (const auto& row : rows) {
        CAPTURE(row.name);
        auto attrs = AttributeList::parse(row.attrs);
        REQUIRE(attrs);
        CHECK_FALSE(IkeProposal::from_transform(Transform{1, transform_key_ike, *attrs}));
    }
}

TEST_CASE("ESP transforms: GCM without auth attribute, CBC with it, encapsulation by NAT, PFS group") {
    EspProposal gcm{EspAlgorithm::AesGcm128};
    // strongSwan: ID 20, Key-Length 128, Encapsulation Mode 3, seconds, 3960.
    CHECK(body(gcm.to_transform(1, std::nullopt, true)) == "01 14 0000 8006 0080 8004 0003 8001 0001 8002 0f78"_hex);
    EspProposal cbc{EspAlgorithm::AesCbc128HmacSha1};
    CHECK(body(cbc.to_transform(1, std::nullopt, false)) == "01 0c 0000 8006 0080 8005 0002 8004 0001 8001 0001 8002 0f78"_hex);
    EspProposal cbc256{EspAlgorithm::AesCbc256HmacSha256};
    CHECK(body(cbc256.to_transform(3, crypto::ModpGroup::Modp2048, true)) ==
          "03 0c 0000 8006 0100 8005 0005 8003 000e 8004 0003 8001 0001 8002 0f78"_hex);

    auto o = EspOffer::from_transform(cbc256.to_transform(3, crypto::ModpGroup::Modp2048, true));
    REQUIRE(o);
    CHECK(o->proposal == cbc256);
    CHECK(o->pfs_group == crypto::ModpGroup::Modp2048);
    CHECK(o->encapsulation == encapsulation_mode::udp_tunnel);

    // GCM with an authentication attribute is malformed for strongSwan (combined mode, RFC 4106 §8.3).
    auto bad = gcm.to_transform(1, std::nullopt, true);
    bad.attributes.add(DataAttribute::basic(phase2_attr::auth_algorithm, auth_algorithm::hmac_sha1));
    CHECK_FALSE(EspOffer::from_transform(bad));
    // ESN is not implemented: not acceptable.
    auto esn = cbc.to_transform(1, std::nullopt, false);
    esn.attributes.add(DataAttribute::basic(phase2_attr::ext_seq_number, 1));
    CHECK_FALSE(EspOffer::from_transform(esn));
}

TEST_CASE("select_esp: initiator's order, our SPI in the reply, encapsulation and PFS must agree") {
    std::vector<EspProposal> offered = {{EspAlgorithm::AesCbc256HmacSha256}, {EspAlgorithm::AesGcm128}};
    SaPayload offer = make_esp_sa(offered, 0xc0ffee01, std::nullopt, true);
    std::vector<EspProposal> ours = {{EspAlgorithm::AesGcm128}, {EspAlgorithm::AesCbc256HmacSha256, seconds(1000)}};
    auto sel = select_esp(offer, ours, std::nullopt, true, 0xc0ffee02);
    REQUIRE(sel);
    CHECK(sel->offer.proposal.algorithm == EspAlgorithm::AesCbc256HmacSha256);
    CHECK(sel->offer.proposal.lifetime == seconds(1000));  // the shorter of both
    CHECK(sel->spi_out == 0xc0ffee01);
    REQUIRE(sel->reply.proposals.size() == 1);
    CHECK(sel->reply.proposals[0].spi == "c0ffee02"_hex);
    REQUIRE(sel->reply.proposals[0].transforms.size() == 1);
    CHECK(sel->reply.proposals[0].transforms[0] == offer.proposals[0].transforms[0]);

    auto acc = accept_esp_reply(sel->reply, offered, std::nullopt, true);
    REQUIRE(acc);
    CHECK(acc->spi_out == 0xc0ffee02);

    CHECK_FALSE(select_esp(offer, ours, std::nullopt, false, 1));                        // mode 3 without NAT
    CHECK_FALSE(select_esp(offer, ours, crypto::ModpGroup::Modp2048, true, 1));          // PFS required
    CHECK_FALSE(accept_esp_reply(sel->reply, offered, crypto::ModpGroup::Modp1024, true));  // PFS missing
    CHECK_FALSE(accept_esp_reply(offer, offered, std::nullopt, true));                  // two transforms
}

TEST_CASE("select_ike copies the chosen transform and keeps the initiator's order") {
    std::vector<IkeProposal> offered = {{256, IkeHash::Sha256, crypto::ModpGroup::Modp2048}, {}};
    SaPayload offer = make_ike_sa(offered);
    REQUIRE(offer.proposals.size() == 1);
    CHECK(offer.proposals[0].transforms.size() == 2);
    std::vector<IkeProposal> ours = {{}, {256, IkeHash::Sha256, crypto::ModpGroup::Modp2048, seconds(3600)}};
    auto sel = select_ike(offer, ours);
    REQUIRE(sel);
    CHECK(sel->proposal.same_algorithms(offered[0]));
    CHECK(sel->reply.proposals[0].transforms[0] == offer.proposals[0].transforms[0]);
    auto acc = accept_ike_reply(sel->reply, offered);
    REQUIRE(acc);
    CHECK(acc->same_algorithms(offered[0]));
    CHECK_FALSE(select_ike(offer, std::vector<IkeProposal>{{128, IkeHash::Sha1, crypto::ModpGroup::Modp1024}}));
}

TEST_CASE("traffic selectors as IDs: /32 is ID_IPV4_ADDR, prefixes are subnets, ranges must be prefixes") {
    auto host = to_id(*core::Ipv4Prefix::parse("10.99.100.1/32"));
    CHECK(host.id_type == id_type::ipv4_addr);
    CHECK(host.data == "0a636401"_hex);
    auto net = to_id(*core::Ipv4Prefix::parse("10.99.1.7/24"));
    CHECK(net.id_type == id_type::ipv4_addr_subnet);
    CHECK(net.data == "0a630100 ffffff00"_hex);
    auto any = to_id(*core::Ipv4Prefix::parse("0.0.0.0/0"));
    CHECK(any.data == "00000000 00000000"_hex);
    CHECK(from_id(net) == core::Ipv4Prefix::parse("10.99.1.0/24"));
    CHECK(from_id(host) == core::Ipv4Prefix::parse("10.99.100.1/32"));
    CHECK(from_id(IdPayload::ipv4_range(core::Ipv4Address::from_octets(10, 0, 0, 0), core::Ipv4Address::from_octets(10, 0, 0, 255))) ==
          core::Ipv4Prefix::parse("10.0.0.0/24"));
    CHECK_FALSE(from_id(IdPayload::ipv4_range(core::Ipv4Address::from_octets(10, 0, 0, 1), core::Ipv4Address::from_octets(10, 0, 0, 5))));
    CHECK_FALSE(from_id(IdPayload::ipv4_addr(core::Ipv4Address::from_octets(10, 0, 0, 1), 17, 500)));
    CHECK_FALSE(from_id(IdPayload::fqdn("gw.lab.example")));
}

TEST_CASE("proposal names for failure details: ours as configured, the peer's offer transform by transform") {
    const IkeProposal ike[] = {{128, IkeHash::Sha1, crypto::ModpGroup::Modp2048}, {256, IkeHash::Sha256, crypto::ModpGroup::Modp1024}};
    CHECK(describe(ike) == "aes128-sha1-modp2048, aes256-sha256-modp1024");
    CHECK(describe_offer(make_ike_sa(ike)) == "aes128-sha1-modp2048, aes256-sha256-modp1024");

    const EspProposal esp[] = {{EspAlgorithm::AesGcm128}, {EspAlgorithm::AesCbc256HmacSha256}};
    CHECK(describe(esp, std::nullopt) == "aes128gcm16, aes256-sha256 (no PFS)");
    CHECK(describe(esp, crypto::ModpGroup::Modp2048) == "aes128gcm16-modp2048, aes256-sha256-modp2048");
    CHECK(describe_offer(make_esp_sa(esp, 0x1000, crypto::ModpGroup::Modp2048, true)) ==
          "aes128gcm16-modp2048 [UDP tunnel], aes256-sha256-modp2048 [UDP tunnel]");

    // What we do not implement is named too: 3DES/MD5 in phase 1, a MODP-3072 PFS group and
    // transport mode in phase 2.
    Transform old_ike;
    old_ike.attributes.add(DataAttribute::basic(phase1_attr::encryption, phase1_encryption::triple_des_cbc))
        .add(DataAttribute::basic(phase1_attr::hash, phase1_hash::md5))
        .add(DataAttribute::basic(phase1_attr::group_description, dh_group::modp_1024))
        .add(DataAttribute::basic(phase1_attr::auth_method, auth_method::rsa_signature));
    SaPayload ike_offer = make_ike_sa(ike);
    ike_offer.proposals[0].transforms.insert(ike_offer.proposals[0].transforms.begin(), old_ike);
    CHECK(describe_offer(ike_offer) == "3des-md5-modp1024 [RSA signatures], aes128-sha1-modp2048, aes256-sha256-modp1024");

    Transform gcm256;
    gcm256.transform_id = esp_transform::aes_gcm_16;
    gcm256.attributes.add(DataAttribute::basic(phase2_attr::key_length, 256))
        .add(DataAttribute::basic(phase2_attr::group_description, dh_group::modp_3072))
        .add(DataAttribute::basic(phase2_attr::encapsulation_mode, encapsulation_mode::transport));
    SaPayload esp_offer = make_esp_sa(esp, 0x1000, std::nullopt, false);
    esp_offer.proposals[0].transforms = {gcm256};
    CHECK(describe_offer(esp_offer) == "aes256gcm16-modp3072 [transport]");

    // A hostile offer does not make an endless line.
    SaPayload many = make_ike_sa(ike);
    for (int i = 0; i < 30; ++i) many.proposals[0].transforms.push_back(old_ike);
    CHECK(describe_offer(many).ends_with(" and 20 more"));
    CHECK(describe_offer(SaPayload{}) == "nothing");
}
