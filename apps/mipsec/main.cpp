// SPDX-License-Identifier: MIT
// mipsec: one binary, subcommands. Startup errors are printed and give a non-zero exit;
// 2 means bad configuration or usage, 1 a failure to start or run.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include "apps/mipsec/bench.hpp"
#include "apps/mipsec/lab.hpp"
#include "apps/shell/config_reader.hpp"
#include "apps/shell/config_reload.hpp"
#include "apps/shell/control_server.hpp"
#include "apps/shell/metrics_listener.hpp"
#include "apps/shell/node.hpp"
#include "apps/shell/node_config.hpp"
#include "apps/shell/privileges.hpp"
#include "apps/shell/prometheus_text.hpp"
#include "apps/shell/sd_notify.hpp"
#include "apps/shell/stage_factory.hpp"
#include "apps/shell/stderr_log.hpp"

#ifndef MIPSEC_VERSION
#define MIPSEC_VERSION "0.0.0"
#endif

namespace {

using namespace mipsec;

constexpr int exit_config = 2;
constexpr int exit_failure = 1;

// Least privilege (privileges.hpp): once every node is set up, switch to the configured user
// keeping only the capabilities the roles use; false (after saying why) if that failed.
bool drop_privileges(const shell::RunConfig& config, const std::optional<shell::RunAs>& run_as, const core::Logger& log) {
    if (!run_as && ::geteuid() == 0) {
        log.info("running as root with every capability: set \"user\" (or --user) to drop them after setup");
        return true;
    }
    try {
        auto dropped = shell::drop_privileges(run_as, shell::runtime_capabilities(config));
        log.info("privileges dropped: uid ", dropped.uid, " gid ", dropped.gid, ", capabilities ", dropped.kept, ", no_new_privs");
        for (const auto& m : dropped.missing) log.warn("started without ", m, ": those changes will fail");
        return true;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mipsec: cannot drop privileges, stopping: %s\n", e.what());
        return false;
    }
}

int run_command(const std::string& config_path, const std::string& level_override, const std::string& log_format,
                const std::string& user_override, const std::string& group_override) {
    shell::RunConfig config;
    std::optional<shell::RunAs> run_as;
    try {
        config = shell::load_run_config(config_path);
        if (!user_override.empty()) config.user = user_override, config.user_pointer = "--user";
        if (!group_override.empty()) config.group = group_override, config.group_pointer = "--group";
        if (!config.group.empty() && config.user.empty()) throw shell::ConfigError("--group", "is given without a user", "--user or \"user\" too");
        run_as = shell::resolve_run_as(config);
    } catch (const shell::ConfigError& e) {
        std::fprintf(stderr, "mipsec: config %s: %s\n", config_path.c_str(), e.what());
        return exit_config;
    }
    shell::RunConfig running = config;  // as the file says (no --log-level), for reloads to compare with
    shell::ReloadHistory reloads;
    if (!level_override.empty()) core::parse_log_level(level_override, config.log_level);
    // No --log-format: journal prefixes when stderr is the journal, else text.
    auto log = shell::make_stderr_logger(config.log_level, shell::parse_log_format(log_format));

    boost::asio::io_context io(1);
    std::vector<std::unique_ptr<shell::Node>> nodes;
    std::unique_ptr<shell::ControlServer> control;
    std::unique_ptr<shell::MetricsListener> metrics;
    // What the control socket's "status" and the metrics listener's /metrics both show.
    auto status_json = [&] {
        nlohmann::json j;
        j["version"] = MIPSEC_VERSION;
        j["nodes"] = nlohmann::json::array();
        for (const auto& node : nodes) j["nodes"].push_back(node->status());
        if (metrics) j["metrics_listener"] = metrics->status();
        j["reload"] = reloads.status();
        return j;
    };
    try {
        for (const auto& n : config.nodes) nodes.push_back(shell::Node::start(io, n, log));
        control = std::make_unique<shell::ControlServer>(io, config.control_socket, [&](const std::string& command) {
            if (command != "status") return nlohmann::json{{"error", "unknown command \"" + command + "\"; known: status"}};
            return status_json();
        });
        if (config.metrics_listen) {
            metrics = std::make_unique<shell::MetricsListener>(io, shell::MetricsListener::Config{.listen = *config.metrics_listen}, status_json);
            log.info("metrics at http://", metrics->local_endpoint().to_string(), "/metrics");
        }
    } catch (const std::exception& e) {
        // Destroying what started closes TUN devices (their routes go with them) and sockets.
        std::fprintf(stderr, "mipsec: cannot start: %s\n", e.what());
        return exit_failure;
    }
    for (auto& n : config.nodes) shell::wipe_secrets(n);  // the stages hold their own copies
    for (auto& n : running.nodes) shell::wipe_secrets(n);

    // systemd (Type=notify): ready once every node's coroutines have run up to their first
    // wait — TUN, sockets and first timers armed; co_spawn posted them before this.
    const auto service = shell::ServiceNotifier::from_environment();
    shell::WatchdogPinger watchdog(io, service);
    bool privileges_failed = false;
    boost::asio::post(io, [&] {
        if (!drop_privileges(config, run_as, log)) {
            privileges_failed = true;  // fail closed: never run on with more than we meant to keep
            io.stop();
            return;
        }
        if (auto r = service.notify("READY=1\nSTATUS=running " + std::to_string(nodes.size()) + " node(s); control socket " + config.control_socket); !r)
            log.warn("cannot notify ", service.socket_path(), ": ", r.error().message());
        watchdog.start();
    });

    // SIGHUP (`systemctl reload`): re-read the file, apply what can change live to every node
    // or to none; a refusal keeps the running configuration and says why.
    boost::asio::signal_set hangup(io, SIGHUP);
    std::function<void(const boost::system::error_code&, int)> on_hangup = [&](const boost::system::error_code& ec, int) {
        if (ec) return;
        (void)service.notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                                                  std::chrono::steady_clock::now().time_since_epoch()).count()));
        log.info("signal SIGHUP: reloading ", config_path);
        std::vector<shell::Node*> targets;
        for (auto& node : nodes) targets.push_back(node.get());
        const auto outcome = shell::reload_from_file(config_path, running, targets);
        reloads.record(outcome, std::chrono::system_clock::now());
        // Each node has logged what it changed; say how it ended.
        if (outcome.result == shell::ReloadOutcome::Result::Refused) log.error("reload ", outcome.summary());
        else if (outcome.result == shell::ReloadOutcome::Result::Applied) log.info("reload applied: ", outcome.lines.size(), " stage(s) changed");
        else log.info("reload ", outcome.summary());
        (void)service.notify("READY=1\nSTATUS=running " + std::to_string(nodes.size()) + " node(s); last reload " +
                             (outcome.result == shell::ReloadOutcome::Result::Refused ? "refused" : "applied"));
        hangup.async_wait(on_hangup);
    };
    hangup.async_wait(on_hangup);
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& ec, int signo) {
        if (ec) return;
        log.info("signal ", signo, ": shutting down");
        (void)service.notify("STOPPING=1\nSTATUS=shutting down on signal " + std::to_string(signo));
        watchdog.stop();
        for (auto& node : nodes) node->stop();
        hangup.cancel();
        control->stop();
        if (metrics) metrics->stop();
        io.stop();
    });
    log.info("running ", nodes.size(), " node(s); control socket ", config.control_socket);
    try {
        io.run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mipsec: internal error, stopping: %s\n", e.what());
        return exit_failure;
    }
    return privileges_failed ? exit_failure : 0;
}

int check_command(const std::string& config_path) {
    try {
        auto config = shell::load_run_config(config_path, shell::ExposedSecrets::Warn);
        for (const auto& w : config.warnings) std::fprintf(stderr, "mipsec: warning: config %s: %s (`mipsec run` refuses this)\n", config_path.c_str(), w.c_str());
        const auto run_as = shell::resolve_run_as(config);
        std::printf("%s: OK, %zu node(s), control socket %s\n", config_path.c_str(), config.nodes.size(), config.control_socket.c_str());
        if (run_as) {
            std::printf("  after setup: user %s, group %s, capabilities", run_as->user.c_str(), run_as->group.c_str());
            for (const auto& c : shell::runtime_capabilities(config)) std::printf(" %s", c.name.c_str());
            std::printf("\n");
        }
        for (const auto& n : config.nodes) {
            std::printf("  %s: tun %s, local %s, pipeline (inner first):", n.name.c_str(), n.tun.name.c_str(), n.transport.local.to_string().c_str());
            for (const auto& s : n.pipeline) std::printf(" %s", s.at("type").get<std::string>().c_str());
            std::printf("\n");
        }
        return 0;
    } catch (const shell::ConfigError& e) {
        std::fprintf(stderr, "mipsec: config %s: %s\n", config_path.c_str(), e.what());
        return exit_config;
    }
}

std::string json_text(const nlohmann::json& v, const char* key, const char* fallback = "?") {
    if (!v.contains(key)) return fallback;
    const auto& x = v.at(key);
    return x.is_string() ? x.get<std::string>() : x.dump();
}

std::string spi_hex(const nlohmann::json& v, const char* key) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08llx", v.value(key, 0ULL));
    return buf;
}

// An IKE session's SAs as a table, like `swanctl --list-sas`: one IKE line, one line per
// CHILD_SA. `--json` has every field.
void print_ike_session(const nlohmann::json& st, const char* indent) {
    std::printf("%sIKE %s %s %s%s", indent, json_text(st, "ike_peer").c_str(), json_text(st, "ike_state").c_str(),
                json_text(st, "ike_proposal").c_str(), st.value("nat_detected", false) ? " NAT-T" : "");
    if (st.contains("ike_expires_in_s")) std::printf(", expires in %llds", st.at("ike_expires_in_s").get<long long>());
    if (st.contains("reauth_in_s")) std::printf(", re-authenticates in %llds", st.at("reauth_in_s").get<long long>());
    std::printf("\n");
    if (!st.contains("child_sas")) return;
    for (const auto& c : st.at("child_sas")) {
        std::printf("%s  ESP in %s out %s %s %s", indent, spi_hex(c, "spi_in").c_str(), spi_hex(c, "spi_out").c_str(),
                    json_text(c, "algorithm").c_str(), json_text(c, "state").c_str());
        if (c.contains("rekey_in_s")) std::printf(", rekey in %llds", c.at("rekey_in_s").get<long long>());
        if (c.contains("expires_in_s")) std::printf(", expires in %llds", c.at("expires_in_s").get<long long>());
        std::printf(", in %llu pkts/%llu B, out %llu pkts/%llu B\n", c.value("packets_in", 0ULL), c.value("bytes_in", 0ULL),
                    c.value("packets_out", 0ULL), c.value("bytes_out", 0ULL));
    }
}

// " (message_too_long=3 no_buffer_space=1)" for the write failures by reason, if any.
std::string failure_reasons(const nlohmann::json& v) {
    if (!v.contains("tx_failures") || v.at("tx_failures").empty()) return "";
    std::string out = " (";
    for (const auto& [reason, count] : v.at("tx_failures").items()) {
        if (out.size() > 2) out += " ";
        out += reason + "=" + std::to_string(count.get<unsigned long long>());
    }
    return out + ")";
}

void print_status(const nlohmann::json& j) {
    if (j.contains("reload") && j.at("reload").value("requested", 0ULL) != 0) {
        const auto& r = j.at("reload");
        std::printf("reloads: %llu requested, %llu applied, %llu unchanged, %llu refused; last: %s\n", r.value("requested", 0ULL),
                    r.value("applied", 0ULL), r.value("unchanged", 0ULL), r.value("refused", 0ULL),
                    r.contains("last") ? json_text(r.at("last"), "message").c_str() : "none");
    }
    for (const auto& n : j.at("nodes")) {
        std::printf("node %s (up %llds)\n", n.at("name").get<std::string>().c_str(), n.at("uptime_s").get<long long>());
        const bool link = n.contains("link");
        const auto& t = link ? n.at("link") : n.at("tun");
        std::printf("  %s %s mtu %d: rx %llu tx %llu errors %llu/%llu%s\n", link ? "link" : "tun", t.at("name").get<std::string>().c_str(), t.at("mtu").get<int>(),
                    t.at("rx_packets").get<unsigned long long>(), t.at("tx_packets").get<unsigned long long>(),
                    t.at("rx_errors").get<unsigned long long>(), t.at("tx_errors").get<unsigned long long>(), failure_reasons(t).c_str());
        if (t.contains("offload")) {
            const auto& o = t.at("offload");
            std::string granted, drops;
            for (const auto& g : o.at("granted")) granted += (granted.empty() ? "" : ",") + g.get<std::string>();
            for (const auto& [reason, count] : o.at("drops").items()) drops += " " + reason + "=" + count.dump();
            std::printf("    offload %s: read %llu super-packets as %llu packets, wrote %llu merging %llu packets%s%s\n",
                        granted.empty() ? "refused" : granted.c_str(), o.value("rx_super_packets", 0ULL), o.value("rx_segments", 0ULL),
                        o.value("tx_super_packets", 0ULL), o.value("tx_coalesced", 0ULL), drops.empty() ? "" : ", dropped", drops.c_str());
        }
        if (t.contains("active_mtu")) {
            const auto tb = t.value("too_big", nlohmann::json::object());
            std::printf("    active stack: mtu %llu (adds %llu bytes); too big: %llu answered (ICMP 3/4), %llu rate-limited, "
                        "%llu dropped, %llu sent on to be fragmented\n",
                        t.value("active_mtu", 0ULL), t.value("stack_overhead", 0ULL), tb.value("icmp_frag_needed_sent", 0ULL),
                        tb.value("icmp_rate_limited", 0ULL), tb.value("dropped", 0ULL), tb.value("sent_for_fragmentation", 0ULL));
        }
        for (const auto& s : n.at("transport").at("sockets")) {
            std::string what = s.contains("udp_port") ? "udp " + std::to_string(s.at("udp_port").get<int>()) : "raw proto " + std::to_string(s.at("raw_protocol").get<int>());
            std::printf("  %-14s rx %llu tx %llu errors %llu/%llu%s\n", what.c_str(), s.at("rx_packets").get<unsigned long long>(),
                        s.at("tx_packets").get<unsigned long long>(), s.at("rx_errors").get<unsigned long long>(), s.at("tx_errors").get<unsigned long long>(),
                        failure_reasons(s).c_str());
        }
        const auto& transport = n.at("transport");
        if (transport.value("unroutable", 0ULL) != 0) std::printf("  unroutable (no socket for the packet): %llu\n", transport.at("unroutable").get<unsigned long long>());
        if (transport.contains("path_mtu") && !transport.at("path_mtu").empty()) {
            std::printf("  path MTU:");
            for (const auto& p : transport.at("path_mtu")) std::printf(" %s %llu", json_text(p, "destination").c_str(), p.at("mtu").get<unsigned long long>());
            std::printf("\n");
        }
        const auto& p = n.at("pool");
        std::printf("  pool: %llu/%llu free, exhausted %llu, back-pressure pauses %llu\n", p.at("available").get<unsigned long long>(),
                    p.at("buffers").get<unsigned long long>(), p.at("exhausted").get<unsigned long long>(), p.at("backpressure_pauses").get<unsigned long long>());
        int i = 0;
        for (const auto& s : n.at("pipeline")) {
            std::printf("  [%d] %-18s out %llu in %llu not mine %llu control %llu/%llu dropped %llu", i++, s.at("type").get<std::string>().c_str(),
                        s.at("encapsulated").get<unsigned long long>(), s.at("decapsulated").get<unsigned long long>(),
                        s.value("not_mine", 0ULL), s.at("consumed").get<unsigned long long>(), s.at("control_sent").get<unsigned long long>(),
                        s.at("dropped").get<unsigned long long>());
            for (const auto& [reason, count] : s.at("drops").items()) std::printf(" %s=%llu", reason.c_str(), count.get<unsigned long long>());
            std::printf("\n");
            if (!s.contains("state")) continue;
            const auto& st = s.at("state");
            const auto type = s.at("type").get<std::string>();
            if (type == "ipsec.vpn_client" && st.contains("ike_peer")) {
                std::printf("      inner address %s, %llu re-authentication(s)\n", json_text(st, "inner_address").c_str(),
                            st.value("ike_reauthentications", 0ULL));
                print_ike_session(st, "      ");
            } else if (type == "ipsec.vpn_gateway" && st.contains("clients")) {
                std::printf("      %llu client(s), %llu IKE session(s), %llu half-open\n", st.value("clients_total", 0ULL),
                            st.value("ike_sessions", 0ULL), st.value("ike_half_open", 0ULL));
                for (const auto& c : st.at("clients")) {
                    std::printf("      client %s (%s)\n", json_text(c, "remote").c_str(), json_text(c, "inner_address").c_str());
                    if (c.contains("ike_peer")) print_ike_session(c, "        ");
                }
            } else {
                if (type == "mip.mobile_node" && st.contains("detection") && st.at("detection").contains("interfaces")) {
                    // RFC 5265 §6: each interface's own detection state, the one in use marked.
                    const auto& d = st.at("detection");
                    for (const auto& iface : d.at("interfaces")) {
                        std::string since = iface.contains("since_internal_success_s")
                                                ? ", " + iface.at("since_internal_success_s").dump() + " s since the internal HA answered"
                                                : "";
                        std::printf("      %s %s: %s (%s)%s%s, T_MONITOR %s s\n", iface.value("in_use", false) ? "*" : " ",
                                    json_text(iface, "name").c_str(), json_text(iface, "mode").c_str(), json_text(iface, "cause").c_str(),
                                    iface.value("data_allowed", false) ? ", data allowed" : "", since.c_str(), d.at("t_monitor_s").dump().c_str());
                    }
                }
                std::printf("      %s\n", st.dump().c_str());
            }
        }
    }
    if (j.contains("metrics_listener")) {
        const auto& m = j.at("metrics_listener");
        std::printf("metrics listener http://%s/metrics: requests", json_text(m, "listen").c_str());
        if (m.contains("requests"))
            for (const auto& [code, count] : m.at("requests").items()) std::printf(" %s=%llu", code.c_str(), count.get<unsigned long long>());
        std::printf("; connections open %llu, rejected over the cap %llu, timed out %llu, aborted %llu\n", m.value("connections_open", 0ULL),
                    m.value("connections_rejected", 0ULL), m.value("connections_timed_out", 0ULL), m.value("connections_aborted", 0ULL));
    }
}

int status_command(std::string socket_path, const std::string& config_path, const std::string& format) {
    try {
        // Only the socket path: status needs neither a valid pipeline nor the keys.
        if (!config_path.empty()) socket_path = shell::control_socket_path(shell::read_json_file(config_path));
    } catch (const shell::ConfigError& e) {
        std::fprintf(stderr, "mipsec: config %s: %s\n", config_path.c_str(), e.what());
        return exit_config;
    }
    try {
        auto reply = shell::control_request(socket_path, "status");
        if (reply.contains("error")) {
            std::fprintf(stderr, "mipsec: %s\n", reply.at("error").get<std::string>().c_str());
            return exit_failure;
        }
        if (format == "json") std::cout << reply.dump(2) << "\n";
        else if (format == "prometheus") std::cout << shell::prometheus_text(reply);
        else print_status(reply);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mipsec: %s\n", e.what());
        return exit_failure;
    }
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"mipsec: Mobile IPv4 across IPsec VPN gateways (RFC 5265), in userspace"};
    app.require_subcommand(1);

    std::string config_path, level, socket_path = "/run/mipsec/mipsec.sock";
    bool json = false;

    auto* run = app.add_subcommand("run", "Start the nodes a JSON config describes; runs until SIGINT/SIGTERM");
    run->add_option("config", config_path, "JSON config file")->required();
    run->add_option("--log-level", level, "Override the config's log level")->check(CLI::IsMember({"debug", "info", "warn", "error", "off"}));
    std::string log_format, run_user, run_group;
    run->add_option("--user", run_user, "After setup, switch to this user (name or uid), keeping only the capabilities the nodes need; overrides the config's \"user\"");
    run->add_option("--group", run_group, "The group to switch to (default: the user's primary group); overrides the config's \"group\"");
    run->add_option("--log-format", log_format, "text, journal (\"<N>\" priority prefixes, no timestamp) or json (one object per line); default: journal when stderr is the journal, else text")
        ->check(CLI::IsMember({"text", "journal", "json"}));

    auto* check = app.add_subcommand("check", "Validate a config file without starting anything");
    check->add_option("config", config_path, "JSON config file")->required();

    auto* status = app.add_subcommand("status", "Show a running instance's state and counters");
    status->add_option("--socket", socket_path, "Control socket of the instance")->capture_default_str();
    status->add_option("--config", config_path, "Take the control socket path from this config");
    status->add_flag("--json", json, "Print the raw JSON (the same as --format json)");
    std::string status_format = "text";
    status->add_option("--format", status_format, "text, json, or prometheus (text exposition format, for node_exporter's textfile collector)")
        ->check(CLI::IsMember({"text", "json", "prometheus"}))
        ->capture_default_str();

    auto* stages = app.add_subcommand("stages", "List the stage types a pipeline may use");

    auto* bench = app.add_subcommand("bench", "Measure throughput on one core beside a reference in the same run");
    bench->require_subcommand(1);
    bench::EspOptions esp_options;
    auto* bench_esp = bench->add_subcommand("esp", "ESP stage seal/open vs the raw cipher rate of the same library");
    bench_esp->add_option("--suite", esp_options.suites, "Suites to measure")->capture_default_str();
    bench_esp->add_option("--size", esp_options.sizes, "Inner packet sizes in bytes")->check(CLI::Range(28, 1500))->capture_default_str();
    bench_esp->add_option("--ms", esp_options.milliseconds, "Timed work per round")->check(CLI::Range(10, 60000))->capture_default_str();
    bench_esp->add_option("--rounds", esp_options.rounds, "Alternating stage/raw rounds; the best of each is reported")->check(CLI::Range(1, 100))->capture_default_str();
    bench::HaOptions ha_options;
    auto* bench_ha = bench->add_subcommand("ha", "Home agent registrations/s vs the raw HMAC-MD5 rate, and memory per binding");
    bench_ha->add_option("--nodes", ha_options.nodes, "Mobile nodes registering in the rate test")->check(CLI::Range(1, 4000000))->capture_default_str();
    bench_ha->add_option("--bindings", ha_options.memory_sizes, "Binding counts for the memory test, each in a fresh process")->check(CLI::Range(1, 4000000))->capture_default_str();
    bench_ha->add_option("--ms", ha_options.milliseconds, "Timed renewals per round")->check(CLI::Range(10, 60000))->capture_default_str();
    bench_ha->add_option("--rounds", ha_options.rounds, "Rounds of the HA and of the raw reference; the best of each is reported")->check(CLI::Range(1, 100))->capture_default_str();
    bench_ha->add_flag("--nat", ha_options.nat, "Requests carry an RFC 3519 UDP Tunnel Request and arrive through a NAT");
    bench_ha->add_flag("--json", ha_options.json, "Print one JSON object");
    bool ha_flood = false;
    bench::HaFloodOptions flood_options;
    bench_ha->add_flag("--flood", ha_flood, "Registration flood: cost of each kind of bad request vs a good one, and a mixed flood");
    bench_ha->add_option("--flood-per-good", flood_options.flood_per_good, "Bad packets per good renewal in the mixed flood")
        ->check(CLI::Range(1, 100000))->capture_default_str();
    bench_ha->add_option("--state-dir", ha_options.state_dir, "Directory for the persistence test's SQLite files (default $TMPDIR or /tmp): put it on the disk a state_file would use");
    auto* version = app.add_subcommand("version", "Print the version");

    bench::IkeLoadOptions ike_options;
    std::string ike_local, ike_gateway, ike_ts = "0.0.0.0/0";
    auto* bench_ike = bench->add_subcommand("ike-load", "IKEv1 load generator: complete Main Mode + Quick Mode handshakes against a gateway");
    bench_ike->add_option("--local", ike_local, "Our address (binds UDP 500 and 4500)")->required();
    bench_ike->add_option("--gateway", ike_gateway, "The gateway's address")->required();
    bench_ike->add_option("--psk", ike_options.psk, "Pre-shared key")->required();
    bench_ike->add_option("--id", ike_options.id, "Our ID (FQDN)")->capture_default_str();
    bench_ike->add_option("--remote-ts", ike_ts, "Traffic selector behind the gateway")->capture_default_str();
    bench_ike->add_option("--count", ike_options.count, "Handshakes to complete")->check(CLI::Range(1, 1000000))->capture_default_str();
    bench_ike->add_option("--concurrency", ike_options.concurrency, "Handshakes in flight")->check(CLI::Range(1, 10000))->capture_default_str();
    bench_ike->add_option("--timeout", ike_options.timeout_s, "Give up after this many seconds")->check(CLI::Range(1, 3600))->capture_default_str();
    bench::GatewayPollOptions gateway_poll_options;
    auto* bench_gateway_poll = bench->add_subcommand("gateway-poll", "Per-batch tick of a VPN gateway with 10, 1,000 and 10,000 idle clients");
    bench_gateway_poll->add_option("--clients", gateway_poll_options.clients, "Client counts, each a fresh gateway")->check(CLI::Range(1, 100000))->capture_default_str();
    bench_gateway_poll->add_option("--rounds", gateway_poll_options.rounds, "Timed rounds; the median is reported")->check(CLI::Range(1, 10000))->capture_default_str();
    bench_gateway_poll->add_option("--polls", gateway_poll_options.polls, "Polls per round")->check(CLI::Range(1, 10000000))->capture_default_str();
    bench::WorkersOptions workers_options;
    auto* bench_workers = bench->add_subcommand("workers", "The node's per-batch data path on 1..N threads in process, AEAD under the core lock or outside it");
    bench_workers->add_option("--suite", workers_options.suite, "AEAD suite")->capture_default_str();
    bench_workers->add_option("--threads", workers_options.threads, "Thread counts to measure (1 is the reference)")->check(CLI::Range(1, 256))->capture_default_str();
    bench_workers->add_option("--size", workers_options.size, "Inner packet size in bytes")->check(CLI::Range(28, 1500))->capture_default_str();
    bench_workers->add_option("--ms", workers_options.milliseconds, "Timed work per round")->check(CLI::Range(10, 60000))->capture_default_str();
    bench_workers->add_option("--rounds", workers_options.rounds, "Rounds per figure; the best is reported")->check(CLI::Range(1, 100))->capture_default_str();

    // Everything after "lab" goes to the lab's own parser (python3 -m lab --help).
    auto* lab_command = app.add_subcommand("lab", "Scenario lab in network namespaces: lab list | check FILE | run SCENARIO [--report DIR] [--keep] [--set KEY=VALUE]... | matrix SCENARIO [--orders A,B,...] | pictures [SCENARIO...] [--out DIR]");
    lab_command->prefix_command();
    lab_command->set_help_flag();

    CLI11_PARSE(app, argc, argv);

    if (*lab_command) return lab::run(lab_command->remaining());

    if (*run) return run_command(config_path, level, log_format, run_user, run_group);
    if (*check) return check_command(config_path);
    if (*status) {
        if (json && status_format != "text" && status_format != "json") {
            std::fprintf(stderr, "mipsec status: --json and --format %s contradict each other\n", status_format.c_str());
            return exit_config;
        }
        return status_command(socket_path, config_path, json ? "json" : status_format);
    }
    if (*bench_esp) return bench::run_esp(esp_options);
    if (*bench_ha && ha_flood) {
        if (bench_ha->count("--nodes") != 0) flood_options.nodes = ha_options.nodes;
        if (bench_ha->count("--ms") != 0) flood_options.milliseconds = ha_options.milliseconds;
        if (bench_ha->count("--rounds") != 0) flood_options.rounds = ha_options.rounds;
        flood_options.json = ha_options.json;
        return bench::run_ha_flood(flood_options);
    }
    if (*bench_ha) return bench::run_ha(ha_options);
    if (*bench_gateway_poll) return bench::run_gateway_poll(gateway_poll_options);
    if (*bench_workers) return bench::run_workers(workers_options);
    if (*bench_ike) {
        auto local = core::Ipv4Address::parse(ike_local);
        auto gateway = core::Ipv4Address::parse(ike_gateway);
        auto ts = core::Ipv4Prefix::parse(ike_ts);
        if (!local || !gateway || !ts) {
            std::fprintf(stderr, "mipsec bench ike-load: --local and --gateway take IPv4 addresses, --remote-ts a prefix\n");
            return 2;
        }
        ike_options.local = *local;
        ike_options.gateway = *gateway;
        ike_options.remote_ts = *ts;
        try {
            return bench::run_ike_load(ike_options);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "mipsec bench ike-load: %s\n", e.what());
            return 1;
        }
    }
    if (*stages) {
        for (const auto& t : shell::stage_types()) std::printf("%-20s %s\n", t.name.c_str(), t.summary.c_str());
        return 0;
    }
    if (*version) {
        std::printf("mipsec %s\n", MIPSEC_VERSION);
        return 0;
    }
    return 0;
}
