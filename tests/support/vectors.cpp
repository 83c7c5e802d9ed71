// SPDX-License-Identifier: MIT
#include "tests/support/vectors.hpp"

#include <fstream>
#include <stdexcept>
#include <string>

namespace mipsec::test {
nlohmann::json load_vectors(std::string_view file_name) {
    std::string path = std::string(MIPSEC_VECTORS_DIR) + "/" + std::string(file_name);
    std::ifstream in(path);
    if (!in) throw std::runtime_error("test vectors not found: " + path);
    return nlohmann::json::parse(in);
}
}  // namespace mipsec::test
