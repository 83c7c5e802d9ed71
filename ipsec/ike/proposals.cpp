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
