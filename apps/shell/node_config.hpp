// SPDX-License-Identifier: MIT
#pragma once
// The configuration `mipsec run` and `mipsec check` read: one node, or {"nodes": [...]}.
// Parsing validates everything that can be checked without touching the system, so a bad
// config is refused before any TUN device or socket exists.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/shell/config_reader.hpp"
#include "core/address.hpp"
#include "core/logger.hpp"

namespace mipsec::shell {

struct TunConfig {
    std::string name;
    std::optional<core::Ipv4Prefix> address;
    std::optional<std::size_t> mtu;  // absent: link MTU minus the pipeline's overhead
    std::vector<core::Ipv4Prefix> routes;
    // Routes go into this table, consulted by a rule "not fwmark <transport.fwmark> lookup
    // <table>": the host's own traffic enters the TUN, the node's outer packets never do.
    std::optional<std::uint32_t> route_table;
    // IFF_VNET_HDR and TUNSETOFFLOAD: the kernel hands over and takes 64 KiB TCP/UDP
    // super-packets, cut and merged here (tun::LinuxDevice). Falls back to one packet per
    // read/write where the kernel grants nothing; false is that from the start.
    bool offload = true;
    // Each of `routes` also gets an unreachable route of metric kill_switch_metric (in
    // route_table, if set), which the node leaves in place when it exits: while it is down
    // (crashed, restarting, stopped) the host refuses those destinations instead of sending
    // them in the clear by its default route; the TUN's own routes (metric 0) win while it
    // runs. A node started with false removes such routes of its own.
    bool kill_switch = false;
};

// Below every route an operator or DHCP client would add, above nothing that matters.
inline constexpr std::uint32_t kill_switch_metric = 4095;

struct TransportConfig {
    core::Ipv4Address local;
    std::vector<std::uint16_t> udp_ports;     // bound on `local`; outer UDP leaves from these
    std::vector<std::uint8_t> raw_protocols;  // IP protocols sent/received with raw sockets
    std::size_t link_mtu = 1500;
    std::optional<std::uint32_t> fwmark;  // SO_MARK on every socket
    // Per socket. The kernel default (about 208 KiB) overflows under a burst of full-size
    // datagrams, and every overflow is a lost packet the tunnel's TCP must retransmit.
    std::size_t receive_buffer = 4 << 20;
    std::size_t send_buffer = 4 << 20;
    // UDP segmentation offload (UDP_SEGMENT) for sends and receive coalescing (UDP_GRO), each
    // used where the kernel offers it; off: one datagram per message, as without them.
    bool udp_gso = true;
    bool udp_gro = true;
};

/// Most data-path workers a node runs ("pool": {"workers": N}): one TUN queue each, and the
/// kernel's limit on queues (MAX_TAP_QUEUES) is far above any core count this is for.
inline constexpr std::size_t max_workers = 64;

struct NodeConfig {
    std::string name;
    std::string pointer;  // where this node sits in the JSON, for later error messages
    TunConfig tun;
    // The inner side is an existing link (a foreign agent's visitor link) rather than a TUN
    // device; tun.name is then that interface and the other tun settings are unused.
    bool inner_is_link = false;
    TransportConfig transport;
    std::size_t buffers = 4096;
    std::size_t buffer_size = 2048;
    std::size_t batch = 32;
    // Data-path threads ("pool": {"workers": N}), each with its own pool of `buffers`, TUN
    // queue and sockets: 1 runs everything on one thread (see node.hpp).
    std::size_t workers = 1;
    nlohmann::json pipeline;  // the array of stage objects, built by the stage factory
    /// JSON pointers into `pipeline` of the secrets it holds ("/0/psk"), inline or read from
    /// files: wipe_secrets() replaces them once the stages hold their own copies.
    std::vector<std::string> secret_pointers;
};

/// Overwrites the secrets `node.pipeline` holds (the stages have their own copies) and puts a
/// fingerprint in their place: a salted SHA-256, the salt random per process, so a reload can
/// still tell whether a key changed without the key staying in memory.
void wipe_secrets(NodeConfig& node);

struct RunConfig {
    std::string control_socket;
    /// "metrics_listen": where the HTTP metrics listener binds; absent: no listener.
    std::optional<core::Endpoint> metrics_listen;
    core::LogLevel log_level = core::LogLevel::Info;
    /// "user" and "group": the account `mipsec run` switches to once every node is set up
    /// (see privileges.hpp); empty: it stays root. Names or numbers, checked against the
    /// system only by resolve_run_as.
    std::string user;
    std::string group;
    std::string user_pointer = "/user";  // for errors found when the names are looked up
    std::string group_pointer = "/group";
    std::vector<NodeConfig> nodes;
    /// JSON pointers of secrets written inline ("/pipeline/0/psk"); those read from
    /// "*_file" are already resolved into each node's pipeline, which names no file.
    std::vector<std::string> inline_secrets;
    /// Problems that did not refuse the config (load_run_config with ExposedSecrets::Warn).
    std::vector<std::string> warnings;
};

/// Throws ConfigError. Also builds every stage in dry-run mode, so stage settings are checked;
/// secret files ("psk_file", "key_file") are read then, relative paths resolved by `sources`.
RunConfig parse_run_config(const nlohmann::json& root, const SecretSources& sources = {});

/// What to do with a config file that holds inline secrets and others can read.
enum class ExposedSecrets : std::uint8_t {
    Refuse,  // `mipsec run`: the secrets are already out; say how to fix it
    Warn,    // `mipsec check`: report it (a shipped example is world-readable on purpose)
};
/// Reads and parses a file; JSON syntax errors name the line and column. Secret file paths
/// resolve against $CREDENTIALS_DIRECTORY, else the file's directory. Throws ConfigError.
RunConfig load_run_config(const std::string& path, ExposedSecrets exposed = ExposedSecrets::Refuse);
nlohmann::json read_json_file(const std::string& path);
/// The control socket a config names (or the default for its first node), without validating
/// the rest or reading secrets: for `mipsec status --config`, which need not read keys.
std::string control_socket_path(const nlohmann::json& root);
/// Why others can read `path`, or "" if they cannot: its mode lets others read it and every
/// directory above it lets others through (a 0644 file in a 0700 directory is private).
std::string readable_by_others(const std::string& path);

}  // namespace mipsec::shell
