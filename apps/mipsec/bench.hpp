// SPDX-License-Identifier: MIT
#pragma once
// `mipsec bench …`: benchmarks that read the clock and run on the calling thread; never used
// by the cores or by `mipsec run`.
#include <cstddef>
#include <string>
#include <vector>

namespace mipsec::bench {

struct EspOptions {
    std::vector<std::string> suites = {"aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes128-sha1",
                                       "aes256-sha1", "aes128-sha256", "aes256-sha256"};
    std::vector<std::size_t> sizes = {64, 512, 1400};
    int milliseconds = 150;
    int rounds = 3;
};
int run_esp(const EspOptions& options);

}  // namespace mipsec::bench
