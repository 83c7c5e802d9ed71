// SPDX-License-Identifier: MIT
#pragma once
// The control socket's status answer (the JSON `mipsec status --json` prints) in the
// Prometheus text exposition format 0.0.4, for node_exporter's textfile collector.
//
// Naming follows the Prometheus conventions: every name starts with `mipsec_`, carries its
// unit (`_bytes`, `_seconds`), counters end in `_total`; what tells series apart goes in
// labels: node, stage (its index in the pipeline) and type, device, socket, drop or failure
// reason, and for SAs, bindings and clients their SPI, peer or addresses. A stage's own
// state (its `report()`) becomes `mipsec_<module>_<type>_<field>`: numbers and booleans are
// samples (counters where the field counts events), strings are labels, on the element they
// describe or, at the stage's top level, on a `..._info` gauge of value 1.
// A pure function: no I/O, same input same output.
#include <string>

#include <nlohmann/json.hpp>

namespace mipsec::shell {

/// Renders {"nodes": [...], "metrics_listener": {...}} as exposition text. Fields missing from the JSON are left out;
/// never throws on an unexpected shape (a field of another type is skipped).
std::string prometheus_text(const nlohmann::json& status);

/// `value` escaped for a label value: backslash, double quote and line feed.
std::string prometheus_label_escape(std::string_view value);

}  // namespace mipsec::shell
