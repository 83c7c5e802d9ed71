// SPDX-License-Identifier: MIT
#pragma once
// JSON rendering of pipeline counters, of what stages report through core::StatusSink, and of
// the transport's and devices' loss counters.
#include <nlohmann/json.hpp>

#include "apps/shell/transport.hpp"
#include "core/pipeline.hpp"
#include "tun/device.hpp"
#include "tun/linux_device.hpp"

namespace mipsec::shell {
nlohmann::json pipeline_status(const core::Pipeline& pipeline);
/// Failed writes by reason, only the reasons that occurred: {"message_too_long": 3}.
nlohmann::json write_failures_status(const tun::WriteFailures& failures);
/// A TUN device's offloads: what the kernel granted (["csum", "tso4", "uso4", "uso6"], empty
/// if nothing), super-packets cut and merged, and the drops by reason that occurred.
nlohmann::json offload_status(unsigned granted, const tun::OffloadCounters& counters);
/// Path MTUs the transport learned: [{"destination": "192.0.2.2", "mtu": 1400}].
nlohmann::json path_mtu_status(const Transport& transport);
/// A UDP socket's offloads into its status object: "gso"/"gro" (in use), "gso_off"/"gro_off"
/// (why not, when not) and their counters (Transport::Counters).
void add_offload_status(nlohmann::json& socket, const Transport::Socket& s);
}  // namespace mipsec::shell
