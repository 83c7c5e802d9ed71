// SPDX-License-Identifier: MIT
// Reads a status JSON (what `mipsec status --json` prints) on stdin and prints it as
// Prometheus text; lets prometheus_text_test.py check the output with a reference parser.
#include <iostream>

#include "apps/shell/prometheus_text.hpp"

int main() {
    try {
        std::cout << mipsec::shell::prometheus_text(nlohmann::json::parse(std::cin));
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "prometheus_text_dump: " << e.what() << "\n";
        return 1;
    }
}
