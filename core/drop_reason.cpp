// SPDX-License-Identifier: MIT
#include "core/drop_reason.hpp"

#include <array>

namespace mipsec::core {

std::string_view to_string(DropReason r) noexcept {
    static constexpr std::array<std::string_view, drop_reason_count> names = {
        "none", "truncated", "malformed", "no_headroom", "no_tailroom", "no_buffer", "too_big",
        "ttl_expired", "fragment", "unexpected_protocol", "not_for_us", "policy_mismatch", "loop",
        "unknown_spi", "replayed_sequence", "sequence_too_old", "auth_failed", "bad_padding",
        "bad_next_header", "dummy_packet", "sa_expired", "sequence_exhausted", "no_sa",
        "no_binding", "binding_mismatch", "not_registered", "misplaced_keepalive",
        "unknown_message", "rate_limited", "blocked", "internal", "udp_encap_missing",
        "impaired", "not_on_link", "bad_vnet_header", "gso_inconsistent", "gso_size_invalid", "bad_checksum",
    };
    auto i = static_cast<std::size_t>(r);
    return i < names.size() ? names[i] : "invalid";
}

}  // namespace mipsec::core
