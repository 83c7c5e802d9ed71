// SPDX-License-Identifier: MIT
#pragma once
// Loads test vectors from tests/vectors/ (sources in tests/vectors/README.md).
#include <nlohmann/json.hpp>
#include <string_view>

namespace mipsec::test {
/// Parses tests/vectors/<file_name>; throws with the path if it is missing or not JSON.
nlohmann::json load_vectors(std::string_view file_name);
}  // namespace mipsec::test
