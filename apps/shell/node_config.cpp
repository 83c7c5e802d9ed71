// SPDX-License-Identifier: MIT
#include "apps/shell/node_config.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <span>
#include <sstream>

#include "apps/shell/stage_factory.hpp"
#include "core/hex.hpp"
#include "crypto/hash.hpp"
#include "crypto/random.hpp"
#include "crypto/secret_bytes.hpp"

namespace mipsec::shell {

namespace {

const std::set<std::uint8_t> raw_protocols_supported = {1, 4, 47, 50, 55, 255};

TunConfig parse_tun(const ConfigReader& c) {
    c.only({"name", "address", "mtu", "routes", "route_table", "offload", "kill_switch"});
    TunConfig t;
    t.name = c.string("name");
    if (t.name.empty() || t.name.size() > 15 || t.name.find_first_of("/ \t:") != std::string::npos || t.name == "." || t.name == "..")
        c.fail("name", "\"" + t.name + "\" is not a valid interface name", "1 to 15 characters without '/', ':' or spaces");
    if (c.has("address")) t.address = c.prefix("address");
    if (c.has("mtu")) t.mtu = static_cast<std::size_t>(c.integer("mtu", 576, 9000));
    t.routes = c.prefix_list("routes");
    // 253-255 are the kernel's default, main and local tables.
    if (c.has("route_table")) t.route_table = static_cast<std::uint32_t>(c.integer("route_table", 1, 252));
    t.offload = c.boolean_or("offload", true);
    t.kill_switch = c.boolean_or("kill_switch", false);
    if (t.kill_switch && t.routes.empty())
        c.fail("kill_switch", "blocks the TUN's routes while the node is down, but \"routes\" lists none",
               "list the prefixes the tunnel must carry in \"routes\", or leave kill_switch out");
    if (t.kill_switch && !t.route_table)
        for (std::size_t i = 0; i < t.routes.size(); ++i)
            if (t.routes[i].length == 0)
                throw ConfigError(c.pointer_of("routes") + "/" + std::to_string(i),
                                  "a default route cannot be blocked in the main table: the link's own default route (metric 0) would win",
                                  "set \"route_table\" so the tunnel's routes and their block have a table of their own, or list narrower prefixes");
    return t;
}

TransportConfig parse_transport(const ConfigReader& c) {
    c.only({"local", "udp_ports", "raw_protocols", "link_mtu", "fwmark", "receive_buffer", "send_buffer", "udp_gso", "udp_gro"});
    TransportConfig t;
    t.local = c.address("local");
    if (t.local.is_multicast() || t.local.is_broadcast())
        c.fail("local", "is not a unicast address", "the address of this host's outer interface, or 0.0.0.0 if it changes (a mobile node)");
    if (c.has("fwmark")) t.fwmark = static_cast<std::uint32_t>(c.integer("fwmark", 1, 0xFFFFFFFF));
    if (c.has("udp_ports")) {
        const auto& ports = c.raw("udp_ports");
        if (!ports.is_array()) c.fail("udp_ports", "is not an array", "an array of port numbers like [4500]");
        for (std::size_t i = 0; i < ports.size(); ++i) {
            if (!ports[i].is_number_integer() || ports[i].get<std::int64_t>() < 1 || ports[i].get<std::int64_t>() > 65535)
                throw ConfigError(c.pointer_of("udp_ports") + "/" + std::to_string(i), "is " + ports[i].dump(), "a port number from 1 to 65535");
            auto p = static_cast<std::uint16_t>(ports[i].get<std::int64_t>());
            if (std::find(t.udp_ports.begin(), t.udp_ports.end(), p) != t.udp_ports.end())
                throw ConfigError(c.pointer_of("udp_ports") + "/" + std::to_string(i), "port " + std::to_string(p) + " is listed twice", "each port once");
            t.udp_ports.push_back(p);
        }
    }
    if (c.has("raw_protocols")) {
        const auto& protos = c.raw("raw_protocols");
        if (!protos.is_array()) c.fail("raw_protocols", "is not an array", "an array of IP protocol numbers like [4, 50]");
        for (std::size_t i = 0; i < protos.size(); ++i) {
            auto where = c.pointer_of("raw_protocols") + "/" + std::to_string(i);
            if (!protos[i].is_number_integer() || protos[i].get<std::int64_t>() < 0 || protos[i].get<std::int64_t>() > 255 ||
                !raw_protocols_supported.contains(static_cast<std::uint8_t>(protos[i].get<std::int64_t>())))
                throw ConfigError(where, "is " + protos[i].dump(), "1 (ICMP: agent advertisements), 4 (IP-in-IP), 47 (GRE), 50 (ESP), 55 (minimal encapsulation) or 255 (send-only, any protocol)");
            auto p = static_cast<std::uint8_t>(protos[i].get<std::int64_t>());
            if (std::find(t.raw_protocols.begin(), t.raw_protocols.end(), p) != t.raw_protocols.end())
                throw ConfigError(where, "protocol " + std::to_string(p) + " is listed twice", "each protocol once");
            t.raw_protocols.push_back(p);
        }
    }
    if (t.udp_ports.empty() && t.raw_protocols.empty())
        c.fail("", "opens no socket", "\"udp_ports\" and/or \"raw_protocols\" so outer packets can leave");
    t.link_mtu = static_cast<std::size_t>(c.integer_or("link_mtu", 1500, 576, 65535));
    t.receive_buffer = static_cast<std::size_t>(c.integer_or("receive_buffer", 4 << 20, 65536, 1 << 30));
    t.send_buffer = static_cast<std::size_t>(c.integer_or("send_buffer", 4 << 20, 65536, 1 << 30));
    t.udp_gso = c.boolean_or("udp_gso", true);
    t.udp_gro = c.boolean_or("udp_gro", true);
    return t;
}

// Stages are built twice: here to validate, and by the node to run. Secrets read from files
// now go into the node's copy of its pipeline, so the node builds from what was checked and
// never resolves a path against a different directory or credential set.
void inline_file_secrets(nlohmann::json& pipeline, const std::string& pipeline_pointer, std::vector<SecretReads::FromFile>& from_files,
                         std::vector<std::string>& secret_pointers) {
    for (auto& f : from_files) {
        if (!f.object_pointer.starts_with(pipeline_pointer)) continue;
        const auto object_pointer = f.object_pointer.substr(pipeline_pointer.size());
        auto& object = pipeline[nlohmann::json::json_pointer(object_pointer)];
        object.erase(f.field + "_file");
        object[f.field] = f.value;  // a copy: a moved-from short string keeps its bytes
        secret_pointers.push_back(object_pointer + "/" + f.field);
        crypto::secure_wipe(std::span(reinterpret_cast<std::uint8_t*>(f.value.data()), f.value.size()));
    }
    from_files.clear();
}

// Zeroes a string the JSON holds at `pointer` (a secret) and empties it.
void wipe_json_string(nlohmann::json& root, const std::string& pointer) {
    const nlohmann::json::json_pointer where(pointer);
    if (!root.contains(where) || !root[where].is_string()) return;
    auto& text = root[where].get_ref<std::string&>();
    crypto::secure_wipe(std::span(reinterpret_cast<std::uint8_t*>(text.data()), text.size()));
    text.clear();
}

NodeConfig parse_node(const ConfigReader& c, bool allow_process_keys, SecretReads& secrets) {
    std::set<std::string, std::less<>> keys = {"name", "tun", "link", "transport", "pipeline", "pool"};
    if (allow_process_keys) keys.insert({"control_socket", "log_level", "metrics_listen", "user", "group"});
    c.only(keys);
    NodeConfig n;
    n.pointer = c.pointer();
    n.name = c.string("name");
    if (n.name.empty() || n.name.size() > 32 || n.name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != std::string::npos)
        c.fail("name", "\"" + n.name + "\" is not a valid node name", "1 to 32 letters, digits, '-' or '_'");
    if (c.has("link")) {
        if (c.has("tun")) c.fail("link", "is given together with \"tun\"", "either a TUN device or a link as the inner side, not both");
        auto link = c.object("link");
        link.only({"interface"});
        n.tun.name = link.string("interface");
        if (n.tun.name.empty() || n.tun.name.size() > 15)
            link.fail("interface", "\"" + n.tun.name + "\" is not an interface name", "the link this node serves, like \"eth1\"");
        n.inner_is_link = true;
    } else {
        n.tun = parse_tun(c.object("tun"));
    }
    n.transport = parse_transport(c.object("transport"));
    if (n.tun.route_table && !n.transport.fwmark)
        c.object("tun").fail("route_table", "needs transport.fwmark", "a \"fwmark\" in \"transport\" so the node's own outer packets bypass the table");
    if (auto pool = c.optional_object("pool")) {
        pool->only({"buffers", "buffer_size", "batch", "workers"});
        n.buffers = static_cast<std::size_t>(pool->integer_or("buffers", 4096, 64, 1 << 20));
        n.buffer_size = static_cast<std::size_t>(pool->integer_or("buffer_size", 2048, 256, 65536 + 512));
        n.batch = static_cast<std::size_t>(pool->integer_or("batch", 32, 1, 1024));
        if (n.batch * 2 > n.buffers) pool->fail("batch", "leaves too few buffers for in-flight packets", "at most half of \"buffers\"");
        n.workers = static_cast<std::size_t>(pool->integer_or("workers", 1, 1, max_workers));
    }
    const auto& pipeline = c.raw("pipeline");
    if (!pipeline.is_array() || pipeline.empty())
        c.fail("pipeline", "is " + std::string(pipeline.is_array() ? "empty" : "not an array"), "an array of stage objects, inner first, like [{\"type\": \"mip.ipip\", ...}]");
    n.pipeline = pipeline;

    // Build every stage without side effects to validate its settings and sum the overhead of
    // the lightest stack, which the TUN MTU is sized for (core::least_stack_overhead).
    crypto::SystemRandom random;
    StageBuildContext ctx{n.name, true, &random, core::Clock::now(), nullptr};
    std::size_t overhead = 0;
    bool idled_below = false;
    secrets.from_files.clear();
    const std::size_t inline_before = secrets.inline_pointers.size();
    for (const auto& entry : c.objects("pipeline")) {
        auto stage = build_stage(entry, ctx);
        if (!stage || idled_below) continue;
        overhead += stage->least_overhead();
        idled_below = stage->may_idle_layers_below();
    }
    const auto pipeline_pointer = c.pointer_of("pipeline");
    for (std::size_t i = inline_before; i < secrets.inline_pointers.size(); ++i)
        if (secrets.inline_pointers[i].starts_with(pipeline_pointer)) n.secret_pointers.push_back(secrets.inline_pointers[i].substr(pipeline_pointer.size()));
    inline_file_secrets(n.pipeline, pipeline_pointer, secrets.from_files, n.secret_pointers);
    std::size_t inner_mtu = n.tun.mtu.value_or(n.transport.link_mtu > overhead ? n.transport.link_mtu - overhead : 0);
    if (inner_mtu < 576)
        c.fail("transport", "link MTU " + std::to_string(n.transport.link_mtu) + " minus the pipeline's " + std::to_string(overhead) + " bytes of overhead leaves less than 576 bytes", "a larger \"link_mtu\"");
    if (n.tun.mtu && *n.tun.mtu + overhead > n.transport.link_mtu)
        c.fail("tun", "MTU " + std::to_string(*n.tun.mtu) + " plus " + std::to_string(overhead) + " bytes of overhead exceeds the link MTU " + std::to_string(n.transport.link_mtu), "at most " + std::to_string(n.transport.link_mtu - std::min(overhead, n.transport.link_mtu)));
    if (n.buffer_size < n.transport.link_mtu + 256)
        c.fail("pool", "buffer_size " + std::to_string(n.buffer_size) + " cannot hold a link-MTU packet with its headroom", "at least link_mtu + 256");
    return n;
}

}  // namespace

RunConfig parse_run_config(const nlohmann::json& root, const SecretSources& sources) {
    SecretReads secrets{sources, {}, {}};
    ConfigReader top(root, "", &secrets);
    RunConfig run;
    const bool multi = top.has("nodes");
    if (multi) {
        top.only({"nodes", "control_socket", "log_level", "metrics_listen", "user", "group"});
        for (const auto& n : top.objects("nodes")) run.nodes.push_back(parse_node(n, false, secrets));
        if (run.nodes.empty()) top.fail("nodes", "is empty", "at least one node");
    } else {
        run.nodes.push_back(parse_node(top, true, secrets));
    }
    auto level = top.choice_or("log_level", {"debug", "info", "warn", "error", "off"}, "info");
    core::parse_log_level(level, run.log_level);
    // Account names as useradd(8) allows them, or a bare number; whether they exist is the
    // system's business (resolve_run_as), root is refused here already.
    auto account = [&](const char* key) {
        auto name = top.optional_string(key).value_or("");
        if (!top.has(key)) return name;
        if (name.empty() || name.size() > 32 || name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != std::string::npos || name[0] == '-')
            top.fail(key, "\"" + name + "\" is not an account name", "a user or group name like \"mipsec\", or a number");
        if (name == "root" || name == "0") top.fail(key, "is root", "an unprivileged account; leave it out to stay root");
        return name;
    };
    run.user = account("user");
    run.group = account("group");
    run.user_pointer = top.pointer_of("user");
    run.group_pointer = top.pointer_of("group");
    if (!run.group.empty() && run.user.empty()) top.fail("group", "is given without \"user\"", "\"user\" too (the group alone changes nothing)");
    run.inline_secrets = std::move(secrets.inline_pointers);
    run.control_socket = top.optional_string("control_socket").value_or("/run/mipsec/" + run.nodes.front().name + ".sock");
    if (run.control_socket.empty() || run.control_socket.size() > 107)
        top.fail("control_socket", "is not a usable Unix socket path", "an absolute path of at most 107 characters");
    if (top.has("metrics_listen")) {
        // The metrics listener binds address:port; port 0 would bind a random port no scraper knows.
        run.metrics_listen = top.endpoint("metrics_listen");
        if (run.metrics_listen->port == 0) top.fail("metrics_listen", "has port 0", "a port from 1 to 65535, like \"127.0.0.1:9101\"");
        if (run.metrics_listen->address.is_multicast() || run.metrics_listen->address.is_broadcast())
            top.fail("metrics_listen", "is not a unicast address", "an address of this host, like \"127.0.0.1:9101\" (or 0.0.0.0 for every interface)");
    }

    std::set<std::string> names, tuns;
    for (std::size_t i = 0; i < run.nodes.size(); ++i) {
        const auto& n = run.nodes[i];
        if (!names.insert(n.name).second) throw ConfigError(n.pointer + "/name", "node name \"" + n.name + "\" is used twice", "a unique name per node");
        if (!tuns.insert(n.tun.name).second) throw ConfigError(n.pointer + "/tun/name", "TUN device \"" + n.tun.name + "\" is used by two nodes", "a unique device name per node");
    }
    return run;
}

nlohmann::json read_json_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw ConfigError("", "cannot read config file \"" + path + "\"", "a readable JSON file");
    // Read whole, so the copy of any inline secret in the text can be wiped after parsing.
    std::string text((std::istreambuf_iterator<char>(in)), {});
    struct Wiper {
        std::string& text;
        ~Wiper() { crypto::secure_wipe(std::span(reinterpret_cast<std::uint8_t*>(text.data()), text.size())); }
    } wiper{text};
    try {
        return nlohmann::json::parse(text, nullptr, true, /*ignore_comments=*/true);
    } catch (const nlohmann::json::parse_error& e) {
        // Translate the byte offset into line:column so the user can find it.
        std::size_t line = 1, col = 1;
        for (std::size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
            if (text[i] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
        }
        std::string what = e.what();
        auto pos = what.find("]: ");  // strip nlohmann's "[json.exception.parse_error.101] " prefix
        throw ConfigError("", "JSON syntax error at " + path + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + (pos == std::string::npos ? what : what.substr(pos + 3)), "valid JSON");
    }
}

std::string control_socket_path(const nlohmann::json& root) {
    if (root.is_object() && root.contains("control_socket") && root["control_socket"].is_string()) return root["control_socket"].get<std::string>();
    const nlohmann::json* first = &root;
    if (root.is_object() && root.contains("nodes") && root["nodes"].is_array() && !root["nodes"].empty()) first = &root["nodes"][0];
    if (!first->is_object() || !first->contains("name") || !(*first)["name"].is_string())
        throw ConfigError("", "names no control socket and no node", "\"control_socket\" or a node \"name\"");
    return "/run/mipsec/" + (*first)["name"].get<std::string>() + ".sock";
}

std::string readable_by_others(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0 || (st.st_mode & S_IROTH) == 0) return "";
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    // Others reach the file only if they may pass through every directory above it.
    char real[PATH_MAX];
    if (::realpath(path.c_str(), real) == nullptr) return "";
    std::string dir = real;
    while (true) {
        auto slash = dir.rfind('/');
        if (slash == std::string::npos) break;
        dir = slash == 0 ? "/" : dir.substr(0, slash);
        struct stat d{};
        if (::stat(dir.c_str(), &d) != 0 || (d.st_mode & S_IXOTH) == 0) return "";
        if (dir == "/") break;
    }
    return std::string("readable by others (mode ") + mode + ")";
}

void wipe_secrets(NodeConfig& node) {
    static const std::array<std::uint8_t, 16> salt = [] {
        std::array<std::uint8_t, 16> s{};
        crypto::SystemRandom().fill(s);
        return s;
    }();
    for (const auto& p : node.secret_pointers) {
        const nlohmann::json::json_pointer where(p);
        if (!node.pipeline.contains(where) || !node.pipeline[where].is_string()) continue;
        const auto& text = node.pipeline[where].get_ref<const std::string&>();
        std::array<std::uint8_t, 32> digest{};
        const std::array<std::span<const std::uint8_t>, 2> parts{
            std::span<const std::uint8_t>(salt), std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size())};
        std::string fingerprint = "sha256:";
        if (crypto::hash(crypto::HashAlgorithm::Sha256, parts, digest)) fingerprint += core::to_hex(digest);
        wipe_json_string(node.pipeline, p);
        node.pipeline[where] = std::move(fingerprint);
    }
    node.secret_pointers.clear();
}

RunConfig load_run_config(const std::string& path, ExposedSecrets exposed) {
    auto root = read_json_file(path);
    auto run = parse_run_config(root, SecretSources::from_environment(path));
    // The nodes have their own copies; this one goes now (on a ConfigError the process exits).
    for (const auto& p : run.inline_secrets) wipe_json_string(root, p);
    if (run.inline_secrets.empty()) return run;
    if (auto why = readable_by_others(path); !why.empty()) {
        const auto& first = run.inline_secrets.front();
        const std::string field = first.substr(first.rfind('/') + 1);
        std::string problem = "is a secret written in config file \"" + path + "\", which is " + why +
                              (run.inline_secrets.size() > 1 ? " (and " + std::to_string(run.inline_secrets.size() - 1) + " more inline secret(s))" : "");
        std::string fix = "the secret in \"" + field + "_file\" (a file only its owner can read), or `chmod 600 " + path + "`";
        if (exposed == ExposedSecrets::Refuse) throw ConfigError(first, problem, fix);
        run.warnings.push_back(ConfigError(first, problem, fix).what());
    }
    return run;
}

}  // namespace mipsec::shell
