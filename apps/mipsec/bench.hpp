// SPDX-License-Identifier: MIT
#pragma once
// `mipsec bench …`: benchmarks that read the clock and run on the calling thread; never used
// by the cores or by `mipsec run`.
#include <cstddef>
#include <string>
#include <vector>

#include "core/address.hpp"

namespace mipsec::bench {

struct EspOptions {
    std::vector<std::string> suites = {"aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes128-sha1",
                                       "aes256-sha1", "aes128-sha256", "aes256-sha256"};
    std::vector<std::size_t> sizes = {64, 512, 1400};
    int milliseconds = 150;
    int rounds = 3;
};
int run_esp(const EspOptions& options);

struct IkeLoadOptions {
    core::Ipv4Address local;
    core::Ipv4Address gateway;
    std::string psk;
    std::string id = "bench.lab.example";
    core::Ipv4Prefix remote_ts{core::Ipv4Address{0}, 0};
    std::size_t count = 200;
    std::size_t concurrency = 16;
    int timeout_s = 60;
};
/// Prints one JSON line with the counts and rate; exit 0 if every handshake completed.
int run_ike_load(const IkeLoadOptions& options);

}  // namespace mipsec::bench
