// SPDX-License-Identifier: MIT
#pragma once
// Loads published test vectors from ../shared/spec/vectors/ (beside the repository).
#include <nlohmann/json.hpp>
#include <string_view>

namespace mipsec::test {
/// Parses vectors/<file_name>; throws with the path if it is missing or not JSON.
nlohmann::json load_vectors(std::string_view file_name);
}  // namespace mipsec::test
