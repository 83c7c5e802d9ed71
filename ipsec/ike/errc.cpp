// SPDX-License-Identifier: MIT
#include "ipsec/ike/errc.hpp"

#include <string>

namespace mipsec::ipsec::ike {
namespace {
class IkeCategory final : public std::error_category {
public:
    const char* name() const noexcept override { return "mipsec.ike"; }
    std::string message(int ev) const override {
        switch (static_cast<Errc>(ev)) {
            case Errc::Truncated: return "truncated";
            case Errc::InvalidMajorVersion: return "invalid ISAKMP major version";
            case Errc::InvalidLength: return "invalid length field";
            case Errc::PayloadPastEnd: return "payload length past end of message";
            case Errc::TooManyPayloads: return "too many payloads";
            case Errc::UnknownPayloadType: return "unknown payload type";
            case Errc::InvalidNextPayload: return "invalid next payload in proposal/transform chain";
            case Errc::Malformed: return "malformed payload";
            case Errc::TrailingData: return "trailing data after last payload";
            case Errc::UnsupportedSituation: return "unsupported SA situation";
            case Errc::BufferTooSmall: return "output buffer too small";
            case Errc::InvalidArgument: return "value does not fit its wire field";
        }
        return "unknown error";
    }
};
}  // namespace

const std::error_category& ike_category() noexcept {
    static const IkeCategory category;
    return category;
}
}  // namespace mipsec::ipsec::ike
