// SPDX-License-Identifier: MIT
#pragma once
// `mipsec lab …`: the scenario lab (network namespaces built from a JSON scenario) is a Python
// package; this finds it and hands over to /usr/bin/python3 with this binary as the mipsec it
// starts.
#include <optional>
#include <string>
#include <vector>

namespace mipsec::lab {

/// The lab package's directory: $MIPSEC_LAB_DIR if set (an error if it holds no lab), else
/// the installed copy, else the source tree's tools/lab. A directory counts when it holds
/// __main__.py. nullopt (after printing why) when none does.
std::optional<std::string> find_directory();

/// Replaces this process with `python3 LAB_DIR --mipsec /proc/self/exe ARGS…`; returns only
/// on failure, with the exit code to use.
int run(const std::vector<std::string>& args);

}  // namespace mipsec::lab
