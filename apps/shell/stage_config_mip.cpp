// SPDX-License-Identifier: MIT
// JSON -> mip stage configs.
#include <net/if.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>

#include <set>

#include "apps/shell/stage_factory.hpp"
#include "mip/foreign_agent_stage.hpp"
#include "mip/home_agent_stage.hpp"
#include "mip/ip_in_ip_stage.hpp"
#include "mip/mobile_node_stage.hpp"

namespace mipsec::shell {

namespace {
std::unique_ptr<core::Stage> build_ipip(const ConfigReader& c, const StageBuildContext&) {
    c.only({"type", "local", "remote", "ttl", "df"});
    mip::IpInIpStage::Config cfg;
    cfg.local = c.address("local");
    cfg.remote = c.address("remote");
    if (cfg.local == cfg.remote) c.fail("remote", "equals local", "the other tunnel endpoint");
    cfg.ttl = static_cast<std::uint8_t>(c.integer_or("ttl", 64, 1, 255));
    cfg.df_when_inner_clear = c.boolean_or("df", false);
    return std::make_unique<mip::IpInIpStage>(cfg);
}
mip::SecurityAssociation read_sa(const ConfigReader& c) {
    mip::SecurityAssociation sa;
    sa.spi = static_cast<std::uint32_t>(c.integer("spi", mip::SecurityAssociation::min_spi, 0xFFFFFFFF));
    sa.key = crypto::SecretBytes(c.secret_hex_bytes("key", 1, 64));
    sa.replay = c.choice_or("replay", {"timestamp", "nonce"}, "timestamp") == "nonce" ? mip::ReplayProtection::Nonce
                                                                                        : mip::ReplayProtection::Timestamp;
    return sa;
}

// RFC 5265 §6 tracks each interface on its own: "interface" names one, "interfaces" several
// (a wired and a wireless link up at once), the first preferred when two are inside.
std::vector<mip::MobileNodeStage::Config::Detection::Interface> read_detection_interfaces(const ConfigReader& d, const StageBuildContext& ctx) {
    constexpr std::size_t max_interfaces = 8;
    std::vector<std::pair<std::string, std::string>> names;  // name, JSON pointer
    if (d.has("interface") && d.has("interfaces"))
        d.fail("interfaces", "is given with \"interface\"", "either \"interface\": \"eth0\" or \"interfaces\": [\"eth0\", \"wlan0\"]");
    if (d.has("interfaces")) {
        const auto& list = d.raw("interfaces");
        if (!list.is_array() || list.empty() || list.size() > max_interfaces)
            d.fail("interfaces", "is not an array of 1 to 8 interface names", "the physical interfaces, like [\"eth0\", \"wlan0\"]");
        for (std::size_t i = 0; i < list.size(); ++i) {
            const auto pointer = d.pointer_of("interfaces") + "/" + std::to_string(i);
            if (!list[i].is_string()) throw ConfigError(pointer, "is " + list[i].dump(), "an interface name, like \"wlan0\"");
            names.emplace_back(list[i].get<std::string>(), pointer);
        }
    } else {
        names.emplace_back(d.string("interface"), d.pointer_of("interface"));
    }
    std::vector<mip::MobileNodeStage::Config::Detection::Interface> out;
    std::set<std::string> seen;
    for (const auto& [name, pointer] : names) {
        if (name.empty() || name.size() > 15)
            throw ConfigError(pointer, "\"" + name + "\" is not an interface name", "the physical interface, like \"eth0\"");
        if (!seen.insert(name).second) throw ConfigError(pointer, "\"" + name + "\" is listed twice", "each interface once");
        mip::MobileNodeStage::Config::Detection::Interface i{0, name};
        if (!ctx.dry_run) {
            i.ifindex = ::if_nametoindex(name.c_str());
            if (i.ifindex == 0)
                throw ConfigError(pointer, "no interface \"" + name + "\" in this network namespace", "an existing interface (see `ip link`)");
        }
        out.push_back(std::move(i));
    }
    return out;
}

// Registration timestamps are NTP time (RFC 5944 §5.7); the cores only see the monotonic clock.
core::Duration ntp_offset_now(const StageBuildContext& ctx) { return mip::ntp_offset(std::chrono::system_clock::now(), ctx.now); }

std::unique_ptr<core::Stage> build_mobile_node(const ConfigReader& c, const StageBuildContext& ctx) {
    c.only({"type", "home_address", "home_agent", "spi", "key", "key_file", "replay", "lifetime_s", "reverse_tunnel", "udp_tunnelling",
            "care_of", "care_of_address", "interface", "foreign_agents", "source_port", "nai", "tunnel_ttl", "df", "max_retransmit_s",
            "detection"});
    mip::MobileNodeStage::Config cfg;
    auto& node = cfg.node;
    node.home_address = c.address("home_address");
    node.home_agent = c.address("home_agent");
    if (node.home_agent.is_unspecified() || node.home_agent.is_multicast())
        c.fail("home_agent", "is not a unicast address", "the home agent's address");
    node.sa = read_sa(c);
    node.lifetime = static_cast<std::uint16_t>(c.integer_or("lifetime_s", 1800, 4, 65534));
    node.reverse_tunnel = c.boolean_or("reverse_tunnel", true);
    const auto udp = c.choice_or("udp_tunnelling", {"off", "wanted", "forced"}, "wanted");
    node.udp_tunnelling = udp == "off" ? mip::MobileNode::UdpTunnelling::Off
                          : udp == "forced" ? mip::MobileNode::UdpTunnelling::Forced
                                            : mip::MobileNode::UdpTunnelling::Wanted;
    node.nai = c.optional_string("nai").value_or("");
    if (node.home_address.is_unspecified() && node.nai.empty())
        c.fail("home_address", "is 0.0.0.0 without an \"nai\"", "the home address, or an NAI to learn it from the first reply (RFC 2794)");
    node.source_port = static_cast<std::uint16_t>(c.integer_or("source_port", mip::registration_port, 1, 65535));
    node.max_retransmit = std::chrono::seconds(c.integer_or("max_retransmit_s", 64, 1, 3600));
    node.ntp_offset = ntp_offset_now(ctx);
    cfg.tunnel_ttl = static_cast<std::uint8_t>(c.integer_or("tunnel_ttl", 64, 1, 255));
    cfg.df_when_inner_clear = c.boolean_or("df", false);

    const auto source = c.choice("care_of", {"static", "interface", "inner_address", "foreign_agent"});
    if (source == "static") {
        cfg.care_of_source = mip::MobileNodeStage::CareOfSource::Static;
        cfg.static_care_of = c.address("care_of_address");
    } else if (source == "inner_address") {
        cfg.care_of_source = mip::MobileNodeStage::CareOfSource::InnerAddress;
    } else {
        cfg.care_of_source = source == "interface" ? mip::MobileNodeStage::CareOfSource::Interface
                                                   : mip::MobileNodeStage::CareOfSource::ForeignAgent;
        const auto name = c.string("interface");
        if (name.empty() || name.size() > 15) c.fail("interface", "\"" + name + "\" is not an interface name", "the interface that moves, like \"wlan0\"");
        if (!ctx.dry_run) {
            cfg.care_of_ifindex = ::if_nametoindex(name.c_str());
            if (cfg.care_of_ifindex == 0)
                c.fail("interface", "no interface \"" + name + "\" in this network namespace", "an existing interface (see `ip link`)");
        }
    }
    node.foreign_agents_when_no_address = c.boolean_or("foreign_agents", false);
    if (node.foreign_agents_when_no_address && source != "interface")
        c.fail("foreign_agents", "is only used with \"care_of\": \"interface\"", "care_of interface (or care_of foreign_agent to always use one)");
    if (source != "static" && c.has("care_of_address"))
        c.fail("care_of_address", "is only used with \"care_of\": \"static\"", "no care_of_address, or care_of static");
    if (source != "interface" && source != "foreign_agent" && c.has("interface"))
        c.fail("interface", "is only used with \"care_of\": \"interface\" or \"foreign_agent\"", "no interface here");
    if (auto d = c.optional_object("detection")) {
        // RFC 5265 internal-network detection: the i-MIP layer, whose care-of address outside
        // is the VPN's inner address, decides from the physical interface whether it is inside.
        if (source != "inner_address")
            c.fail("detection", "is only used with \"care_of\": \"inner_address\"", "the i-MIP layer (care_of inner_address) above the VPN");
        d->only({"interface", "interfaces", "external_home_agent", "t_monitor_s", "monitor_margin_s", "internal_retry_window_s", "detection_timeout_s",
                 "profile", "keep_sas_inside", "foreign_agents", "ike_delay_ms"});
        mip::MobileNodeStage::Config::Detection det;
        det.interfaces = read_detection_interfaces(*d, ctx);
        det.external_home_agent = d->address("external_home_agent");
        if (det.external_home_agent.is_unspecified() || det.external_home_agent.is_multicast())
            d->fail("external_home_agent", "is not a unicast address", "the x-MIP layer's home agent");
        // RFC 5265 §1: equal addresses would make every reply "external"; the core then never
        // detects inside, which is safe, but almost certainly not what was meant.
        if (det.external_home_agent == node.home_agent)
            d->fail("external_home_agent", "equals home_agent", "the x-MIP layer's home agent, not the internal one");
        det.t_monitor = std::chrono::seconds(d->integer_or("t_monitor_s", 60, 2, 86400));
        const auto margin = d->integer_or("monitor_margin_s", 10, 1, 86400);
        if (std::chrono::seconds(margin) >= det.t_monitor)
            d->fail("monitor_margin_s", "is not below t_monitor_s", "a margin N smaller than T_MONITOR (re-registration every T_MONITOR - N)");
        det.monitor_margin = std::chrono::seconds(margin);
        det.internal_retry_window = std::chrono::seconds(d->integer_or("internal_retry_window_s", 10, 0, 3600));
        det.detection_timeout = std::chrono::seconds(d->integer_or("detection_timeout_s", 30, 1, 3600));
        det.profile = d->choice_or("profile", {"rfc5265", "plain_internal_first"}, "rfc5265") == "plain_internal_first"
                          ? mip::NetworkDetection::Profile::PlainInternalFirst
                          : mip::NetworkDetection::Profile::Rfc5265;
        det.keep_vpn_sas = d->boolean_or("keep_sas_inside", true);
        // RFC 5265 §3.3: while the internal HA may still answer, IKE MAY wait; an answer in
        // time spares a negotiation (and, inside, its Deletes). Bounded by the retry window.
        const auto ike_delay_ms = d->integer_or("ike_delay_ms", 0, 0, 10000);
        if (std::chrono::milliseconds(ike_delay_ms) > det.internal_retry_window)
            d->fail("ike_delay_ms", "is longer than internal_retry_window_s", "a delay within the time the internal HA is still asked");
        det.ike_delay = std::chrono::milliseconds(ike_delay_ms);
        // Modes f and fvc: on a link without an address of our own, attach through a foreign
        // agent heard there (the x-MIP layer needs "foreign_agents": true for fvc).
        det.foreign_agents = d->boolean_or("foreign_agents", true);
        cfg.detection = det;
    }
    return std::make_unique<mip::MobileNodeStage>(std::move(cfg), *ctx.random);
}

// The state file holds every binding and the replay state of RFC 5944 §5.7: whoever can read
// it learns where each mobile node is, whoever can write it can undo replay protection. So,
// as ssh does for its keys, refuse one that group or others can open, and a path whose
// directory is missing (a typo there would silently lose every binding at each restart).
void check_state_file(const ConfigReader& c, const std::string& path) {
    if (path.empty() || path.ends_with('/')) c.fail("state_file", "\"" + path + "\" is not a file path", "a file path, like \"/var/lib/mipsec/ha.db\"");
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    struct stat st{};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        c.fail("state_file", "directory \"" + dir + "\" does not exist", "a file in an existing directory (create it, e.g. mkdir -m 700 " + dir + ")");
    if (::lstat(path.c_str(), &st) != 0) return;  // created at start, mode 0600
    if (!S_ISREG(st.st_mode)) c.fail("state_file", "\"" + path + "\" is not a regular file", "a regular file (or none yet)");
    const unsigned mode = st.st_mode & 07777;
    if ((mode & 077) != 0) {
        char octal[8];
        std::snprintf(octal, sizeof octal, "%04o", mode);
        const char* who = (mode & S_IROTH) != 0   ? "is readable by others"
                          : (mode & S_IRGRP) != 0 ? "is readable by its group"
                                                  : "can be written by group or others";
        c.fail("state_file", "\"" + path + "\" " + who + " (mode " + octal + ")", "a file only its owner can use: chmod 600 " + path);
    }
}

mip::HomeAgentStage::Config read_home_agent(const ConfigReader& c, const StageBuildContext& ctx) {
    c.only({"type", "address", "home_network", "max_lifetime_s", "reverse_tunnel", "reverse_tunnel_required", "udp_tunnelling",
            "keepalive_s", "udp_max_lifetime_s", "timestamp_tolerance_s", "max_bindings", "mobile_nodes", "tunnel_ttl", "df",
            "pass_unbound", "drop_unrelated", "home_interface", "trusted_networks", "state_file", "state_sync"});
    mip::HomeAgentStage::Config cfg;
    auto& agent = cfg.agent;
    agent.address = c.address("address");
    if (agent.address.is_unspecified() || agent.address.is_multicast()) c.fail("address", "is not a unicast address", "the home agent's own address");
    agent.home_network = c.prefix("home_network");
    agent.max_lifetime = static_cast<std::uint16_t>(c.integer_or("max_lifetime_s", 1800, 4, 65535));
    agent.reverse_tunnel_supported = c.boolean_or("reverse_tunnel", true);
    agent.reverse_tunnel_required = c.boolean_or("reverse_tunnel_required", false);
    if (agent.reverse_tunnel_required && !agent.reverse_tunnel_supported)
        c.fail("reverse_tunnel_required", "is true while reverse_tunnel is false", "reverse_tunnel true, or not required");
    agent.udp_tunnelling = c.boolean_or("udp_tunnelling", true);
    agent.keepalive_interval = static_cast<std::uint16_t>(c.integer_or("keepalive_s", 110, 0, 65535));
    agent.udp_max_lifetime = static_cast<std::uint16_t>(c.integer_or("udp_max_lifetime_s", 0, 0, 65535));
    agent.timestamp_tolerance = std::chrono::seconds(c.integer_or("timestamp_tolerance_s", 7, 1, 3600));
    agent.max_bindings = static_cast<std::size_t>(c.integer_or("max_bindings", 1 << 20, 1, 1 << 26));
    agent.ntp_offset = ntp_offset_now(ctx);
    // RFC 5265 §5 internal home agent: only these sources are answered, with TNC. None by default.
    agent.trusted_networks = c.prefix_list("trusted_networks");
    if (c.has("trusted_networks") && agent.trusted_networks.empty())
        c.fail("trusted_networks", "is empty", "the trusted source subnets, like [\"10.0.0.0/8\"], or no trusted_networks at all");
    std::set<std::uint32_t> homes;
    std::set<std::string> nais;
    for (const auto& mn : c.objects("mobile_nodes")) {
        mn.only({"home_address", "spi", "key", "key_file", "replay", "nai"});
        mip::HomeAgent::MobileNodeConfig m;
        m.home_address = mn.address("home_address");
        m.nai = mn.optional_string("nai").value_or("");
        if (m.home_address.is_unspecified() && m.nai.empty())
            mn.fail("home_address", "is 0.0.0.0 without an \"nai\"", "the mobile node's home address, or its NAI");
        if (!m.home_address.is_unspecified() && !agent.home_network.contains(m.home_address))
            mn.fail("home_address", m.home_address.to_string() + " is outside home_network " + agent.home_network.to_string(), "an address of the home network");
        if (!m.home_address.is_unspecified() && !homes.insert(m.home_address.value).second)
            mn.fail("home_address", m.home_address.to_string() + " is listed twice", "one entry per mobile node");
        if (!m.nai.empty() && !nais.insert(m.nai).second) mn.fail("nai", "\"" + m.nai + "\" is listed twice", "one entry per mobile node");
        m.sa = read_sa(mn);
        agent.mobile_nodes.push_back(std::move(m));
    }
    if (agent.mobile_nodes.empty()) c.fail("mobile_nodes", "is empty", "at least one {\"home_address\", \"spi\", \"key\"}");
    cfg.tunnel_ttl = static_cast<std::uint8_t>(c.integer_or("tunnel_ttl", 64, 1, 255));
    cfg.df_when_inner_clear = c.boolean_or("df", false);
    cfg.pass_unbound = c.boolean_or("pass_unbound", false);
    cfg.drop_unrelated = c.boolean_or("drop_unrelated", false);
    if (auto name = c.optional_string("home_interface"); name && !ctx.dry_run) {
        cfg.home_link_ifindex = ::if_nametoindex(name->c_str());
        if (cfg.home_link_ifindex == 0)
            c.fail("home_interface", "no interface \"" + *name + "\" in this network namespace", "the home link's interface (see `ip link`)");
    }
    return cfg;
}

std::unique_ptr<core::Stage> build_home_agent(const ConfigReader& c, const StageBuildContext& ctx) {
    auto cfg = read_home_agent(c, ctx);
    const auto state_file = c.optional_string("state_file");
    const bool full_sync = c.choice_or("state_sync", {"normal", "full"}, "normal") == "full";
    if (!state_file && c.has("state_sync")) c.fail("state_sync", "is set without a state_file", "a state_file, or no state_sync");
    if (state_file) check_state_file(c, *state_file);
    auto stage = std::make_unique<mip::HomeAgentStage>(std::move(cfg), *ctx.random);
    if (state_file && !ctx.dry_run) {
        auto opened = mip::SqliteBindingStore::open({*state_file, full_sync});
        if (!opened) c.fail("state_file", "cannot open \"" + *state_file + "\": " + opened.error().message(), "a file this user can create and write");
        mip::HomeAgentStage::StoreOpening opening{"\"" + *state_file + "\"", {}, std::nullopt};
        if (opened->was_corrupt) opening.corruption = opened->corruption + "; moved aside to \"" + opened->moved_aside + "\"";
        // open() has read it all once already; this second read is what the stage restores.
        auto state = opened->store->load();
        if (!state) c.fail("state_file", "cannot read \"" + *state_file + "\": " + state.error().message(), "a readable state file");
        opening.state = std::move(*state);
        stage->attach_store(std::move(opened->store), std::move(opening));
    }
    return stage;
}

// What a reload may change in a running home agent: its mobile nodes and how it answers the
// requests that follow. address and home_network sit in every binding and reply, udp_tunnelling
// sizes the stage's headroom, home_interface is the shell's ARP proxy: those need a restart.
const std::vector<std::string> home_agent_live_keys = {
    "mobile_nodes", "max_lifetime_s", "reverse_tunnel", "reverse_tunnel_required", "keepalive_s", "udp_max_lifetime_s",
    "timestamp_tolerance_s", "max_bindings", "trusted_networks", "tunnel_ttl", "df", "pass_unbound", "drop_unrelated"};

StageReconfiguration reconfigure_home_agent(core::Stage& stage, const ConfigReader& c, const StageBuildContext& ctx) {
    auto& agent = dynamic_cast<mip::HomeAgentStage&>(stage);
    auto cfg = std::make_shared<mip::HomeAgentStage::Config>(read_home_agent(c, ctx));
    return [&agent, cfg] {
        auto changed = agent.reconfigure(std::move(*cfg));
        std::vector<std::string> out;
        for (const auto& a : changed.added) out.push_back("added MN " + a.to_string());
        for (const auto& a : changed.removed) {
            std::string line = "removed MN " + a.to_string();
            for (const auto& b : changed.bindings_removed)
                if (b.home_address == a) line += " (its binding to " + b.care_of_address.to_string() + " is dropped)";
            out.push_back(std::move(line));
        }
        for (const auto& a : changed.rekeyed) out.push_back("re-keyed " + a.to_string() + " (binding kept until it registers with the new key)");
        return out;
    };
}

std::unique_ptr<core::Stage> build_foreign_agent(const ConfigReader& c, const StageBuildContext& ctx) {
    c.only({"type", "link_address", "care_of", "advertisement_interval_s", "advertisement_lifetime_s", "registration_lifetime_s",
            "reverse_tunnel", "reverse_tunnel_required", "udp_tunnelling", "registration_required", "max_visitors", "max_pending",
            "pending_timeout_s", "tunnel_ttl", "df", "home_agent_udp_tunnelling", "keepalive_s"});
    mip::ForeignAgentStage::Config cfg;
    auto& agent = cfg.agent;
    agent.link_address = c.address("link_address");
    if (agent.link_address.is_unspecified() || agent.link_address.is_multicast())
        c.fail("link_address", "is not a unicast address", "the agent's address on the visitor link");
    if (c.has("care_of")) {
        const auto& list = c.raw("care_of");
        if (!list.is_array() || list.empty() || list.size() > 8)
            c.fail("care_of", "is not an array of 1 to 8 addresses", "the care-of addresses to advertise, like [\"198.51.100.1\"]");
        for (std::size_t i = 0; i < list.size(); ++i) {
            auto a = list[i].is_string() ? core::Ipv4Address::parse(list[i].get<std::string>()) : std::nullopt;
            if (!a || a->is_unspecified() || a->is_multicast())
                throw ConfigError(c.pointer_of("care_of") + "/" + std::to_string(i), "is " + list[i].dump(), "a unicast IPv4 address");
            agent.care_of_addresses.push_back(*a);
        }
    }
    agent.advertisement_lifetime = static_cast<std::uint16_t>(c.integer_or("advertisement_lifetime_s", 30, 3, 9000));
    agent.advertisement_interval = std::chrono::seconds(c.integer_or("advertisement_interval_s", 10, 1, 3000));
    agent.registration_lifetime = static_cast<std::uint16_t>(c.integer_or("registration_lifetime_s", 1800, 4, 65535));
    agent.reverse_tunnel = c.boolean_or("reverse_tunnel", true);
    agent.reverse_tunnel_required = c.boolean_or("reverse_tunnel_required", false);
    if (agent.reverse_tunnel_required && !agent.reverse_tunnel)
        c.fail("reverse_tunnel_required", "is true while reverse_tunnel is false", "reverse_tunnel true, or not required");
    agent.udp_tunnelling = c.boolean_or("udp_tunnelling", false);
    // RFC 3519 between this FA and home agents (an FA behind a NAT), named and valued as the
    // mobile node's "udp_tunnelling"; off by default, so a plain FA sends what it always did.
    const auto ha_udp = c.choice_or("home_agent_udp_tunnelling", {"off", "wanted", "forced"}, "off");
    agent.home_agent_udp_tunnelling = ha_udp == "off"      ? mip::ForeignAgent::UdpTunnelling::Off
                                      : ha_udp == "wanted" ? mip::ForeignAgent::UdpTunnelling::Wanted
                                                           : mip::ForeignAgent::UdpTunnelling::Forced;
    if (c.has("keepalive_s") && ha_udp == "off")
        c.fail("keepalive_s", "is only used with home_agent_udp_tunnelling", "home_agent_udp_tunnelling \"wanted\" or \"forced\"");
    agent.keepalive_default = std::chrono::seconds(c.integer_or("keepalive_s", 110, 10, 65535));
    agent.registration_required = c.boolean_or("registration_required", false);
    agent.max_visitors = static_cast<std::size_t>(c.integer_or("max_visitors", 1024, 1, 1 << 20));
    agent.max_pending = static_cast<std::size_t>(c.integer_or("max_pending", 256, 1, 1 << 16));
    agent.pending_timeout = std::chrono::seconds(c.integer_or("pending_timeout_s", 10, 1, 600));
    cfg.tunnel_ttl = static_cast<std::uint8_t>(c.integer_or("tunnel_ttl", 64, 1, 255));
    cfg.df_when_inner_clear = c.boolean_or("df", false);
    return std::make_unique<mip::ForeignAgentStage>(std::move(cfg), *ctx.random);
}

}  // namespace

void add_mip_stage_types(std::vector<StageType>& out) {
    out.push_back({"mip.ipip", "IP-in-IP tunnel between two fixed endpoints (RFC 2003)", build_ipip});
    out.push_back({"mip.mobile_node", "Mobile IPv4 mobile node: registration, reverse tunnel, RFC 3519 UDP tunnel (RFC 5944, 3024)",
                   build_mobile_node});
    out.push_back({"mip.home_agent", "Mobile IPv4 home agent: bindings, tunnels to care-of addresses, RFC 3024 checks (RFC 5944)",
                   build_home_agent, home_agent_live_keys, reconfigure_home_agent});
    out.push_back({"mip.foreign_agent", "Mobile IPv4 foreign agent: advertisements, visitor list, relay, reverse tunnel (RFC 5944, 3024)",
                   build_foreign_agent});
}

}  // namespace mipsec::shell
