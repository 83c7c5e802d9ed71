// SPDX-License-Identifier: MIT
#include "ipsec/ike/payloads.hpp"

#include <bit>

#include "core/endian.hpp"
#include "ipsec/ike/byte_writer.hpp"
#include "ipsec/ike/errc.hpp"
#include "ipsec/ike/payload_chain.hpp"

namespace mipsec::ipsec::ike {
namespace {

Bytes to_bytes(std::span<const std::uint8_t> s) { return Bytes(s.begin(), s.end()); }

Bytes be32_bytes(std::uint32_t v) {
    Bytes b(4);
    core::store_be32(b.data(), v);
    return b;
}

/// Writes a payload nested in a chain (Proposal in SA, Transform in Proposal): generic header
/// with `next`, then the body, then the length patched in.
template <class Body>
void write_nested(ByteWriter& w, std::uint8_t next, const Body& body) {
    std::size_t start = w.pos();
    w.u8(next);
    w.u8(0);
    w.u16(0);
    body.write(w);
    std::size_t len = w.pos() - start;
    if (len > 0xFFFF) return w.invalid();
    w.patch_u16(start + 2, static_cast<std::uint16_t>(len));
}

}  // namespace

// ---- Transform / Proposal / SA ------------------------------------------------------------

core::Result<Transform> Transform::parse(std::span<const std::uint8_t> body) {
    if (body.size() < 4) return Errc::InvalidLength;
    auto attrs = AttributeList::parse(body.subspan(4));
    if (!attrs) return Errc::Malformed;  // an attribute overruns its Transform
    return Transform{body[0], body[1], std::move(*attrs)};
}

void Transform::write(ByteWriter& w) const {
    w.u8(number);
    w.u8(transform_id);
    w.u16(0);
    attributes.write(w);
}

core::Result<Proposal> Proposal::parse(std::span<const std::uint8_t> body) {
    if (body.size() < 4) return Errc::InvalidLength;
    Proposal p;
    p.number = body[0];
    p.protocol_id = body[1];
    std::size_t spi_size = body[2];
    std::size_t n_transforms = body[3];
    if (4 + spi_size > body.size()) return Errc::Malformed;
    p.spi = to_bytes(body.subspan(4, spi_size));
    auto rest = body.subspan(4 + spi_size);
    PayloadIterator it(rest, n_transforms == 0 ? payload_type::none : payload_type::transform);
    while (auto e = it.next()) {
        // RFC 2408 §3.6: a Transform's Next Payload is 3 (another follows) or 0 (last).
        std::uint8_t np = e->view.next_payload();
        if (np != payload_type::none && np != payload_type::transform) return Errc::InvalidNextPayload;
        auto t = Transform::parse(e->view.body());
        if (!t) return t.error();
        p.transforms.push_back(std::move(*t));
    }
    if (it.error()) return it.error();
    // # Transforms must describe the chain, and the chain must fill the Proposal.
    if (p.transforms.size() != n_transforms || it.end_offset() != rest.size()) return Errc::Malformed;
    return p;
}

void Proposal::write(ByteWriter& w) const {
    if (spi.size() > 0xFF || transforms.size() > 0xFF) return w.invalid();
    w.u8(number);
    w.u8(protocol_id);
    w.u8(static_cast<std::uint8_t>(spi.size()));
    w.u8(static_cast<std::uint8_t>(transforms.size()));
    w.bytes(spi);
    for (std::size_t i = 0; i < transforms.size(); ++i)
        write_nested(w, i + 1 < transforms.size() ? payload_type::transform : payload_type::none, transforms[i]);
}

core::Result<SaPayload> SaPayload::parse(std::span<const std::uint8_t> body) {
    if (body.size() < 8) return Errc::InvalidLength;
    SaPayload sa;
    sa.doi = core::load_be32(body.data());
    sa.situation = core::load_be32(body.data() + 4);
    // RFC 2407 §4.6.1: secrecy/integrity situations add labelled-domain fields before the
    // proposals; without decoding them the proposals cannot be located.
    if (sa.situation & ~situation::identity_only) return Errc::UnsupportedSituation;
    auto rest = body.subspan(8);
    PayloadIterator it(rest, rest.empty() ? payload_type::none : payload_type::proposal);
    while (auto e = it.next()) {
        // RFC 2408 §3.5: a Proposal's Next Payload MUST be 2 or 0.
        std::uint8_t np = e->view.next_payload();
        if (np != payload_type::none && np != payload_type::proposal) return Errc::InvalidNextPayload;
        auto p = Proposal::parse(e->view.body());
        if (!p) return p.error();
        sa.proposals.push_back(std::move(*p));
    }
    if (it.error()) return it.error();
    if (it.end_offset() != rest.size()) return Errc::Malformed;
    return sa;
}

void SaPayload::write(ByteWriter& w) const {
    w.u32(doi);
    w.u32(situation);
    for (std::size_t i = 0; i < proposals.size(); ++i)
        write_nested(w, i + 1 < proposals.size() ? payload_type::proposal : payload_type::none, proposals[i]);
}

// ---- opaque bodies ------------------------------------------------------------------------

core::Result<KePayload> KePayload::parse(std::span<const std::uint8_t> body) { return KePayload{to_bytes(body)}; }
void KePayload::write(ByteWriter& w) const { w.bytes(data); }
core::Result<HashPayload> HashPayload::parse(std::span<const std::uint8_t> body) { return HashPayload{to_bytes(body)}; }
void HashPayload::write(ByteWriter& w) const { w.bytes(data); }
core::Result<NoncePayload> NoncePayload::parse(std::span<const std::uint8_t> body) { return NoncePayload{to_bytes(body)}; }
void NoncePayload::write(ByteWriter& w) const { w.bytes(data); }
core::Result<VendorIdPayload> VendorIdPayload::parse(std::span<const std::uint8_t> body) {
    return VendorIdPayload{to_bytes(body)};
}
void VendorIdPayload::write(ByteWriter& w) const { w.bytes(data); }
core::Result<NatDPayload> NatDPayload::parse(std::span<const std::uint8_t> body, bool draft) {
    return NatDPayload{to_bytes(body), draft};
}
void NatDPayload::write(ByteWriter& w) const { w.bytes(hash); }

void UnknownPayload::write(ByteWriter& w) const {
    if (type == payload_type::none) return w.invalid();
    w.bytes(data);
}

// ---- ID -----------------------------------------------------------------------------------

IdPayload IdPayload::ipv4_addr(core::Ipv4Address a, std::uint8_t protocol, std::uint16_t port) {
    return {id_type::ipv4_addr, protocol, port, be32_bytes(a.value)};
}

IdPayload IdPayload::ipv4_subnet(core::Ipv4Address address, core::Ipv4Address mask, std::uint8_t protocol,
                                 std::uint16_t port) {
    Bytes data = be32_bytes(address.value);
    Bytes m = be32_bytes(mask.value);
    data.insert(data.end(), m.begin(), m.end());
    return {id_type::ipv4_addr_subnet, protocol, port, std::move(data)};
}

IdPayload IdPayload::ipv4_subnet(core::Ipv4Prefix prefix, std::uint8_t protocol, std::uint16_t port) {
    return ipv4_subnet(prefix.network(), core::Ipv4Address{prefix.mask()}, protocol, port);
}

IdPayload IdPayload::ipv4_range(core::Ipv4Address start, core::Ipv4Address end, std::uint8_t protocol,
                                std::uint16_t port) {
    IdPayload id = ipv4_subnet(start, end, protocol, port);
    id.id_type = id_type::ipv4_addr_range;
    return id;
}

IdPayload IdPayload::fqdn(std::string_view name) {
    return {id_type::fqdn, 0, 0, Bytes(name.begin(), name.end())};
}

IdPayload IdPayload::user_fqdn(std::string_view name) {
    return {id_type::user_fqdn, 0, 0, Bytes(name.begin(), name.end())};
}

std::optional<core::Ipv4Address> IdPayload::as_ipv4_addr() const noexcept {
    if (id_type != id_type::ipv4_addr || data.size() != 4) return std::nullopt;
    return core::Ipv4Address{core::load_be32(data.data())};
}

std::optional<Ipv4Subnet> IdPayload::as_ipv4_subnet() const noexcept {
    if (id_type != id_type::ipv4_addr_subnet || data.size() != 8) return std::nullopt;
    return Ipv4Subnet{{core::load_be32(data.data())}, {core::load_be32(data.data() + 4)}};
}

std::optional<core::Ipv4Prefix> IdPayload::as_ipv4_prefix() const noexcept {
    auto s = as_ipv4_subnet();
    if (!s) return std::nullopt;
    std::uint32_t mask = s->mask.value;
    // Contiguous: the inverted mask plus one is a power of two (or zero for /0 wrap-around).
    std::uint32_t inv = ~mask;
    if ((inv & (inv + 1)) != 0) return std::nullopt;
    auto len = static_cast<std::uint8_t>(std::popcount(mask));
    return core::Ipv4Prefix{s->address, len};
}

std::optional<Ipv4Range> IdPayload::as_ipv4_range() const noexcept {
    if (id_type != id_type::ipv4_addr_range || data.size() != 8) return std::nullopt;
    return Ipv4Range{{core::load_be32(data.data())}, {core::load_be32(data.data() + 4)}};
}

std::optional<std::string_view> IdPayload::as_name() const noexcept {
    if (id_type != id_type::fqdn && id_type != id_type::user_fqdn) return std::nullopt;
    return std::string_view(reinterpret_cast<const char*>(data.data()), data.size());
}

core::Result<IdPayload> IdPayload::parse(std::span<const std::uint8_t> body) {
    if (body.size() < 4) return Errc::InvalidLength;
    return IdPayload{body[0], body[1], core::load_be16(body.data() + 2), to_bytes(body.subspan(4))};
}

void IdPayload::write(ByteWriter& w) const {
    w.u8(id_type);
    w.u8(protocol_id);
    w.u16(port);
    w.bytes(data);
}

// ---- Notification / Delete ----------------------------------------------------------------

core::Result<NotifyPayload> NotifyPayload::parse(std::span<const std::uint8_t> body) {
    if (body.size() < 8) return Errc::InvalidLength;
    NotifyPayload n;
    n.doi = core::load_be32(body.data());
    n.protocol_id = body[4];
    std::size_t spi_size = body[5];
    n.notify_type = core::load_be16(body.data() + 6);
    if (8 + spi_size > body.size()) return Errc::Malformed;
    n.spi = to_bytes(body.subspan(8, spi_size));
    n.data = to_bytes(body.subspan(8 + spi_size));
    return n;
}

void NotifyPayload::write(ByteWriter& w) const {
    if (spi.size() > 0xFF) return w.invalid();
    w.u32(doi);
    w.u8(protocol_id);
    w.u8(static_cast<std::uint8_t>(spi.size()));
    w.u16(notify_type);
    w.bytes(spi);
    w.bytes(data);
}

core::Result<DeletePayload> DeletePayload::parse(std::span<const std::uint8_t> body) {
    if (body.size() < 8) return Errc::InvalidLength;
    DeletePayload d;
    d.doi = core::load_be32(body.data());
    d.protocol_id = body[4];
    d.spi_size = body[5];
    std::size_t count = core::load_be16(body.data() + 6);
    auto rest = body.subspan(8);
    // SPIs must fill the body exactly; a count of zero-size SPIs names nothing to delete.
    if (count * d.spi_size != rest.size() || (d.spi_size == 0 && count != 0)) return Errc::Malformed;
    d.spis.reserve(count);
    for (std::size_t i = 0; i < count; ++i) d.spis.push_back(to_bytes(rest.subspan(i * d.spi_size, d.spi_size)));
    return d;
}

void DeletePayload::write(ByteWriter& w) const {
    if (spis.size() > 0xFFFF) return w.invalid();
    for (const auto& s : spis)
        if (s.size() != spi_size) return w.invalid();
    w.u32(doi);
    w.u8(protocol_id);
    w.u8(spi_size);
    w.u16(static_cast<std::uint16_t>(spis.size()));
    for (const auto& s : spis) w.bytes(s);
}

// ---- NAT-OA -------------------------------------------------------------------------------

NatOaPayload NatOaPayload::ipv4(core::Ipv4Address a, bool draft) {
    return {id_type::ipv4_addr, be32_bytes(a.value), draft};
}

std::optional<core::Ipv4Address> NatOaPayload::as_ipv4() const noexcept {
    if (id_type != id_type::ipv4_addr || address.size() != 4) return std::nullopt;
    return core::Ipv4Address{core::load_be32(address.data())};
}

core::Result<NatOaPayload> NatOaPayload::parse(std::span<const std::uint8_t> body, bool draft) {
    if (body.size() < 4) return Errc::InvalidLength;
    NatOaPayload oa{body[0], to_bytes(body.subspan(4)), draft};
    // RFC 3947 §5.2: the address is an IPv4 (type 1) or IPv6 (type 5) address.
    std::size_t want = oa.id_type == id_type::ipv4_addr ? 4 : oa.id_type == id_type::ipv6_addr ? 16 : 0;
    if (want == 0 || oa.address.size() != want) return Errc::Malformed;
    return oa;
}

void NatOaPayload::write(ByteWriter& w) const {
    w.u8(id_type);
    w.u8(0);
    w.u16(0);
    w.bytes(address);
}

// ---- Attribute (Mode Config) --------------------------------------------------------------

core::Result<AttributePayload> AttributePayload::parse(std::span<const std::uint8_t> body) {
    if (body.size() < 4) return Errc::InvalidLength;
    auto attrs = AttributeList::parse(body.subspan(4));
    if (!attrs) return Errc::Malformed;
    return AttributePayload{body[0], core::load_be16(body.data() + 2), std::move(*attrs)};
}

void AttributePayload::write(ByteWriter& w) const {
    w.u8(cfg_type);
    w.u8(0);
    w.u16(identifier);
    attributes.write(w);
}

// ---- dispatch -----------------------------------------------------------------------------

std::uint8_t payload_type_of(const PayloadBody& body) noexcept {
    struct Visitor {
        std::uint8_t operator()(const SaPayload&) const { return payload_type::sa; }
        std::uint8_t operator()(const KePayload&) const { return payload_type::ke; }
        std::uint8_t operator()(const IdPayload&) const { return payload_type::id; }
        std::uint8_t operator()(const HashPayload&) const { return payload_type::hash; }
        std::uint8_t operator()(const NoncePayload&) const { return payload_type::nonce; }
        std::uint8_t operator()(const NotifyPayload&) const { return payload_type::notification; }
        std::uint8_t operator()(const DeletePayload&) const { return payload_type::deletion; }
        std::uint8_t operator()(const VendorIdPayload&) const { return payload_type::vendor_id; }
        std::uint8_t operator()(const NatDPayload& p) const { return p.draft ? payload_type::nat_d_draft : payload_type::nat_d; }
        std::uint8_t operator()(const NatOaPayload& p) const { return p.draft ? payload_type::nat_oa_draft : payload_type::nat_oa; }
        std::uint8_t operator()(const AttributePayload&) const { return payload_type::attribute; }
        std::uint8_t operator()(const UnknownPayload& p) const { return p.type; }
    };
    return std::visit(Visitor{}, body);
}

bool is_decoded_payload_type(std::uint8_t type) noexcept {
    switch (type) {
        case payload_type::sa:
        case payload_type::ke:
        case payload_type::id:
        case payload_type::hash:
        case payload_type::nonce:
        case payload_type::notification:
        case payload_type::deletion:
        case payload_type::vendor_id:
        case payload_type::attribute:
        case payload_type::nat_d:
        case payload_type::nat_oa:
        case payload_type::nat_d_draft:
        case payload_type::nat_oa_draft:
            return true;
        default:
            return false;
    }
}

namespace {
template <class T>
core::Result<PayloadBody> lift(core::Result<T> r) {
    if (!r) return r.error();
    return PayloadBody{std::move(*r)};
}
}  // namespace

core::Result<PayloadBody> parse_body(std::uint8_t type, std::span<const std::uint8_t> body) {
    switch (type) {
        case payload_type::sa: return lift(SaPayload::parse(body));
        case payload_type::ke: return lift(KePayload::parse(body));
        case payload_type::id: return lift(IdPayload::parse(body));
        case payload_type::hash: return lift(HashPayload::parse(body));
        case payload_type::nonce: return lift(NoncePayload::parse(body));
        case payload_type::notification: return lift(NotifyPayload::parse(body));
        case payload_type::deletion: return lift(DeletePayload::parse(body));
        case payload_type::vendor_id: return lift(VendorIdPayload::parse(body));
        case payload_type::attribute: return lift(AttributePayload::parse(body));
        case payload_type::nat_d: return lift(NatDPayload::parse(body, false));
        case payload_type::nat_d_draft: return lift(NatDPayload::parse(body, true));
        case payload_type::nat_oa: return lift(NatOaPayload::parse(body, false));
        case payload_type::nat_oa_draft: return lift(NatOaPayload::parse(body, true));
        default: return PayloadBody{UnknownPayload{type, to_bytes(body)}};
    }
}

void write_body(ByteWriter& w, const PayloadBody& body) {
    std::visit([&w](const auto& p) { p.write(w); }, body);
}

core::Result<Bytes> emit_body(const PayloadBody& body) {
    ByteWriter m = ByteWriter::measuring();
    write_body(m, body);
    if (!m.ok()) return m.error();
    Bytes out(m.pos());
    ByteWriter w(out);
    write_body(w, body);
    if (!w.ok()) return w.error();
    return out;
}

}  // namespace mipsec::ipsec::ike
