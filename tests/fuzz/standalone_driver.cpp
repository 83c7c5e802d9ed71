// SPDX-License-Identifier: MIT
// Without libFuzzer: feeds files named on the command line, or N pseudo-random inputs
// (a fixed-seed generator, so failures reproduce), to LLVMFuzzerTestOneInput.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
    if (argc > 1 && std::string(argv[1]).find_first_not_of("0123456789") != std::string::npos) {
        for (int i = 1; i < argc; ++i) {
            std::ifstream in(argv[i], std::ios::binary);
            std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), {});
            LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
        }
        return 0;
    }
    long count = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 10000;
    std::mt19937 rng(0x6d697073);  // fixed seed
    std::vector<std::uint8_t> buf;
    for (long i = 0; i < count; ++i) {
        buf.resize(rng() % 1600);
        for (auto& b : buf) b = static_cast<std::uint8_t>(rng());
        // Bias toward plausible headers: sometimes start like IPv4 / small type codes.
        if (!buf.empty() && rng() % 2) buf[0] = static_cast<std::uint8_t>(rng() % 2 ? 0x45 : rng() % 8);
        LLVMFuzzerTestOneInput(buf.data(), buf.size());
    }
    std::cout << count << " inputs, no crash\n";
    return 0;
}
