// SPDX-License-Identifier: MIT
// Emits sample IKEv1 messages with the codec, one "name hex" line each, for the independent
// check in scapy_check.py (scapy's ISAKMP layer re-parses them). The values here are the
// ones the script expects; keep the two in step.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ipsec/ike/message.hpp"

using namespace mipsec;
using namespace mipsec::ipsec::ike;

namespace {
std::string hex(const Bytes& b) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (std::uint8_t v : b) {
        s += digits[v >> 4];
        s += digits[v & 0x0F];
    }
    return s;
}

Bytes pattern(std::size_t n, std::uint8_t start) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(start + i);
    return b;
}
template <std::size_t N>
Bytes bytes(const std::array<std::uint8_t, N>& a) {
    return Bytes(a.begin(), a.end());
}

IsakmpHeader header(std::uint8_t exchange, std::uint32_t message_id, bool with_responder) {
    IsakmpHeader h;
    h.initiator_cookie = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
    if (with_responder) h.responder_cookie = {0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00};
    h.exchange_type = exchange;
    h.message_id = message_id;
    return h;
}

SaPayload phase1_sa(std::uint64_t life) {
    Transform t{1, transform_key_ike, {}};
    t.attributes.add(DataAttribute::basic(phase1_attr::encryption, phase1_encryption::aes_cbc))
        .add(DataAttribute::basic(phase1_attr::key_length, 128))
        .add(DataAttribute::basic(phase1_attr::hash, phase1_hash::sha1))
        .add(DataAttribute::basic(phase1_attr::group_description, dh_group::modp_2048))
        .add(DataAttribute::basic(phase1_attr::auth_method, auth_method::pre_shared_key))
        .add(DataAttribute::basic(phase1_attr::life_type, life_type::seconds))
        .add(DataAttribute::integer(phase1_attr::life_duration, life));
    return {doi::ipsec, situation::identity_only, {Proposal{1, protocol_id::isakmp, {}, {t}}}};
}

void print(const char* name, const Message& m) {
    Bytes out;
    if (!m.emit(out)) {
        std::fprintf(stderr, "emit failed for %s\n", name);
        std::exit(1);
    }
    std::printf("%s %s\n", name, hex(out).c_str());
}
}  // namespace

int main() {
    Message mm1;
    mm1.header = header(exchange_type::main_mode, 0, false);
    mm1.payloads.push_back(phase1_sa(15840));
    for (auto v : {bytes(vendor_id::xauth), bytes(vendor_id::dpd), bytes(vendor_id::fragmentation),
                   bytes(vendor_id::nat_t_rfc3947), bytes(vendor_id::nat_t_draft_02_n)})
        mm1.payloads.push_back(VendorIdPayload{v});
    print("mm1", mm1);

    Message sa_tlv;
    sa_tlv.header = header(exchange_type::main_mode, 0, false);
    sa_tlv.payloads.push_back(phase1_sa(86400));  // Life Duration as a 4-byte TLV
    print("sa_tlv", sa_tlv);

    Message mm3;
    mm3.header = header(exchange_type::main_mode, 0, true);
    mm3.payloads = {KePayload{pattern(256, 0)}, NoncePayload{pattern(32, 0xa0)},
                    NatDPayload{pattern(20, 0x10), false}, NatDPayload{pattern(20, 0x40), false}};
    print("mm3", mm3);

    Message mm5;  // the plaintext form of MM5 (scapy does not decrypt)
    mm5.header = header(exchange_type::main_mode, 0, true);
    auto ck = mm5.header.cookies();
    mm5.payloads = {IdPayload::fqdn("cli.lab.example"), HashPayload{pattern(20, 0x60)},
                    NotifyPayload{doi::ipsec, protocol_id::isakmp, notify_type::initial_contact, Bytes(ck.begin(), ck.end()), {}}};
    print("mm5", mm5);

    Message qm1;
    qm1.header = header(exchange_type::quick_mode, 0x01020304, true);
    Transform t{1, esp_transform::aes_gcm_16, {}};
    t.attributes.add(DataAttribute::basic(phase2_attr::key_length, 128))
        .add(DataAttribute::basic(phase2_attr::encapsulation_mode, encapsulation_mode::udp_tunnel))
        .add(DataAttribute::basic(phase2_attr::sa_life_type, life_type::seconds))
        .add(DataAttribute::basic(phase2_attr::sa_life_duration, 3960));
    qm1.payloads = {HashPayload{pattern(20, 0x70)},
                    SaPayload{doi::ipsec, situation::identity_only,
                              {Proposal{1, protocol_id::ipsec_esp, Bytes{0xc0, 0xff, 0xee, 0x01}, {t}}}},
                    NoncePayload{pattern(32, 0x80)},
                    IdPayload::ipv4_addr(core::Ipv4Address::from_octets(10, 99, 200, 2)),
                    IdPayload::ipv4_subnet(core::Ipv4Address::from_octets(10, 99, 1, 0),
                                           core::Ipv4Address::from_octets(255, 255, 255, 0))};
    print("qm1", qm1);

    Message del;
    del.header = header(exchange_type::informational, 0xcafef00d, true);
    del.payloads = {HashPayload{pattern(20, 0x90)},
                    DeletePayload{doi::ipsec, protocol_id::ipsec_esp, 4, {Bytes{0xc1, 0xc2, 0xc3, 0xc4}}}};
    print("delete", del);

    Message cfg;
    cfg.header = header(exchange_type::transaction, 0x0badcafe, true);
    cfg.payloads = {HashPayload{pattern(20, 0xb0)},
                    AttributePayload{cfg_type::reply, 0,
                                     {DataAttribute::variable(cfg_attr::internal_ip4_address, Bytes{10, 99, 100, 1})}}};
    print("modecfg", cfg);
    return 0;
}
