// SPDX-License-Identifier: MIT
#include "apps/shell/status_json.hpp"

#include <string>
#include <utility>
#include <vector>

namespace mipsec::shell {

namespace {
class JsonStatusSink final : public core::StatusSink {
public:
    explicit JsonStatusSink(nlohmann::json& root) { stack_.push_back(&root); }
    void field(std::string_view key, std::uint64_t value) override { (*top())[std::string(key)] = value; }
    void field(std::string_view key, std::int64_t value) override { (*top())[std::string(key)] = value; }
    void field(std::string_view key, std::string_view value) override { (*top())[std::string(key)] = std::string(value); }
    void field(std::string_view key, bool value) override { (*top())[std::string(key)] = value; }
    void begin_object(std::string_view key) override {
        auto& child = (*top())[std::string(key)];
        child = nlohmann::json::object();
        stack_.push_back(&child);
    }
    void begin_array(std::string_view key) override {
        auto& child = (*top())[std::string(key)];
        child = nlohmann::json::array();
        stack_.push_back(&child);
    }
    void begin_element() override {
        // An element is an object inside the array on top; end() closes it.
        top()->push_back(nlohmann::json::object());
        stack_.push_back(&top()->back());
    }
    void end() override {
        if (stack_.size() > 1) stack_.pop_back();
    }

private:
    nlohmann::json* top() { return stack_.back(); }
    std::vector<nlohmann::json*> stack_;
};
}  // namespace

nlohmann::json pipeline_status(const core::Pipeline& pipeline) {
    nlohmann::json stages = nlohmann::json::array();
    const auto& p = pipeline;
    for (std::size_t i = 0; i < p.size(); ++i) {
        const auto& c = p.counters(i);
        nlohmann::json s;
        s["type"] = std::string(p.stage(i).name());
        s["encapsulated"] = c.encapsulated;
        s["decapsulated"] = c.decapsulated;
        s["not_mine"] = c.not_mine;
        s["consumed"] = c.consumed;
        s["control_sent"] = c.control_sent;
        s["dropped"] = c.dropped;
        nlohmann::json drops = nlohmann::json::object();
        for (std::size_t r = 1; r < core::drop_reason_count; ++r)
            if (c.drops[r] != 0) drops[std::string(core::to_string(static_cast<core::DropReason>(r)))] = c.drops[r];
        s["drops"] = drops;
        nlohmann::json state = nlohmann::json::object();
        JsonStatusSink sink(state);
        p.stage(i).report(sink);
        if (!state.empty()) s["state"] = state;
        stages.push_back(s);
    }
    return stages;
}

nlohmann::json write_failures_status(const tun::WriteFailures& failures) {
    nlohmann::json j = nlohmann::json::object();
    for (std::size_t r = 0; r < tun::write_failure_count; ++r) {
        const auto reason = static_cast<tun::WriteFailure>(r);
        if (failures[reason] != 0) j[std::string(tun::to_string(reason))] = failures[reason];
    }
    return j;
}

nlohmann::json offload_status(unsigned granted, const tun::OffloadCounters& counters) {
    nlohmann::json names = nlohmann::json::array();
    for (const auto& [bit, name] : {std::pair{tun::tun_offload::csum, "csum"}, std::pair{tun::tun_offload::tso4, "tso4"},
                                    std::pair{tun::tun_offload::uso4, "uso4"}, std::pair{tun::tun_offload::uso6, "uso6"}})
        if (granted & bit) names.push_back(name);
    nlohmann::json drops = nlohmann::json::object();
    for (std::size_t r = 1; r < core::drop_reason_count; ++r)
        if (counters.drops[r] != 0) drops[std::string(core::to_string(static_cast<core::DropReason>(r)))] = counters.drops[r];
    return {{"granted", names},
            {"rx_super_packets", counters.rx_super_packets},
            {"rx_segments", counters.rx_segments},
            {"tx_super_packets", counters.tx_super_packets},
            {"tx_coalesced", counters.tx_coalesced},
            {"drops", drops}};
}

nlohmann::json path_mtu_status(const Transport& transport) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& p : transport.path_mtus()) j.push_back({{"destination", p.destination.to_string()}, {"mtu", p.mtu}});
    return j;
}

void add_offload_status(nlohmann::json& socket, const Transport::Socket& s) {
    socket["gso"] = s.gso;
    if (!s.gso) socket["gso_off"] = s.gso_off;
    socket["gso_sends"] = s.counters.gso_sends;
    socket["gso_segments"] = s.counters.gso_segments;
    socket["gso_fallbacks"] = s.counters.gso_fallbacks;
    socket["gro"] = s.gro;
    if (!s.gro) socket["gro_off"] = s.gro_off;
    socket["gro_receives"] = s.counters.gro_receives;
    socket["gro_segments"] = s.counters.gro_segments;
}

}  // namespace mipsec::shell
