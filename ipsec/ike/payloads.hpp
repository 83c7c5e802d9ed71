// SPDX-License-Identifier: MIT
#pragma once
// Value types for the ISAKMP payload bodies used by Main Mode, Quick Mode, Informational and
// Transaction exchanges (RFC 2408 §3.4-3.16, RFC 2407 §4.6, RFC 3947 §3.2/§5.2,
// draft-dukes-ike-mode-cfg §3.2). Each type holds the body only (after the 4-byte generic
// header); Message adds the generic headers and computes lengths and next-payload chaining.
//
// parse(body) validates the body against its own fixed part and counts (never reads past
// `body`); write(ByteWriter&) emits the body with reserved fields zero and reports values
// that do not fit their field through the writer. Types without a decoder here (CERT, CR,
// SIG, fragments, anything unknown) become UnknownPayload and are emitted verbatim.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <variant>
#include <vector>

#include "core/address.hpp"
#include "core/result.hpp"
#include "ipsec/ike/constants.hpp"
#include "ipsec/ike/data_attribute.hpp"

namespace mipsec::ipsec::ike {

class ByteWriter;

/// Transform payload (RFC 2408 §3.6): # | Transform-ID | Reserved2 (2) | SA attributes.
struct Transform {
    std::uint8_t number = 1;
    std::uint8_t transform_id = transform_key_ike;
    AttributeList attributes;

    static core::Result<Transform> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const Transform&, const Transform&) = default;
};

/// Proposal payload (RFC 2408 §3.5): # | Protocol-ID | SPI Size | # Transforms | SPI | Transforms.
/// # Transforms must equal the transforms present; the Transform chain uses Next Payload 3 / 0.
struct Proposal {
    std::uint8_t number = 1;
    std::uint8_t protocol_id = protocol_id::isakmp;
    Bytes spi;  // empty in phase 1; the sender's inbound SPI (4 bytes) for ESP
    std::vector<Transform> transforms;

    static core::Result<Proposal> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const Proposal&, const Proposal&) = default;
};

/// SA payload (RFC 2408 §3.4, RFC 2407 §4.6.1): DOI | Situation | Proposals (Next Payload 2 / 0).
/// Only SIT_IDENTITY_ONLY is decoded: the secrecy/integrity situations append labelled-domain
/// fields that nothing here uses (UnsupportedSituation).
struct SaPayload {
    std::uint32_t doi = doi::ipsec;
    std::uint32_t situation = situation::identity_only;
    std::vector<Proposal> proposals;

    static core::Result<SaPayload> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const SaPayload&, const SaPayload&) = default;
};

/// KE payload: the DH public value, which IKE pads to the modulus length (RFC 2409 §5).
struct KePayload {
    Bytes data;
    static core::Result<KePayload> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const KePayload&, const KePayload&) = default;
};

struct Ipv4Subnet {
    core::Ipv4Address address;
    core::Ipv4Address mask;
    friend constexpr bool operator==(const Ipv4Subnet&, const Ipv4Subnet&) = default;
};
struct Ipv4Range {
    core::Ipv4Address start;
    core::Ipv4Address end;
    friend constexpr bool operator==(const Ipv4Range&, const Ipv4Range&) = default;
};

/// ID payload, IPsec DOI (RFC 2407 §4.6.2): ID Type | Protocol ID | Port (2) | data.
struct IdPayload {
    std::uint8_t id_type = id_type::ipv4_addr;
    std::uint8_t protocol_id = 0;  // 0 / port 0 = any; send 0/0 in phase 1 (RFC 3947 with NAT-T)
    std::uint16_t port = 0;
    Bytes data;

    static IdPayload ipv4_addr(core::Ipv4Address a, std::uint8_t protocol = 0, std::uint16_t port = 0);
    static IdPayload ipv4_subnet(core::Ipv4Address address, core::Ipv4Address mask,
                                 std::uint8_t protocol = 0, std::uint16_t port = 0);
    static IdPayload ipv4_subnet(core::Ipv4Prefix prefix, std::uint8_t protocol = 0, std::uint16_t port = 0);
    static IdPayload ipv4_range(core::Ipv4Address start, core::Ipv4Address end,
                                std::uint8_t protocol = 0, std::uint16_t port = 0);
    static IdPayload fqdn(std::string_view name);
    static IdPayload user_fqdn(std::string_view name);

    /// Typed reads; nullopt when id_type differs or data has the wrong size.
    std::optional<core::Ipv4Address> as_ipv4_addr() const noexcept;
    std::optional<Ipv4Subnet> as_ipv4_subnet() const noexcept;
    /// The subnet as a prefix; nullopt also when the mask is not contiguous.
    std::optional<core::Ipv4Prefix> as_ipv4_prefix() const noexcept;
    std::optional<Ipv4Range> as_ipv4_range() const noexcept;
    /// FQDN or USER_FQDN text (no NUL terminator on the wire).
    std::optional<std::string_view> as_name() const noexcept;

    static core::Result<IdPayload> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const IdPayload&, const IdPayload&) = default;
};

/// HASH payload: prf output.
struct HashPayload {
    Bytes data;
    static core::Result<HashPayload> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const HashPayload&, const HashPayload&) = default;
};

/// NONCE payload: 8..256 random bytes (RFC 2409 §5); the size is policy, not checked here.
struct NoncePayload {
    Bytes data;
    static core::Result<NoncePayload> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const NoncePayload&, const NoncePayload&) = default;
};

/// Notification payload (RFC 2408 §3.14): DOI | Protocol-ID | SPI Size | Notify Type (2) | SPI | data.
struct NotifyPayload {
    std::uint32_t doi = doi::ipsec;
    std::uint8_t protocol_id = protocol_id::isakmp;
    std::uint16_t notify_type = 0;
    Bytes spi;   // ISAKMP SA: CKY-I | CKY-R (16 bytes), e.g. DPD (RFC 3706 §5.1)
    Bytes data;  // e.g. the 4-byte DPD sequence number

    bool is_error() const noexcept { return notify_type < notify_type::first_status; }
    static core::Result<NotifyPayload> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const NotifyPayload&, const NotifyPayload&) = default;
};

/// Delete payload (RFC 2408 §3.15): DOI | Protocol-ID | SPI Size | # SPIs (2) | SPIs.
/// Every SPI must be spi_size bytes; the SPIs must fill the body exactly.
struct DeletePayload {
    std::uint32_t doi = doi::ipsec;
    std::uint8_t protocol_id = protocol_id::ipsec_esp;
    std::uint8_t spi_size = 4;  // 16 (CKY-I | CKY-R) for protocol ISAKMP
    std::vector<Bytes> spis;

    static core::Result<DeletePayload> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const DeletePayload&, const DeletePayload&) = default;
};

/// Vendor ID payload: opaque bytes (see vendor_id:: for the ones we recognise).
struct VendorIdPayload {
    Bytes data;
    static core::Result<VendorIdPayload> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const VendorIdPayload&, const VendorIdPayload&) = default;
};

/// NAT-D payload (RFC 3947 §3.2): HASH(CKY-I | CKY-R | IP | Port). `draft` selects payload
/// type 130 of draft-ietf-ipsec-nat-t-ike-02/03 instead of 20; the body is the same.
struct NatDPayload {
    Bytes hash;
    bool draft = false;
    static core::Result<NatDPayload> parse(std::span<const std::uint8_t> body, bool draft);
    void write(ByteWriter& w) const;
    friend bool operator==(const NatDPayload&, const NatDPayload&) = default;
};

/// NAT-OA payload (RFC 3947 §5.2): ID Type (1 = IPv4, 5 = IPv6) | Reserved (3) | address.
/// Payload type 131 when `draft`.
struct NatOaPayload {
    std::uint8_t id_type = id_type::ipv4_addr;
    Bytes address;  // 4 bytes for IPv4, 16 for IPv6
    bool draft = false;

    static NatOaPayload ipv4(core::Ipv4Address a, bool draft = false);
    std::optional<core::Ipv4Address> as_ipv4() const noexcept;
    static core::Result<NatOaPayload> parse(std::span<const std::uint8_t> body, bool draft);
    void write(ByteWriter& w) const;
    friend bool operator==(const NatOaPayload&, const NatOaPayload&) = default;
};

/// Attribute payload, Mode Config (draft-dukes-ike-mode-cfg §3.2):
/// Type (CFG_REQUEST/REPLY/SET/ACK) | Reserved | Identifier (2) | data attributes (TV or TLV).
struct AttributePayload {
    std::uint8_t cfg_type = cfg_type::request;
    std::uint16_t identifier = 0;
    AttributeList attributes;

    static core::Result<AttributePayload> parse(std::span<const std::uint8_t> body);
    void write(ByteWriter& w) const;
    friend bool operator==(const AttributePayload&, const AttributePayload&) = default;
};

/// A payload type without a decoder here, kept so the caller can see (and report) it.
/// Emitted verbatim with `type` (which must not be 0).
struct UnknownPayload {
    std::uint8_t type = 0;
    Bytes data;
    void write(ByteWriter& w) const;
    friend bool operator==(const UnknownPayload&, const UnknownPayload&) = default;
};

using PayloadBody = std::variant<SaPayload, KePayload, IdPayload, HashPayload, NoncePayload,
                                 NotifyPayload, DeletePayload, VendorIdPayload, NatDPayload,
                                 NatOaPayload, AttributePayload, UnknownPayload>;

/// The payload type number a body is sent with.
std::uint8_t payload_type_of(const PayloadBody& body) noexcept;
/// True for the types parse_body() decodes (the rest become UnknownPayload).
bool is_decoded_payload_type(std::uint8_t type) noexcept;
/// Decodes a body by payload type; undecoded types give UnknownPayload.
core::Result<PayloadBody> parse_body(std::uint8_t type, std::span<const std::uint8_t> body);
void write_body(ByteWriter& w, const PayloadBody& body);
/// The body bytes as they go on the wire (RFC 2409 "_b" hash inputs, e.g. SAi_b, IDii_b, Ni_b,
/// for payloads we send; for received ones use Message::wire_body()).
core::Result<Bytes> emit_body(const PayloadBody& body);

}  // namespace mipsec::ipsec::ike
