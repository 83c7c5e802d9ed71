// SPDX-License-Identifier: MIT
#include "apps/shell/config_reload.hpp"

#include <algorithm>
#include <iterator>
#include <string>

#include "apps/shell/node.hpp"
#include "apps/shell/stage_factory.hpp"

namespace mipsec::shell {

namespace {

const char* const restart = ": restart to apply";

std::string join(const std::vector<std::string>& lines, const char* separator) {
    std::string out;
    for (const auto& l : lines) out += (out.empty() ? "" : separator) + l;
    return out;
}

nlohmann::json prefix_list_json(const std::vector<core::Ipv4Prefix>& prefixes) {
    auto out = nlohmann::json::array();
    for (const auto& p : prefixes) out.push_back(p.to_string());
    return out;
}

// "/pipeline/3/mobile_nodes/0/key" -> {"pipeline", "3", "mobile_nodes", "0", "key"}
std::vector<std::string> split_pointer(const std::string& pointer) {
    std::vector<std::string> parts;
    for (std::size_t start = 1; start <= pointer.size();) {
        auto slash = pointer.find('/', start);
        parts.push_back(pointer.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return parts;  // config keys hold no '/' or '~', so no RFC 6901 escapes to undo
}

std::string what_happened(const std::string& op) {
    if (op == "add") return " added";
    if (op == "remove") return " removed";
    return " changed";
}

}  // namespace

ReloadRefused::ReloadRefused(std::vector<std::string> reasons)
    : std::runtime_error("reload refused, running configuration kept: " + join(reasons, "; ")), reasons_(std::move(reasons)) {}

nlohmann::json node_config_json(const NodeConfig& n) {
    nlohmann::json j;
    j["name"] = n.name;
    if (n.inner_is_link) {
        j["link"] = {{"interface", n.tun.name}};
    } else {
        auto& tun = j["tun"];
        tun["name"] = n.tun.name;
        if (n.tun.address) tun["address"] = n.tun.address->to_string();
        if (n.tun.mtu) tun["mtu"] = *n.tun.mtu;
        tun["routes"] = prefix_list_json(n.tun.routes);
        if (n.tun.route_table) tun["route_table"] = *n.tun.route_table;
        tun["offload"] = n.tun.offload;  // fixed when the device opens: a change needs a restart
        tun["kill_switch"] = n.tun.kill_switch;
    }
    auto& t = j["transport"];
    t["local"] = n.transport.local.to_string();
    t["udp_ports"] = n.transport.udp_ports;
    t["raw_protocols"] = n.transport.raw_protocols;
    t["link_mtu"] = n.transport.link_mtu;
    if (n.transport.fwmark) t["fwmark"] = *n.transport.fwmark;
    t["receive_buffer"] = n.transport.receive_buffer;  // set when the sockets open
    t["send_buffer"] = n.transport.send_buffer;
    t["udp_gso"] = n.transport.udp_gso;
    t["udp_gro"] = n.transport.udp_gro;
    j["pool"] = {{"buffers", n.buffers}, {"buffer_size", n.buffer_size}, {"batch", n.batch}, {"workers", n.workers}};
    j["pipeline"] = n.pipeline;
    return j;
}

NodeChanges diff_node_config(const NodeConfig& running, const NodeConfig& next) {
    NodeChanges changes;
    const auto before = node_config_json(running);
    const auto after = node_config_json(next);
    const auto& old_pipeline = before.at("pipeline");
    const auto& new_pipeline = after.at("pipeline");
    // The type of entry i, if both files have one there and it is the same.
    auto same_type_at = [&](std::size_t i) -> std::string {
        if (i >= old_pipeline.size() || i >= new_pipeline.size()) return "";
        const auto& a = old_pipeline[i].value("type", std::string());
        return a == new_pipeline[i].value("type", std::string()) ? a : "";
    };
    if (old_pipeline.size() != new_pipeline.size())
        changes.refused.push_back(next.pointer + "/pipeline: " + std::to_string(old_pipeline.size()) + " stage(s) running, the file has " +
                                  std::to_string(new_pipeline.size()) + restart);
    auto refuse = [&](std::string reason) {
        if (std::find(changes.refused.begin(), changes.refused.end(), reason) == changes.refused.end()) changes.refused.push_back(std::move(reason));
    };
    for (const auto& op : nlohmann::json::diff(before, after)) {
        auto path = op.at("path").get<std::string>();
        const auto parts = split_pointer(path);
        const bool pipeline_entry = parts.size() >= 2 && parts[0] == "pipeline";
        // A stage more or fewer: said once above.
        if (pipeline_entry && parts.size() == 2 && old_pipeline.size() != new_pipeline.size()) continue;
        // Only the values of live keys of an unchanged stage entry may change.
        if (pipeline_entry && parts.size() >= 3 && parts[1].find_first_not_of("0123456789") == std::string::npos) {
            const std::size_t index = std::stoul(parts[1]);
            const std::string type = same_type_at(index);
            const auto* stage_type = type.empty() ? nullptr : find_stage_type(type);
            if (stage_type && stage_type->reconfigure &&
                std::find(stage_type->live_keys.begin(), stage_type->live_keys.end(), parts[2]) != stage_type->live_keys.end()) {
                auto it = std::find_if(changes.stages.begin(), changes.stages.end(), [&](const auto& s) { return s.index == index; });
                if (it == changes.stages.end()) {
                    changes.stages.push_back(NodeChanges::StageChange{index, type, {}});
                    it = std::prev(changes.stages.end());
                }
                if (std::find(it->keys.begin(), it->keys.end(), parts[2]) == it->keys.end()) it->keys.push_back(parts[2]);
                continue;
            }
            if (parts[2] == "type") {
                refuse(next.pointer + path + " changed (a different stage)" + restart);
                continue;
            }
            // The rest of an entry whose type changed goes with it: said by the type.
            if (type.empty() && index < old_pipeline.size() && index < new_pipeline.size()) continue;
        }
        // Values are never quoted: they may be keys. An element appended to an array has
        // the RFC 6902 path ".../-"; name the array.
        std::string what = what_happened(op.at("op").get<std::string>());
        if (path.ends_with("/-")) {
            path.resize(path.size() - 2);
            what = " gained an entry";
        }
        std::string reason = next.pointer + path + what;
        if (pipeline_entry && parts.size() == 2) reason += " (the pipeline's shape)";
        else if (!parts.empty() && parts[0] == "name") reason += " (node names cannot change)";
        refuse(reason + restart);
    }
    for (auto& stage : changes.stages) std::sort(stage.keys.begin(), stage.keys.end());
    std::sort(changes.stages.begin(), changes.stages.end(), [](const auto& a, const auto& b) { return a.index < b.index; });
    return changes;
}

std::vector<std::string> diff_run_config(const RunConfig& running, const RunConfig& next) {
    std::vector<std::string> refused;
    if (running.nodes.size() != next.nodes.size())
        refused.push_back("/nodes: " + std::to_string(running.nodes.size()) + " node(s) running, the file has " + std::to_string(next.nodes.size()) +
                          restart);
    if (running.control_socket != next.control_socket) refused.push_back("/control_socket changed" + std::string(restart));
    if (running.log_level != next.log_level) refused.push_back("/log_level changed" + std::string(restart));
    if (running.metrics_listen != next.metrics_listen) refused.push_back("/metrics_listen changed" + std::string(restart));
    return refused;
}

std::string ReloadOutcome::summary() const {
    switch (result) {
    case Result::Applied: return "applied: " + join(lines, "; ");
    case Result::Unchanged: return "unchanged: the file matches the running configuration";
    case Result::Refused: break;
    }
    return "refused, running configuration kept: " + join(lines, "; ");
}

ReloadOutcome reload_nodes(RunConfig& running, const RunConfig& next, std::span<Node* const> nodes) {
    ReloadOutcome out;
    out.lines = diff_run_config(running, next);
    std::vector<Node::PreparedReload> plans;
    if (out.lines.empty()) {
        // Every node is checked, and every stage change parsed, before anything is applied.
        for (std::size_t i = 0; i < nodes.size() && i < next.nodes.size(); ++i) {
            try {
                plans.push_back(nodes[i]->prepare_reload(next.nodes[i]));
            } catch (const ReloadRefused& e) {
                out.lines.insert(out.lines.end(), e.reasons().begin(), e.reasons().end());
            } catch (const ConfigError& e) {
                out.lines.emplace_back(e.what());
            }
        }
    }
    if (!out.lines.empty()) {
        out.result = ReloadOutcome::Result::Refused;
        return out;
    }
    for (std::size_t i = 0; i < plans.size(); ++i) {
        for (auto& line : nodes[i]->apply_reload(std::move(plans[i]))) out.lines.push_back(nodes[i]->name() + ": " + line);
    }
    out.result = out.lines.empty() ? ReloadOutcome::Result::Unchanged : ReloadOutcome::Result::Applied;
    running = next;
    for (auto& n : running.nodes) wipe_secrets(n);
    return out;
}

ReloadOutcome reload_from_file(const std::string& path, RunConfig& running, std::span<Node* const> nodes) {
    RunConfig next;
    try {
        next = load_run_config(path);
    } catch (const ConfigError& e) {
        ReloadOutcome out;
        out.result = ReloadOutcome::Result::Refused;
        out.lines.push_back("config " + path + ": " + e.what());
        return out;
    }
    auto outcome = reload_nodes(running, next, nodes);
    for (auto& n : next.nodes) wipe_secrets(n);
    return outcome;
}

void ReloadHistory::record(const ReloadOutcome& outcome, std::chrono::system_clock::time_point when) {
    ++requested_;
    switch (outcome.result) {
    case ReloadOutcome::Result::Applied: ++applied_; break;
    case ReloadOutcome::Result::Unchanged: ++unchanged_; break;
    case ReloadOutcome::Result::Refused: ++refused_; break;
    }
    last_ = outcome;
    last_time_ = when;
}

nlohmann::json ReloadHistory::status() const {
    nlohmann::json j = {{"requested", requested_}, {"applied", applied_}, {"unchanged", unchanged_}, {"refused", refused_}};
    if (last_) {
        const char* result = last_->result == ReloadOutcome::Result::Applied     ? "applied"
                             : last_->result == ReloadOutcome::Result::Unchanged ? "unchanged"
                                                                                 : "refused";
        j["last"] = {{"result", result},
                     {"message", last_->summary()},
                     {"unix_time", std::chrono::duration_cast<std::chrono::seconds>(last_time_.time_since_epoch()).count()}};
    }
    return j;
}

}  // namespace mipsec::shell
