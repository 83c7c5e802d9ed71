// SPDX-License-Identifier: MIT
#include "mip/agent_advertisement_wire.hpp"

#include <algorithm>

#include "core/checksum.hpp"

namespace mipsec::mip {

std::optional<AgentAdvertisement> AgentAdvertisement::parse(const AgentAdvertisementView& v) noexcept {
    auto maae = v.mobility_extension();
    if (!maae) return std::nullopt;
    AgentAdvertisement a;
    a.code = v.code();
    a.lifetime = v.lifetime();
    a.sequence_number = maae->sequence_number();
    a.registration_lifetime = maae->registration_lifetime();
    a.flags = maae->flags();
    a.flags2 = maae->flags2();
    a.care_of_count = maae->care_of_count();
    for (std::size_t i = 0; i < std::min(a.care_of_count, max_care_of); ++i) a.care_of[i] = maae->care_of_address(i);
    auto prefixes = v.prefix_lengths();
    if (!prefixes.empty()) a.prefix_length = prefixes[0];
    return a;
}

std::size_t AgentAdvertisement::emitted_len() const noexcept {
    return AgentAdvertisementView::header_len + MobilityAgentExtView::fixed_len + 4 * std::min(care_of_count, max_care_of);
}

std::size_t AgentAdvertisement::emit(std::span<std::uint8_t> out) const noexcept {
    const std::size_t n = std::min(care_of_count, max_care_of);
    const std::size_t total = emitted_len();
    if (out.size() < total) return 0;
    out[0] = AgentAdvertisementView::icmp_type;
    out[1] = code;
    core::store_be16(out.data() + 2, 0);
    out[4] = 0;  // Num Addrs may be 0 in an Agent Advertisement (RFC 5944 §2.1)
    out[5] = 2;
    core::store_be16(out.data() + 6, lifetime);
    std::uint8_t* e = out.data() + AgentAdvertisementView::header_len;
    e[0] = discovery_extension::mobility_agent;
    e[1] = static_cast<std::uint8_t>(6 + 4 * n);
    core::store_be16(e + 2, sequence_number);
    core::store_be16(e + 4, registration_lifetime);
    e[6] = flags;
    e[7] = flags2;
    for (std::size_t i = 0; i < n; ++i) core::store_be32(e + 8 + 4 * i, care_of[i].value);
    core::store_be16(out.data() + 2, core::internet_checksum(out.first(total)));
    return total;
}

void emit_agent_solicitation(std::span<std::uint8_t> out) noexcept {
    std::fill_n(out.begin(), AgentSolicitationView::len, std::uint8_t{0});
    out[0] = AgentSolicitationView::icmp_type;
    core::store_be16(out.data() + 2, core::internet_checksum(out.first(AgentSolicitationView::len)));
}

}  // namespace mipsec::mip
