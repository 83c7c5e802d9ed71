// SPDX-License-Identifier: MIT
#include "apps/shell/stage_factory.hpp"

namespace mipsec::shell {

const std::vector<StageType>& stage_types() {
    static const std::vector<StageType> types = [] {
        std::vector<StageType> t;
        add_mip_stage_types(t);
        add_ipsec_stage_types(t);
        add_ike_stage_types(t);
        add_nat_stage_types(t);
        add_tap_stage_types(t);
        add_impair_stage_types(t);
        return t;
    }();
    return types;
}

const StageType* find_stage_type(std::string_view name) {
    for (const auto& t : stage_types())
        if (t.name == name) return &t;
    return nullptr;
}

std::unique_ptr<core::Stage> build_stage(const ConfigReader& entry, const StageBuildContext& ctx) {
    auto type = entry.string("type");
    for (const auto& t : stage_types())
        if (t.name == type) return t.build(entry, ctx);
    std::string list;
    for (const auto& t : stage_types()) list += (list.empty() ? "" : ", ") + ("\"" + t.name + "\"");
    entry.fail("type", "unknown stage type \"" + type + "\"", "one of " + list);
}

}  // namespace mipsec::shell
