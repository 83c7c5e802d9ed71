// SPDX-License-Identifier: MIT
#pragma once
// IKEv1 / ISAKMP numbers: RFC 2408 (ISAKMP), RFC 2407 (IPsec DOI), RFC 2409 (IKE, Oakley
// attributes), RFC 3947 (NAT-T), RFC 3706 (DPD), draft-dukes-ike-mode-cfg (Transaction /
// Attribute payload). Only the values the supported exchanges (Main Mode, Quick Mode,
// Informational, Transaction) use or must recognise; the codec itself accepts any number.
#include <array>
#include <cstdint>

namespace mipsec::ipsec::ike {

/// ISAKMP version byte: major 1 (high nibble), minor 0 (RFC 2408 §3.1).
inline constexpr std::uint8_t isakmp_version = 0x10;

namespace exchange_type {
inline constexpr std::uint8_t none = 0;
inline constexpr std::uint8_t base = 1;
inline constexpr std::uint8_t identity_protection = 2;  // IKE Main Mode
inline constexpr std::uint8_t main_mode = identity_protection;
inline constexpr std::uint8_t authentication_only = 3;
inline constexpr std::uint8_t aggressive = 4;
inline constexpr std::uint8_t informational = 5;
inline constexpr std::uint8_t transaction = 6;  // Mode Config
inline constexpr std::uint8_t quick_mode = 32;  // RFC 2409 §9
inline constexpr std::uint8_t new_group_mode = 33;
}  // namespace exchange_type

namespace header_flag {
inline constexpr std::uint8_t encryption = 0x01;
inline constexpr std::uint8_t commit = 0x02;
inline constexpr std::uint8_t authentication_only = 0x04;
}  // namespace header_flag

namespace payload_type {
inline constexpr std::uint8_t none = 0;
inline constexpr std::uint8_t sa = 1;
inline constexpr std::uint8_t proposal = 2;   // only inside SA
inline constexpr std::uint8_t transform = 3;  // only inside Proposal
inline constexpr std::uint8_t ke = 4;
inline constexpr std::uint8_t id = 5;
inline constexpr std::uint8_t cert = 6;
inline constexpr std::uint8_t cr = 7;
inline constexpr std::uint8_t hash = 8;
inline constexpr std::uint8_t sig = 9;
inline constexpr std::uint8_t nonce = 10;
inline constexpr std::uint8_t notification = 11;
inline constexpr std::uint8_t deletion = 12;
inline constexpr std::uint8_t vendor_id = 13;
inline constexpr std::uint8_t attribute = 14;  // Mode Config
inline constexpr std::uint8_t nat_d = 20;      // RFC 3947
inline constexpr std::uint8_t nat_oa = 21;     // RFC 3947
inline constexpr std::uint8_t nat_d_draft = 130;   // draft-ietf-ipsec-nat-t-ike-02/03
inline constexpr std::uint8_t nat_oa_draft = 131;  // draft-ietf-ipsec-nat-t-ike-02/03
inline constexpr std::uint8_t fragment = 132;      // proprietary IKEv1 fragment
}  // namespace payload_type

namespace doi {
inline constexpr std::uint32_t isakmp = 0;
inline constexpr std::uint32_t ipsec = 1;
}  // namespace doi

namespace situation {
inline constexpr std::uint32_t identity_only = 0x01;  // RFC 2407 §4.2
inline constexpr std::uint32_t secrecy = 0x02;
inline constexpr std::uint32_t integrity = 0x04;
}  // namespace situation

namespace protocol_id {
inline constexpr std::uint8_t isakmp = 1;
inline constexpr std::uint8_t ipsec_ah = 2;
inline constexpr std::uint8_t ipsec_esp = 3;
inline constexpr std::uint8_t ipcomp = 4;
}  // namespace protocol_id

/// Phase-1 transform ID (RFC 2407 §4.4.2).
inline constexpr std::uint8_t transform_key_ike = 1;

/// ESP transform IDs (RFC 2407 §4.4.4, RFC 3602, RFC 4106, RFC 4309, RFC 4543).
namespace esp_transform {
inline constexpr std::uint8_t des = 2;
inline constexpr std::uint8_t triple_des = 3;
inline constexpr std::uint8_t null = 11;
inline constexpr std::uint8_t aes_cbc = 12;
inline constexpr std::uint8_t aes_ctr = 13;
inline constexpr std::uint8_t aes_ccm_8 = 14;
inline constexpr std::uint8_t aes_ccm_12 = 15;
inline constexpr std::uint8_t aes_ccm_16 = 16;
inline constexpr std::uint8_t aes_gcm_8 = 18;
inline constexpr std::uint8_t aes_gcm_12 = 19;
inline constexpr std::uint8_t aes_gcm_16 = 20;
inline constexpr std::uint8_t null_auth_aes_gmac = 23;
}  // namespace esp_transform

/// Phase-1 (Oakley) SA attribute types (RFC 2409 Appendix A).
namespace phase1_attr {
inline constexpr std::uint16_t encryption = 1;
inline constexpr std::uint16_t hash = 2;
inline constexpr std::uint16_t auth_method = 3;
inline constexpr std::uint16_t group_description = 4;
inline constexpr std::uint16_t group_type = 5;
inline constexpr std::uint16_t life_type = 11;
inline constexpr std::uint16_t life_duration = 12;
inline constexpr std::uint16_t prf = 13;
inline constexpr std::uint16_t key_length = 14;
}  // namespace phase1_attr

namespace phase1_encryption {
inline constexpr std::uint16_t des_cbc = 1;
inline constexpr std::uint16_t triple_des_cbc = 5;
inline constexpr std::uint16_t aes_cbc = 7;  // RFC 3602
}  // namespace phase1_encryption

namespace phase1_hash {
inline constexpr std::uint16_t md5 = 1;
inline constexpr std::uint16_t sha1 = 2;
inline constexpr std::uint16_t sha2_256 = 4;
inline constexpr std::uint16_t sha2_384 = 5;
inline constexpr std::uint16_t sha2_512 = 6;
}  // namespace phase1_hash

namespace auth_method {
inline constexpr std::uint16_t pre_shared_key = 1;
inline constexpr std::uint16_t dss_signature = 2;
inline constexpr std::uint16_t rsa_signature = 3;
inline constexpr std::uint16_t xauth_init_psk = 65001;
inline constexpr std::uint16_t xauth_resp_psk = 65002;
}  // namespace auth_method

/// Group Description values (phase 1 attribute 4, phase 2 attribute 3).
namespace dh_group {
inline constexpr std::uint16_t modp_768 = 1;
inline constexpr std::uint16_t modp_1024 = 2;
inline constexpr std::uint16_t modp_1536 = 5;
inline constexpr std::uint16_t modp_2048 = 14;
inline constexpr std::uint16_t modp_3072 = 15;
inline constexpr std::uint16_t modp_4096 = 16;
}  // namespace dh_group

/// Life Type values, phase 1 and phase 2.
namespace life_type {
inline constexpr std::uint16_t seconds = 1;
inline constexpr std::uint16_t kilobytes = 2;
}  // namespace life_type

/// Phase-2 SA attribute types (RFC 2407 §4.5).
namespace phase2_attr {
inline constexpr std::uint16_t sa_life_type = 1;
inline constexpr std::uint16_t sa_life_duration = 2;
inline constexpr std::uint16_t group_description = 3;
inline constexpr std::uint16_t encapsulation_mode = 4;
inline constexpr std::uint16_t auth_algorithm = 5;
inline constexpr std::uint16_t key_length = 6;
inline constexpr std::uint16_t key_rounds = 7;
inline constexpr std::uint16_t ext_seq_number = 11;
}  // namespace phase2_attr

namespace encapsulation_mode {
inline constexpr std::uint16_t tunnel = 1;
inline constexpr std::uint16_t transport = 2;
inline constexpr std::uint16_t udp_tunnel = 3;     // RFC 3947
inline constexpr std::uint16_t udp_transport = 4;  // RFC 3947
inline constexpr std::uint16_t udp_tunnel_draft = 61443;     // NAT-T drafts 02/03
inline constexpr std::uint16_t udp_transport_draft = 61444;  // NAT-T drafts 02/03
}  // namespace encapsulation_mode

namespace auth_algorithm {
inline constexpr std::uint16_t hmac_md5 = 1;
inline constexpr std::uint16_t hmac_sha1 = 2;
inline constexpr std::uint16_t hmac_sha2_256 = 5;  // RFC 4868 §4
inline constexpr std::uint16_t hmac_sha2_384 = 6;
inline constexpr std::uint16_t hmac_sha2_512 = 7;
}  // namespace auth_algorithm

/// Identification types, IPsec DOI (RFC 2407 §4.6.2.1).
namespace id_type {
inline constexpr std::uint8_t ipv4_addr = 1;
inline constexpr std::uint8_t fqdn = 2;
inline constexpr std::uint8_t user_fqdn = 3;
inline constexpr std::uint8_t ipv4_addr_subnet = 4;
inline constexpr std::uint8_t ipv6_addr = 5;
inline constexpr std::uint8_t ipv6_addr_subnet = 6;
inline constexpr std::uint8_t ipv4_addr_range = 7;
inline constexpr std::uint8_t ipv6_addr_range = 8;
inline constexpr std::uint8_t der_asn1_dn = 9;
inline constexpr std::uint8_t der_asn1_gn = 10;
inline constexpr std::uint8_t key_id = 11;
}  // namespace id_type

/// Notify message types: errors RFC 2408 §3.14.1, status RFC 2408/2407 §4.6.3, DPD RFC 3706.
namespace notify_type {
inline constexpr std::uint16_t invalid_payload_type = 1;
inline constexpr std::uint16_t doi_not_supported = 2;
inline constexpr std::uint16_t situation_not_supported = 3;
inline constexpr std::uint16_t invalid_cookie = 4;
inline constexpr std::uint16_t invalid_major_version = 5;
inline constexpr std::uint16_t invalid_minor_version = 6;
inline constexpr std::uint16_t invalid_exchange_type = 7;
inline constexpr std::uint16_t invalid_flags = 8;
inline constexpr std::uint16_t invalid_message_id = 9;
inline constexpr std::uint16_t invalid_protocol_id = 10;
inline constexpr std::uint16_t invalid_spi = 11;
inline constexpr std::uint16_t invalid_transform_id = 12;
inline constexpr std::uint16_t attributes_not_supported = 13;
inline constexpr std::uint16_t no_proposal_chosen = 14;
inline constexpr std::uint16_t bad_proposal_syntax = 15;
inline constexpr std::uint16_t payload_malformed = 16;
inline constexpr std::uint16_t invalid_key_information = 17;
inline constexpr std::uint16_t invalid_id_information = 18;
inline constexpr std::uint16_t invalid_cert_encoding = 19;
inline constexpr std::uint16_t invalid_certificate = 20;
inline constexpr std::uint16_t cert_type_unsupported = 21;
inline constexpr std::uint16_t invalid_cert_authority = 22;
inline constexpr std::uint16_t invalid_hash_information = 23;
inline constexpr std::uint16_t authentication_failed = 24;
inline constexpr std::uint16_t invalid_signature = 25;
inline constexpr std::uint16_t address_notification = 26;
inline constexpr std::uint16_t notify_sa_lifetime = 27;
inline constexpr std::uint16_t certificate_unavailable = 28;
inline constexpr std::uint16_t unsupported_exchange_type = 29;
inline constexpr std::uint16_t unequal_payload_lengths = 30;
inline constexpr std::uint16_t connected = 16384;
inline constexpr std::uint16_t responder_lifetime = 24576;
inline constexpr std::uint16_t replay_status = 24577;
inline constexpr std::uint16_t initial_contact = 24578;
inline constexpr std::uint16_t r_u_there = 36136;
inline constexpr std::uint16_t r_u_there_ack = 36137;
/// Types below this value are errors (RFC 2408 §3.14.1).
inline constexpr std::uint16_t first_status = 16384;
}  // namespace notify_type

/// Attribute payload (Mode Config) message types.
namespace cfg_type {
inline constexpr std::uint8_t request = 1;
inline constexpr std::uint8_t reply = 2;
inline constexpr std::uint8_t set = 3;
inline constexpr std::uint8_t ack = 4;
}  // namespace cfg_type

/// Mode Config attribute types (draft-dukes-ike-mode-cfg §3.2).
namespace cfg_attr {
inline constexpr std::uint16_t internal_ip4_address = 1;
inline constexpr std::uint16_t internal_ip4_netmask = 2;
inline constexpr std::uint16_t internal_ip4_dns = 3;
inline constexpr std::uint16_t internal_ip4_nbns = 4;
inline constexpr std::uint16_t internal_address_expiry = 5;
inline constexpr std::uint16_t internal_ip4_dhcp = 6;
inline constexpr std::uint16_t application_version = 7;
inline constexpr std::uint16_t internal_ip6_address = 8;
inline constexpr std::uint16_t internal_ip6_netmask = 9;
inline constexpr std::uint16_t internal_ip6_dns = 10;
inline constexpr std::uint16_t internal_ip6_nbns = 11;
inline constexpr std::uint16_t internal_ip6_dhcp = 12;
inline constexpr std::uint16_t internal_ip4_subnet = 13;
inline constexpr std::uint16_t supported_attributes = 14;
inline constexpr std::uint16_t internal_ip6_subnet = 15;
}  // namespace cfg_attr

/// Vendor ID payload contents. MD5 values re-verified by hashing the quoted strings.
namespace vendor_id {
/// MD5("RFC 3947"); both peers must send it before NAT-T is used (RFC 3947 §3).
inline constexpr std::array<std::uint8_t, 16> nat_t_rfc3947 = {
    0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45, 0x2f};
/// MD5("draft-ietf-ipsec-nat-t-ike-02").
inline constexpr std::array<std::uint8_t, 16> nat_t_draft_02 = {
    0xcd, 0x60, 0x46, 0x43, 0x35, 0xdf, 0x21, 0xf8, 0x7c, 0xfd, 0xb2, 0xfc, 0x68, 0xb6, 0xa4, 0x48};
/// MD5("draft-ietf-ipsec-nat-t-ike-02\n"), the variant strongSwan sends.
inline constexpr std::array<std::uint8_t, 16> nat_t_draft_02_n = {
    0x90, 0xcb, 0x80, 0x91, 0x3e, 0xbb, 0x69, 0x6e, 0x08, 0x63, 0x81, 0xb5, 0xec, 0x42, 0x7b, 0x1f};
/// MD5("draft-ietf-ipsec-nat-t-ike-03").
inline constexpr std::array<std::uint8_t, 16> nat_t_draft_03 = {
    0x7d, 0x94, 0x19, 0xa6, 0x53, 0x10, 0xca, 0x6f, 0x2c, 0x17, 0x9d, 0x92, 0x15, 0x52, 0x9d, 0x56};
/// RFC 3706 §3: 14-byte hash, major 1, minor 0.
inline constexpr std::array<std::uint8_t, 16> dpd = {
    0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01, 0x00};
/// First 8 bytes of MD5("draft-ietf-ipsra-isakmp-xauth-06.txt").
inline constexpr std::array<std::uint8_t, 8> xauth = {0x09, 0x00, 0x26, 0x89, 0xdf, 0xd6, 0xb7, 0x12};
/// Cisco FRAGMENTATION: MD5("FRAGMENTATION") followed by 4 capability bytes, as strongSwan sends it.
inline constexpr std::array<std::uint8_t, 20> fragmentation = {
    0x40, 0x48, 0xb7, 0xd5, 0x6e, 0xbc, 0xe8, 0x85, 0x25, 0xe7,
    0xde, 0x7f, 0x00, 0xd6, 0xc2, 0xd3, 0x80, 0x00, 0x00, 0x00};
}  // namespace vendor_id

}  // namespace mipsec::ipsec::ike
