// SPDX-License-Identifier: MIT
#pragma once
// One IKE session in `mipsec status`: its IKE SA (peer, proposal, NAT, time left, counters) and CHILD_SAs
// (SPIs, algorithm, state, time to rekey and expiry, traffic from the ESP stage).
#include "core/status.hpp"
#include "core/time.hpp"
#include "ipsec/esp_tunnel_stage.hpp"
#include "ipsec/ike/session.hpp"

namespace mipsec::ipsec {

void report_ike_session(core::StatusSink& out, const ike::Session& session, const EspTunnelStage& esp, core::TimePoint now);

}  // namespace mipsec::ipsec
