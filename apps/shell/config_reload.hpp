// SPDX-License-Identifier: MIT
#pragma once
// Reload (SIGHUP, `systemctl reload`): the configuration file is read again and compared with
// the running one. Only what a stage type lists as live (StageType::live_keys: a home agent's
// mobile nodes, a VPN gateway's PSKs, proposals and pool) is applied, to the running stages,
// without touching their bindings and SAs; any other difference — TUN, transport, buffers,
// pipeline shape or order, stage types, other settings, node names, the control socket or the
// log level — refuses the whole reload, naming the JSON pointer of each difference. Every node
// is checked and every change parsed before any is applied: a reload applies to all nodes or
// to none, and a refused one leaves the running configuration as it was.
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/shell/node_config.hpp"

namespace mipsec::shell {

class Node;

/// A reload that cannot apply live; what() lists every reason ("/tun/mtu changed: restart to apply").
class ReloadRefused : public std::runtime_error {
public:
    explicit ReloadRefused(std::vector<std::string> reasons);
    const std::vector<std::string>& reasons() const noexcept { return reasons_; }

private:
    std::vector<std::string> reasons_;
};

/// How a node's configuration differs from the running one.
struct NodeChanges {
    /// Differences that need a restart, each naming its JSON pointer in the file.
    std::vector<std::string> refused;
    /// Stages whose entries differ only in their type's live keys.
    struct StageChange {
        std::size_t index = 0;
        std::string type;
        std::vector<std::string> keys;  // the live keys that changed, sorted
    };
    std::vector<StageChange> stages;
    bool none() const noexcept { return refused.empty() && stages.empty(); }
};

/// A node's parsed settings as JSON keyed like the file (defaults filled in, so writing out a
/// default is no change; the pipeline as written, with secrets from files inlined).
nlohmann::json node_config_json(const NodeConfig& node);
/// Compares two parses of one node. Pointers in `refused` are prefixed with next.pointer.
NodeChanges diff_node_config(const NodeConfig& running, const NodeConfig& next);
/// Differences between two configs above the nodes (node count, control socket, log level),
/// all of which need a restart.
std::vector<std::string> diff_run_config(const RunConfig& running, const RunConfig& next);

struct ReloadOutcome {
    enum class Result : std::uint8_t { Applied, Unchanged, Refused };
    Result result = Result::Unchanged;
    /// What changed (Applied), or why nothing was applied (Refused), one line each.
    std::vector<std::string> lines;
    std::string summary() const;
};

/// Applies `next` to `nodes` (started from `running`, in the same order), to all or none.
/// On success `running` becomes `next`.
ReloadOutcome reload_nodes(RunConfig& running, const RunConfig& next, std::span<Node* const> nodes);
/// Reads `path` as `mipsec run` did (a file that cannot be read or parsed is Refused with
/// the ConfigError message) and reloads from it.
ReloadOutcome reload_from_file(const std::string& path, RunConfig& running, std::span<Node* const> nodes);

/// Reload counts and the last outcome, for `mipsec status`.
class ReloadHistory {
public:
    void record(const ReloadOutcome& outcome, std::chrono::system_clock::time_point when);
    /// {"requested", "applied", "unchanged", "refused", "last": {"result", "message", "unix_time"}}
    nlohmann::json status() const;

private:
    std::uint64_t requested_ = 0;
    std::uint64_t applied_ = 0;
    std::uint64_t unchanged_ = 0;
    std::uint64_t refused_ = 0;
    std::optional<ReloadOutcome> last_;
    std::chrono::system_clock::time_point last_time_{};
};

}  // namespace mipsec::shell
