// SPDX-License-Identifier: MIT
#include "ipsec/ike_status.hpp"

#include <chrono>
#include <string>

namespace mipsec::ipsec {

void report_ike_session(core::StatusSink& out, const ike::Session& session, const EspTunnelStage& esp, core::TimePoint now) {
    const auto& c = session.counters();
    out.begin_object("ike_counters");
    out.field("retransmitted", c.retransmitted);
    out.field("dropped_malformed", c.dropped_malformed);
    out.field("dropped_auth", c.dropped_auth);
    out.field("dropped_replay", c.dropped_replay);
    out.field("dpd_sent", c.dpd_sent);
    out.field("dpd_acked", c.dpd_acked);
    out.field("rekey_collisions", c.rekey_collisions);
    out.end();
    const auto& ike_sa = session.ike_sa();
    out.field("ike_peer", ike_sa.remote.to_string());
    out.field("ike_proposal", std::string(ike_sa.proposal.key_bits == 256 ? "aes256-" : "aes128-") +
                                  (ike_sa.proposal.hash == ike::IkeHash::Sha256 ? "sha256-" : "sha1-") +
                                  (ike_sa.proposal.group == crypto::ModpGroup::Modp1024 ? "modp1024" : "modp2048"));
    out.field("nat_detected", ike_sa.nat_detected());
    if (session.state() == ike::SessionState::Established && ike_sa.proposal.lifetime > core::Duration::zero()) {
        auto left = session.established_at() + ike_sa.proposal.lifetime - now;
        out.field("ike_expires_in_s", static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::seconds>(left).count()));
    }
    out.begin_array("child_sas");
    for (const auto& child : session.children()) {
        out.begin_element();
        out.field("spi_in", static_cast<std::uint64_t>(child.spi_in));
        out.field("spi_out", static_cast<std::uint64_t>(child.spi_out));
        out.field("algorithm", ike::to_string(child.algorithm));
        // rekeyed: replaced by a newer SA, still accepting late packets, deleted shortly.
        out.field("state", child.superseded ? "rekeyed" : "installed");
        out.field("udp_encapsulation", child.udp_encapsulation);
        auto seconds_until = [&](core::Duration d) {
            auto left = child.installed_at + d - now;
            return static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::seconds>(left).count());
        };
        if (child.soft_lifetime != core::Duration::zero()) out.field("rekey_in_s", seconds_until(child.soft_lifetime));
        if (child.hard_lifetime != core::Duration::zero()) out.field("expires_in_s", seconds_until(child.hard_lifetime));
        if (const auto* sa = esp.find_inbound(child.spi_in)) {
            out.field("packets_in", sa->counters().packets);
            out.field("bytes_in", sa->counters().bytes);
        }
        if (const auto* sa = esp.outbound(); sa && sa->spi() == child.spi_out) {
            out.field("packets_out", sa->counters().packets);
            out.field("bytes_out", sa->counters().bytes);
        }
        out.end();
    }
    out.end();
}

}  // namespace mipsec::ipsec
