// SPDX-License-Identifier: MIT
#pragma once
// Error codes of the ISAKMP codec (category "mipsec.ike"). Each names the first check a
// message failed, so a responder can pick the RFC 2408 §3.14.1 notify (most map to
// PAYLOAD-MALFORMED; InvalidMajorVersion and UnknownPayloadType have their own).
#include <system_error>

namespace mipsec::ipsec::ike {

enum class Errc {
    Truncated = 1,          // fewer bytes than a fixed header or a length field needs
    InvalidMajorVersion,    // header major version is not 1 (RFC 2408 §5.2)
    InvalidLength,          // header Length < 28, or a payload length below its fixed part
    PayloadPastEnd,         // a payload length reaches past the message (or enclosing payload)
    TooManyPayloads,        // chain longer than the codec's bound
    UnknownPayloadType,     // a payload type the caller asked to reject
    InvalidNextPayload,     // Proposal/Transform chain with a next payload other than 2/3 or 0
    Malformed,              // a payload body inconsistent with itself (counts, SPI sizes, ...)
    TrailingData,           // bytes after the last payload of a plaintext message
    UnsupportedSituation,   // SA situation other than SIT_IDENTITY_ONLY
    BufferTooSmall,         // emit: the output span is too short
    InvalidArgument,        // emit: a value does not fit its wire field
};

const std::error_category& ike_category() noexcept;
inline std::error_code make_error_code(Errc e) noexcept { return {static_cast<int>(e), ike_category()}; }

}  // namespace mipsec::ipsec::ike

template <>
struct std::is_error_code_enum<mipsec::ipsec::ike::Errc> : std::true_type {};
