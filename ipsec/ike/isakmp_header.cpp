// SPDX-License-Identifier: MIT
#include "ipsec/ike/isakmp_header.hpp"

#include <algorithm>

#include "ipsec/ike/errc.hpp"

namespace mipsec::ipsec::ike {

std::array<std::uint8_t, 16> IsakmpHeader::cookies() const noexcept {
    std::array<std::uint8_t, 16> out{};
    std::copy(initiator_cookie.begin(), initiator_cookie.end(), out.begin());
    std::copy(responder_cookie.begin(), responder_cookie.end(), out.begin() + 8);
    return out;
}

IsakmpHeader IsakmpHeader::parse(const IsakmpHeaderView& v) noexcept {
    IsakmpHeader h;
    std::ranges::copy(v.initiator_cookie(), h.initiator_cookie.begin());
    std::ranges::copy(v.responder_cookie(), h.responder_cookie.begin());
    h.next_payload = v.next_payload();
    h.version = v.version();
    h.exchange_type = v.exchange_type();
    h.flags = v.flags();
    h.message_id = v.message_id();
    h.length = v.length();
    return h;
}

core::Result<std::size_t> IsakmpHeader::emit(std::span<std::uint8_t> out) const noexcept {
    if (out.size() < len) return Errc::BufferTooSmall;
    std::ranges::copy(initiator_cookie, out.begin());
    std::ranges::copy(responder_cookie, out.begin() + 8);
    out[16] = next_payload;
    out[17] = version;
    out[18] = exchange_type;
    out[19] = flags;
    core::store_be32(out.data() + 20, message_id);
    core::store_be32(out.data() + 24, length);
    return len;
}

}  // namespace mipsec::ipsec::ike
