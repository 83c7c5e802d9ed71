// SPDX-License-Identifier: MIT
#include "ipsec/ike/proposals.hpp"

#include <chrono>

#include "core/endian.hpp"

namespace mipsec::ipsec::ike {
namespace {

std::uint64_t seconds_of(core::Duration d) {
    auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
    return s < 0 ? 0 : static_cast<std::uint64_t>(s);
}

/// Life Type/Duration pairs (RFC 2409 App. A, RFC 2407 §4.5): the duration must follow its
/// type. Only seconds are supported; a kilobyte lifetime makes the transform unusable for us.
std::optional<core::Duration> life_seconds(const AttributeList& attrs, std::uint16_t type_attr,
                                           std::uint16_t duration_attr, core::Duration dflt) {
    std::optional<core::Duration> out = dflt;
    std::uint16_t current_type = 0;
    for (const auto& a : attrs) {
        if (a.type == type_attr) {
            auto v = a.as_integer();
            if (!v) return std::nullopt;
            current_type = static_cast<std::uint16_t>(*v);
            if (current_type != life_type::seconds) return std::nullopt;
        } else if (a.type == duration_attr) {
            auto v = a.as_integer();
            if (!v || current_type != life_type::seconds || *v == 0) return std::nullopt;
            out = std::chrono::seconds(static_cast<std::int64_t>(std::min<std::uint64_t>(*v, 0xFFFFFFFFu)));
        }
    }
    return out;
}

}  // namespace

std::optional<crypto::ModpGroup> modp_group_from(std::uint64_t g) noexcept {
    if (g == dh_group::modp_1024) return crypto::ModpGroup::Modp1024;
    if (g == dh_group::modp_2048) return crypto::ModpGroup::Modp2048;
    return std::nullopt;
}

// ---- IKE -------------------------------------------------------------------------------

crypto::CipherAlgorithm IkeProposal::cipher() const noexcept {
    return key_bits == 256 ? crypto::CipherAlgorithm::AesCbc256 : crypto::CipherAlgorithm::AesCbc128;
}
crypto::MacAlgorithm IkeProposal::prf() const noexcept {
    return hash == IkeHash::Sha256 ? crypto::MacAlgorithm::HmacSha256 : crypto::MacAlgorithm::HmacSha1;
}
crypto::HashAlgorithm IkeProposal::hash_algorithm() const noexcept {
    return hash == IkeHash::Sha256 ? crypto::HashAlgorithm::Sha256 : crypto::HashAlgorithm::Sha1;
}

Transform IkeProposal::to_transform(std::uint8_t number) const {
    Transform t;
    t.number = number;
    t.transform_id = transform_key_ike;
    t.attributes.add(DataAttribute::basic(phase1_attr::encryption, phase1_encryption::aes_cbc))
        .add(DataAttribute::basic(phase1_attr::key_length, key_bits))
        .add(DataAttribute::basic(phase1_attr::hash, hash == IkeHash::Sha256 ? phase1_hash::sha2_256 : phase1_hash::sha1))
        .add(DataAttribute::basic(phase1_attr::group_description, static_cast<std::uint16_t>(group)))
        .add(DataAttribute::basic(phase1_attr::auth_method, auth_method::pre_shared_key))
        .add(DataAttribute::basic(phase1_attr::life_type, life_type::seconds))
        .add(DataAttribute::integer(phase1_attr::life_duration, seconds_of(lifetime)));
    return t;
}

std::optional<IkeProposal> IkeProposal::from_transform(const Transform& t) {
    if (t.transform_id != transform_key_ike) return std::nullopt;
    const auto& a = t.attributes;
    for (const auto& attr : a) {
        switch (attr.type) {
        case phase1_attr::encryption: case phase1_attr::key_length: case phase1_attr::hash:
        case phase1_attr::group_description: case phase1_attr::auth_method:
        case phase1_attr::life_type: case phase1_attr::life_duration:
            break;
        default:
            return std::nullopt;  // PRF, group type, ...: not something we can honour
        }
    }
    if (a.integer(phase1_attr::encryption) != phase1_encryption::aes_cbc) return std::nullopt;
    if (a.integer(phase1_attr::auth_method) != auth_method::pre_shared_key) return std::nullopt;
    IkeProposal p;
    auto kl = a.integer(phase1_attr::key_length);
    if (kl != 128u && kl != 256u) return std::nullopt;  // RFC 3602: Key Length is a MUST for AES
    p.key_bits = static_cast<std::uint16_t>(*kl);
    auto h = a.integer(phase1_attr::hash);
    if (h == phase1_hash::sha1)
        p.hash = IkeHash::Sha1;
    else if (h == phase1_hash::sha2_256)
        p.hash = IkeHash::Sha256;
    else
        return std::nullopt;
    auto g = a.integer(phase1_attr::group_description);
    if (!g) return std::nullopt;
    auto group = modp_group_from(*g);
    if (!group) return std::nullopt;
    p.group = *group;
    // RFC 2409 App. A: default lifetime 8 hours when none is given.
    auto life = life_seconds(a, phase1_attr::life_type, phase1_attr::life_duration, std::chrono::hours(8));
    if (!life) return std::nullopt;
    p.lifetime = *life;
    return p;
}

SaPayload make_ike_sa(std::span<const IkeProposal> proposals) {
    SaPayload sa;
    Proposal prop;
    prop.number = 1;
    prop.protocol_id = protocol_id::isakmp;
    for (std::size_t i = 0; i < proposals.size(); ++i)
        prop.transforms.push_back(proposals[i].to_transform(static_cast<std::uint8_t>(i + 1)));
    sa.proposals.push_back(std::move(prop));
    return sa;
}

std::optional<IkeSelection> select_ike(const SaPayload& offer, std::span<const IkeProposal> ours) {
    if (offer.doi != doi::ipsec) return std::nullopt;
    for (const auto& prop : offer.proposals) {
        if (prop.protocol_id != protocol_id::isakmp) continue;
        for (const auto& t : prop.transforms) {
            auto p = IkeProposal::from_transform(t);
            if (!p) continue;
            for (const auto& mine : ours) {
                if (!mine.same_algorithms(*p)) continue;
                IkeSelection sel;
                sel.proposal = *p;
                sel.reply.doi = offer.doi;
                sel.reply.situation = offer.situation;
                Proposal rp;
                rp.number = prop.number;
                rp.protocol_id = prop.protocol_id;
                rp.spi = prop.spi;
                rp.transforms.push_back(t);
                sel.reply.proposals.push_back(std::move(rp));
                return sel;
            }
        }
    }
    return std::nullopt;
}

std::optional<IkeProposal> accept_ike_reply(const SaPayload& reply, std::span<const IkeProposal> offered) {
    if (reply.proposals.size() != 1 || reply.proposals[0].transforms.size() != 1) return std::nullopt;
    if (reply.proposals[0].protocol_id != protocol_id::isakmp) return std::nullopt;
    auto p = IkeProposal::from_transform(reply.proposals[0].transforms[0]);
    if (!p) return std::nullopt;
    for (const auto& o : offered)
        if (o.same_algorithms(*p)) {
            IkeProposal out = *p;
            out.lifetime = std::min(o.lifetime, p->lifetime);
            return out;
        }
    return std::nullopt;
}

// ---- ESP -------------------------------------------------------------------------------

std::string_view to_string(EspAlgorithm a) noexcept {
    switch (a) {
    case EspAlgorithm::AesGcm128: return "aes128gcm16";
    case EspAlgorithm::AesGcm256: return "aes256gcm16";
    case EspAlgorithm::AesCbc128HmacSha1: return "aes128-sha1";
    case EspAlgorithm::AesCbc256HmacSha1: return "aes256-sha1";
    case EspAlgorithm::AesCbc128HmacSha256: return "aes128-sha256";
    case EspAlgorithm::AesCbc256HmacSha256: return "aes256-sha256";
    }
    return "?";
}
bool is_aead(EspAlgorithm a) noexcept { return a == EspAlgorithm::AesGcm128 || a == EspAlgorithm::AesGcm256; }
std::size_t cipher_key_len(EspAlgorithm a) noexcept {
    switch (a) {
    case EspAlgorithm::AesGcm128: case EspAlgorithm::AesCbc128HmacSha1: case EspAlgorithm::AesCbc128HmacSha256:
        return 16;
    default:
        return 32;
    }
}
std::size_t salt_len(EspAlgorithm a) noexcept { return is_aead(a) ? 4 : 0; }
std::size_t integrity_key_len(EspAlgorithm a) noexcept {
    switch (a) {
    case EspAlgorithm::AesCbc128HmacSha1: case EspAlgorithm::AesCbc256HmacSha1: return 20;
    case EspAlgorithm::AesCbc128HmacSha256: case EspAlgorithm::AesCbc256HmacSha256: return 32;
    default: return 0;
    }
}

Transform EspProposal::to_transform(std::uint8_t number, std::optional<crypto::ModpGroup> pfs_group,
                                    bool udp_encap) const {
    Transform t;
    t.number = number;
    t.transform_id = is_aead(algorithm) ? esp_transform::aes_gcm_16 : esp_transform::aes_cbc;
    t.attributes.add(DataAttribute::basic(phase2_attr::key_length, static_cast<std::uint16_t>(cipher_key_len(algorithm) * 8)));
    // Pitfall 8: no Authentication Algorithm with AES-GCM (RFC 4106 §5.1).
    if (!is_aead(algorithm)) {
        bool sha1 = algorithm == EspAlgorithm::AesCbc128HmacSha1 || algorithm == EspAlgorithm::AesCbc256HmacSha1;
        t.attributes.add(DataAttribute::basic(phase2_attr::auth_algorithm,
                                              sha1 ? auth_algorithm::hmac_sha1 : auth_algorithm::hmac_sha2_256));
    }
    // RFC 2409 §5.5: with PFS the group must be in every transform.
    if (pfs_group) t.attributes.add(DataAttribute::basic(phase2_attr::group_description, static_cast<std::uint16_t>(*pfs_group)));
    t.attributes.add(DataAttribute::basic(phase2_attr::encapsulation_mode,
                                          udp_encap ? encapsulation_mode::udp_tunnel : encapsulation_mode::tunnel))
        .add(DataAttribute::basic(phase2_attr::sa_life_type, life_type::seconds))
        .add(DataAttribute::integer(phase2_attr::sa_life_duration, seconds_of(lifetime)));
    return t;
}

std::optional<EspOffer> EspOffer::from_transform(const Transform& t) {
    const auto& a = t.attributes;
    for (const auto& attr : a) {
        switch (attr.type) {
        case phase2_attr::sa_life_type: case phase2_attr::sa_life_duration: case phase2_attr::group_description:
        case phase2_attr::encapsulation_mode: case phase2_attr::auth_algorithm: case phase2_attr::key_length:
            break;
        default:
            return std::nullopt;  // ESN, key rounds, ...: not implemented, so not acceptable
        }
    }
    EspOffer o;
    auto kl = a.integer(phase2_attr::key_length);
    if (kl != 128u && kl != 256u) return std::nullopt;
    bool k256 = *kl == 256;
    auto auth = a.integer(phase2_attr::auth_algorithm);
    if (t.transform_id == esp_transform::aes_gcm_16) {
        if (auth) return std::nullopt;
        o.proposal.algorithm = k256 ? EspAlgorithm::AesGcm256 : EspAlgorithm::AesGcm128;
    } else if (t.transform_id == esp_transform::aes_cbc) {
        if (auth == auth_algorithm::hmac_sha1)
            o.proposal.algorithm = k256 ? EspAlgorithm::AesCbc256HmacSha1 : EspAlgorithm::AesCbc128HmacSha1;
        else if (auth == auth_algorithm::hmac_sha2_256)
            o.proposal.algorithm = k256 ? EspAlgorithm::AesCbc256HmacSha256 : EspAlgorithm::AesCbc128HmacSha256;
        else
            return std::nullopt;
    } else {
        return std::nullopt;
    }
    if (auto g = a.integer(phase2_attr::group_description)) {
        o.pfs_group = modp_group_from(*g);
        if (!o.pfs_group) return std::nullopt;
    }
    auto mode = a.integer(phase2_attr::encapsulation_mode);
    o.encapsulation = mode ? static_cast<std::uint16_t>(*mode) : encapsulation_mode::tunnel;
    // RFC 2407 §4.5: 28800 s when no lifetime is offered.
    auto life = life_seconds(a, phase2_attr::sa_life_type, phase2_attr::sa_life_duration, std::chrono::seconds(28800));
    if (!life) return std::nullopt;
    o.proposal.lifetime = *life;
    return o;
}

SaPayload make_esp_sa(std::span<const EspProposal> proposals, std::uint32_t spi_in,
                      std::optional<crypto::ModpGroup> pfs_group, bool udp_encap) {
    SaPayload sa;
    Proposal prop;
    prop.number = 1;
    prop.protocol_id = protocol_id::ipsec_esp;
    prop.spi.resize(4);
    core::store_be32(prop.spi.data(), spi_in);
    for (std::size_t i = 0; i < proposals.size(); ++i)
        prop.transforms.push_back(proposals[i].to_transform(static_cast<std::uint8_t>(i + 1), pfs_group, udp_encap));
    sa.proposals.push_back(std::move(prop));
    return sa;
}

namespace {
bool encapsulation_ok(std::uint16_t mode, bool udp_encap) {
    return udp_encap ? mode == encapsulation_mode::udp_tunnel : mode == encapsulation_mode::tunnel;
}
}  // namespace

std::optional<EspSelection> select_esp(const SaPayload& offer, std::span<const EspProposal> ours,
                                       std::optional<crypto::ModpGroup> pfs_group, bool udp_encap,
                                       std::uint32_t spi_in) {
    if (offer.doi != doi::ipsec) return std::nullopt;
    for (std::size_t pi = 0; pi < offer.proposals.size(); ++pi) {
        const auto& prop = offer.proposals[pi];
        // Proposals sharing a number form an AND bundle (AH+ESP, IPComp): not supported.
        bool bundled = (pi > 0 && offer.proposals[pi - 1].number == prop.number) ||
                       (pi + 1 < offer.proposals.size() && offer.proposals[pi + 1].number == prop.number);
        if (bundled || prop.protocol_id != protocol_id::ipsec_esp || prop.spi.size() != 4) continue;
        for (const auto& t : prop.transforms) {
            auto o = EspOffer::from_transform(t);
            if (!o || !encapsulation_ok(o->encapsulation, udp_encap)) continue;
            if (pfs_group && o->pfs_group != pfs_group) continue;
            for (const auto& mine : ours) {
                if (mine.algorithm != o->proposal.algorithm) continue;
                EspSelection sel;
                sel.offer = *o;
                sel.offer.proposal.lifetime = std::min(o->proposal.lifetime, mine.lifetime);
                sel.spi_out = core::load_be32(prop.spi.data());
                sel.reply.doi = offer.doi;
                sel.reply.situation = offer.situation;
                Proposal rp;
                rp.number = prop.number;
                rp.protocol_id = prop.protocol_id;
                rp.spi.resize(4);
                core::store_be32(rp.spi.data(), spi_in);
                rp.transforms.push_back(t);
                sel.reply.proposals.push_back(std::move(rp));
                return sel;
            }
        }
    }
    return std::nullopt;
}

std::optional<EspAccepted> accept_esp_reply(const SaPayload& reply, std::span<const EspProposal> offered,
                                            std::optional<crypto::ModpGroup> pfs_group, bool udp_encap) {
    if (reply.proposals.size() != 1 || reply.proposals[0].transforms.size() != 1) return std::nullopt;
    const auto& prop = reply.proposals[0];
    if (prop.protocol_id != protocol_id::ipsec_esp || prop.spi.size() != 4) return std::nullopt;
    auto o = EspOffer::from_transform(prop.transforms[0]);
    if (!o || !encapsulation_ok(o->encapsulation, udp_encap) || o->pfs_group != pfs_group) return std::nullopt;
    for (const auto& mine : offered)
        if (mine.algorithm == o->proposal.algorithm) {
            EspAccepted acc{*o, core::load_be32(prop.spi.data())};
            acc.offer.proposal.lifetime = std::min(o->proposal.lifetime, mine.lifetime);
            return acc;
        }
    return std::nullopt;
}

// ---- traffic selectors -----------------------------------------------------------------

// ---- names ---------------------------------------------------------------------------------

namespace {

std::string group_name(std::uint64_t g) {
    switch (g) {
    case dh_group::modp_768: return "modp768";
    case dh_group::modp_1024: return "modp1024";
    case dh_group::modp_1536: return "modp1536";
    case dh_group::modp_2048: return "modp2048";
    case dh_group::modp_3072: return "modp3072";
    case dh_group::modp_4096: return "modp4096";
    case 17: return "modp6144";
    case 18: return "modp8192";
    case 19: return "ecp256";
    case 20: return "ecp384";
    case 21: return "ecp521";
    case 31: return "curve25519";
    default: return "group" + std::to_string(g);
    }
}

std::string key_bits(const AttributeList& a, std::uint16_t type) {
    auto kl = a.integer(type);
    return kl ? std::to_string(*kl) : std::string();
}

std::string ike_transform_name(const Transform& t) {
    if (t.transform_id != transform_key_ike) return "transform " + std::to_string(t.transform_id);
    const auto& a = t.attributes;
    std::string s;
    switch (a.integer(phase1_attr::encryption).value_or(0)) {
    case phase1_encryption::aes_cbc: s = "aes" + key_bits(a, phase1_attr::key_length); break;
    case phase1_encryption::triple_des_cbc: s = "3des"; break;
    case phase1_encryption::des_cbc: s = "des"; break;
    default: s = "enc" + std::to_string(a.integer(phase1_attr::encryption).value_or(0));
    }
    switch (a.integer(phase1_attr::hash).value_or(0)) {
    case phase1_hash::md5: s += "-md5"; break;
    case phase1_hash::sha1: s += "-sha1"; break;
    case phase1_hash::sha2_256: s += "-sha256"; break;
    case phase1_hash::sha2_384: s += "-sha384"; break;
    case phase1_hash::sha2_512: s += "-sha512"; break;
    default: s += "-hash" + std::to_string(a.integer(phase1_attr::hash).value_or(0));
    }
    if (auto g = a.integer(phase1_attr::group_description)) s += "-" + group_name(*g);
    auto auth = a.integer(phase1_attr::auth_method).value_or(0);
    if (auth == auth_method::rsa_signature) s += " [RSA signatures]";
    else if (auth == auth_method::xauth_init_psk || auth == auth_method::xauth_resp_psk) s += " [XAuth PSK]";
    else if (auth != auth_method::pre_shared_key) s += " [auth method " + std::to_string(auth) + "]";
    return s;
}

std::string esp_transform_name(const Transform& t) {
    const auto& a = t.attributes;
    const std::string bits = key_bits(a, phase2_attr::key_length);
    std::string s;
    switch (t.transform_id) {
    case esp_transform::aes_gcm_16: s = "aes" + bits + "gcm16"; break;
    case esp_transform::aes_gcm_12: s = "aes" + bits + "gcm12"; break;
    case esp_transform::aes_gcm_8: s = "aes" + bits + "gcm8"; break;
    case esp_transform::aes_cbc: s = "aes" + bits; break;
    case esp_transform::aes_ctr: s = "aes" + bits + "ctr"; break;
    case esp_transform::triple_des: s = "3des"; break;
    case esp_transform::null: s = "null"; break;
    default: s = "esp-transform" + std::to_string(t.transform_id);
    }
    if (auto auth = a.integer(phase2_attr::auth_algorithm)) {
        switch (*auth) {
        case auth_algorithm::hmac_md5: s += "-md5"; break;
        case auth_algorithm::hmac_sha1: s += "-sha1"; break;
        case auth_algorithm::hmac_sha2_256: s += "-sha256"; break;
        case auth_algorithm::hmac_sha2_384: s += "-sha384"; break;
        case auth_algorithm::hmac_sha2_512: s += "-sha512"; break;
        default: s += "-auth" + std::to_string(*auth);
        }
    }
    if (auto g = a.integer(phase2_attr::group_description)) s += "-" + group_name(*g);
    switch (a.integer(phase2_attr::encapsulation_mode).value_or(encapsulation_mode::tunnel)) {
    case encapsulation_mode::tunnel: break;
    case encapsulation_mode::udp_tunnel: case encapsulation_mode::udp_tunnel_draft: s += " [UDP tunnel]"; break;
    case encapsulation_mode::transport: case encapsulation_mode::udp_transport:
    case encapsulation_mode::udp_transport_draft: s += " [transport]"; break;
    default: s += " [mode " + std::to_string(*a.integer(phase2_attr::encapsulation_mode)) + "]";
    }
    return s;
}

}  // namespace

std::string to_string(const IkeProposal& p) {
    return "aes" + std::to_string(p.key_bits) + (p.hash == IkeHash::Sha256 ? "-sha256-" : "-sha1-") +
           group_name(static_cast<std::uint16_t>(p.group));
}

std::string describe(std::span<const IkeProposal> proposals) {
    std::string s;
    for (const auto& p : proposals) s += (s.empty() ? "" : ", ") + to_string(p);
    return s.empty() ? "nothing" : s;
}

std::string describe(std::span<const EspProposal> proposals, std::optional<crypto::ModpGroup> pfs_group) {
    std::string s;
    for (const auto& p : proposals) {
        s += (s.empty() ? "" : ", ") + std::string(to_string(p.algorithm));
        if (pfs_group) s += "-" + group_name(static_cast<std::uint16_t>(*pfs_group));
    }
    if (s.empty()) return "nothing";
    return pfs_group ? s : s + " (no PFS)";
}

std::string describe_offer(const SaPayload& offer) {
    constexpr std::size_t max_named = 12;  // a hostile offer must not make a huge log line
    std::string s;
    std::size_t named = 0, left = 0;
    for (const auto& prop : offer.proposals) {
        for (const auto& t : prop.transforms) {
            if (named == max_named) {
                ++left;
                continue;
            }
            std::string name = prop.protocol_id == protocol_id::isakmp     ? ike_transform_name(t)
                               : prop.protocol_id == protocol_id::ipsec_esp ? esp_transform_name(t)
                                                                            : "protocol " + std::to_string(prop.protocol_id);
            s += (s.empty() ? "" : ", ") + name;
            ++named;
        }
    }
    if (left) s += " and " + std::to_string(left) + " more";
    return s.empty() ? "nothing" : s;
}

IdPayload to_id(core::Ipv4Prefix ts) {
    if (ts.length == 32) return IdPayload::ipv4_addr(ts.address);
    return IdPayload::ipv4_subnet(core::Ipv4Prefix{ts.network(), ts.length});
}

std::optional<core::Ipv4Prefix> from_id(const IdPayload& id) {
    if (id.protocol_id != 0 || id.port != 0) return std::nullopt;
    if (auto a = id.as_ipv4_addr()) return core::Ipv4Prefix{*a, 32};
    if (auto p = id.as_ipv4_prefix()) return core::Ipv4Prefix{p->network(), p->length};
    if (auto r = id.as_ipv4_range()) {
        // A range is usable only when it is exactly one prefix.
        std::uint32_t span = r->end.value - r->start.value;
        if (r->end.value < r->start.value) return std::nullopt;
        if (span == 0xFFFFFFFFu) return core::Ipv4Prefix{{0}, 0};
        std::uint32_t size = span + 1;
        if ((size & (size - 1)) != 0 || (r->start.value & span) != 0) return std::nullopt;
        std::uint8_t len = 32;
        while (size > 1) {
            size >>= 1;
            --len;
        }
        return core::Ipv4Prefix{r->start, len};
    }
    return std::nullopt;
}

}  // namespace mipsec::ipsec::ike
