// SPDX-License-Identifier: MIT
#pragma once
// JSON rendering of pipeline counters and of what stages report through core::StatusSink.
#include <nlohmann/json.hpp>

#include "core/pipeline.hpp"

namespace mipsec::shell {
nlohmann::json pipeline_status(const core::Pipeline& pipeline);
}  // namespace mipsec::shell
