// SPDX-License-Identifier: MIT
#pragma once
#include "core/logger.hpp"

namespace mipsec::shell {
/// A root logger writing "time level component: message" lines to stderr.
core::Logger make_stderr_logger(core::LogLevel level);
}  // namespace mipsec::shell
