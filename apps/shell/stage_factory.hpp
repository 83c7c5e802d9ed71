// SPDX-License-Identifier: MIT
#pragma once
// Builds stages from their JSON entries ({"type": "mip.ipip", ...}) by type name. Each
// module's config translation lives in its own stage_config_<module>.cpp and registers its
// types in stage_factory.cpp, so adding a stage is one function and one table row.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "apps/shell/config_reader.hpp"
#include "core/stage.hpp"
#include "crypto/random.hpp"
#include "ipsec/key_log.hpp"

namespace mipsec::shell {

/// What a stage constructor may need beyond its own JSON object.
struct StageBuildContext {
    std::string node_name;
    bool dry_run = false;  // `mipsec check`: validate only, open no files or sockets
    crypto::Random* random = nullptr;  // the node's CSPRNG; outlives every stage
    core::TimePoint now{};
    /// Makes (and keeps for the node's lifetime) a key log for a file prefix; null in dry runs.
    std::function<ipsec::KeyLog*(const std::string& prefix)> key_log;
};

using StageBuilder = std::function<std::unique_ptr<core::Stage>(const ConfigReader&, const StageBuildContext&)>;

/// A change to a running stage, parsed and checked, waiting to be applied: applying cannot
/// fail (a reload applies to every node or to none) and returns what changed, for the log
/// ("added MN 10.1.0.7"), naming no secret.
using StageReconfiguration = std::function<std::vector<std::string>()>;
/// Parses a new entry for a running stage of this type (built from an entry of the same type
/// that differs only in the type's live keys). Throws ConfigError; changes nothing itself.
using StageReconfigurer = std::function<StageReconfiguration(core::Stage&, const ConfigReader&, const StageBuildContext&)>;

struct StageType {
    std::string name;
    std::string summary;
    StageBuilder build;
    /// Keys of an entry that a reload may change in a running stage; empty: none (a change
    /// to any other key needs a restart).
    std::vector<std::string> live_keys = {};
    StageReconfigurer reconfigure = {};
};

/// Every stage type `pipeline` entries may name.
const std::vector<StageType>& stage_types();
/// Builds one pipeline entry; throws ConfigError naming /…/type for an unknown type.
std::unique_ptr<core::Stage> build_stage(const ConfigReader& entry, const StageBuildContext& ctx);
/// The type an entry names, or nullptr.
const StageType* find_stage_type(std::string_view name);

// Per-module registration functions (stage_config_<module>.cpp).
void add_mip_stage_types(std::vector<StageType>& out);
void add_tap_stage_types(std::vector<StageType>& out);
void add_impair_stage_types(std::vector<StageType>& out);
void add_nat_stage_types(std::vector<StageType>& out);
void add_ipsec_stage_types(std::vector<StageType>& out);
void add_ike_stage_types(std::vector<StageType>& out);

}  // namespace mipsec::shell
