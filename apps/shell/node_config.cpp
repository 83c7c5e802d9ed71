// SPDX-License-Identifier: MIT
#include "apps/shell/node_config.hpp"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "apps/shell/stage_factory.hpp"
#include "crypto/random.hpp"

namespace mipsec::shell {

namespace {

const std::set<std::uint8_t> raw_protocols_supported = {1, 4, 47, 50, 55, 255};

TunConfig parse_tun(const ConfigReader& c) {
    c.only({"name", "address", "mtu", "routes", "route_table"});
    TunConfig t;
    t.name = c.string("name");
    if (t.name.empty() || t.name.size() > 15 || t.name.find_first_of("/ \t:") != std::string::npos || t.name == "." || t.name == "..")
        c.fail("name", "\"" + t.name + "\" is not a valid interface name", "1 to 15 characters without '/', ':' or spaces");
    if (c.has("address")) t.address = c.prefix("address");
    if (c.has("mtu")) t.mtu = static_cast<std::size_t>(c.integer("mtu", 576, 9000));
    t.routes = c.prefix_list("routes");
    // 253-255 are the kernel's default, main and local tables.
    if (c.has("route_table")) t.route_table = static_cast<std::uint32_t>(c.integer("route_table", 1, 252));
    return t;
}

TransportConfig parse_transport(const ConfigReader& c) {
    c.only({"local", "udp_ports", "raw_protocols", "link_mtu", "fwmark"});
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
    return t;
}

NodeConfig parse_node(const ConfigReader& c, bool allow_process_keys) {
    std::set<std::string, std::less<>> keys = {"name", "tun", "link", "transport", "pipeline", "pool"};
    if (allow_process_keys) keys.insert({"control_socket", "log_level"});
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
        pool->only({"buffers", "buffer_size", "batch"});
        n.buffers = static_cast<std::size_t>(pool->integer_or("buffers", 4096, 64, 1 << 20));
        n.buffer_size = static_cast<std::size_t>(pool->integer_or("buffer_size", 2048, 256, 65536 + 512));
        n.batch = static_cast<std::size_t>(pool->integer_or("batch", 32, 1, 1024));
        if (n.batch * 2 > n.buffers) pool->fail("batch", "leaves too few buffers for in-flight packets", "at most half of \"buffers\"");
    }
    const auto& pipeline = c.raw("pipeline");
    if (!pipeline.is_array() || pipeline.empty())
        c.fail("pipeline", "is " + std::string(pipeline.is_array() ? "empty" : "not an array"), "an array of stage objects, inner first, like [{\"type\": \"mip.ipip\", ...}]");
    n.pipeline = pipeline;

    // Build every stage without side effects to validate its settings and sum its overhead.
    crypto::SystemRandom random;
    StageBuildContext ctx{n.name, true, &random, core::Clock::now(), nullptr};
    std::size_t overhead = 0;
    for (const auto& entry : c.objects("pipeline")) {
        auto stage = build_stage(entry, ctx);
        if (stage) overhead += stage->headroom() + stage->tailroom();
    }
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

RunConfig parse_run_config(const nlohmann::json& root) {
    ConfigReader top(root, "");
    RunConfig run;
    const bool multi = top.has("nodes");
    if (multi) {
        top.only({"nodes", "control_socket", "log_level"});
        for (const auto& n : top.objects("nodes")) run.nodes.push_back(parse_node(n, false));
        if (run.nodes.empty()) top.fail("nodes", "is empty", "at least one node");
    } else {
        run.nodes.push_back(parse_node(top, true));
    }
    auto level = top.choice_or("log_level", {"debug", "info", "warn", "error", "off"}, "info");
    core::parse_log_level(level, run.log_level);
    run.control_socket = top.optional_string("control_socket").value_or("/run/mipsec/" + run.nodes.front().name + ".sock");
    if (run.control_socket.empty() || run.control_socket.size() > 107)
        top.fail("control_socket", "is not a usable Unix socket path", "an absolute path of at most 107 characters");

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
    try {
        return nlohmann::json::parse(in, nullptr, true, /*ignore_comments=*/true);
    } catch (const nlohmann::json::parse_error& e) {
        // Translate the byte offset into line:column so the user can find it.
        std::ifstream again(path);
        std::string text((std::istreambuf_iterator<char>(again)), {});
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

RunConfig load_run_config(const std::string& path) { return parse_run_config(read_json_file(path)); }

}  // namespace mipsec::shell
