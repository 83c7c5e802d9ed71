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

struct HaOptions {
    std::size_t nodes = 100000;  // mobile nodes registering in the rate test
    std::vector<std::size_t> memory_sizes = {10000, 100000, 1000000};
    int milliseconds = 1000;  // timed renewals per round
    int rounds = 3;
    bool nat = false;   // requests carry an RFC 3519 UDP Tunnel Request and arrive via a NAT
    bool json = false;  // one JSON object instead of the tables
    std::string state_dir;  // where the persistence test puts its SQLite files; empty: $TMPDIR or /tmp
};
/// HomeAgent registrations/s on one core beside the raw HMAC-MD5 rate of the same two MACs,
/// and resident bytes per configured MN and per binding, each size in a forked child.
int run_ha(const HaOptions& options);

struct HaFloodOptions {
    std::size_t nodes = 10000;        // mobile nodes, all bound before the flood
    int milliseconds = 300;           // timed work per kind per round
    int rounds = 3;
    std::size_t flood_per_good = 100;  // bad packets per good renewal in the mixed run
    bool json = false;
};
/// HomeAgentStage packets/s for a good renewal and for each kind of bad request (random
/// bytes, bad checksum, unknown home address, unknown SPI, bad authenticator, stale replay),
/// the cost of each relative to a good one, and a mixed flood: every good renewal accepted,
/// every bad packet counted, log lines written.
int run_ha_flood(const HaFloodOptions& options);

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

struct GatewayPollOptions {
    std::vector<std::size_t> clients = {10, 1000, 10000};
    int rounds = 201;   // timed rounds per size; the median is reported
    int polls = 1000;   // Pipeline::poll() calls per round
};
/// A table of ns per gateway poll for each client count (all idle, all established in memory).
int run_gateway_poll(const GatewayPollOptions& options);

struct WorkersOptions {
    std::string suite = "aes128gcm16";
    std::vector<std::size_t> threads = {1, 2};
    std::size_t size = 1400;
    int milliseconds = 300;
    int rounds = 3;
};
/// The node's per-batch data path (pipeline under one lock, AEAD inside or outside it) on 1..N
/// threads in process: packets/s and the ratio to one thread.
int run_workers(const WorkersOptions& options);

}  // namespace mipsec::bench
