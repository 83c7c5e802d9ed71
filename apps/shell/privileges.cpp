// SPDX-License-Identifier: MIT
#include "apps/shell/privileges.hpp"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace mipsec::shell {

namespace {

[[noreturn]] void fail(const std::string& what, int err) {
    throw std::runtime_error(what + ": " + std::strerror(err));
}

// capget/capset through the system call: glibc has no wrapper and libcap would be a
// dependency for two calls. Version 3 carries 64 bits in two 32-bit halves.
struct CapSets {
    std::uint64_t effective = 0;
    std::uint64_t permitted = 0;
    std::uint64_t inheritable = 0;
};

CapSets capget_self() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &header, data) != 0) fail("capget", errno);
    auto join = [](std::uint32_t low, std::uint32_t high) { return std::uint64_t{high} << 32 | low; };
    return {join(data[0].effective, data[1].effective), join(data[0].permitted, data[1].permitted),
            join(data[0].inheritable, data[1].inheritable)};
}

void capset_self(const CapSets& sets) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    for (int i = 0; i < 2; ++i) {
        data[i].effective = static_cast<std::uint32_t>(sets.effective >> (32 * i));
        data[i].permitted = static_cast<std::uint32_t>(sets.permitted >> (32 * i));
        data[i].inheritable = static_cast<std::uint32_t>(sets.inheritable >> (32 * i));
    }
    if (::syscall(SYS_capset, &header, data) != 0) fail("cannot set the capability sets (capset)", errno);
}

int last_capability() {
    std::ifstream in("/proc/sys/kernel/cap_last_cap");
    int last = CAP_LAST_CAP;
    if (in >> last && last >= 0 && last < 64) return last;
    return CAP_LAST_CAP;
}

std::string mask_names(std::uint64_t mask, const std::vector<RuntimeCapability>& known) {
    std::string out;
    for (const auto& c : known)
        if ((mask & (std::uint64_t{1} << c.number)) != 0) out += (out.empty() ? "" : ",") + c.name;
    return out.empty() ? "none" : out;
}

std::optional<std::uint32_t> number(const std::string& text) {
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return v;
}

// The kernel keeps credentials per thread; glibc's setresuid reaches every thread, capset
// does not. One thread (the io_context's) is what we promise, so check it.
std::size_t thread_count() {
    std::error_code ec;
    std::size_t n = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec); !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) ++n;
    return n;
}

}  // namespace

std::vector<RuntimeCapability> runtime_capabilities(const RunConfig& config) {
    std::vector<RuntimeCapability> out;
    std::string admin_nodes, raw_why;
    for (const auto& n : config.nodes) {
        admin_nodes += (admin_nodes.empty() ? "" : ", ") + n.name;
        for (const auto& stage : n.pipeline) {
            const auto type = stage.value("type", std::string());
            // A new packet socket per gratuitous ARP (RFC 5944 §4.6), see host_network.cpp.
            if (type == "mip.home_agent" && stage.contains("home_interface"))
                raw_why += (raw_why.empty() ? "" : ", ") + n.name + " (home agent: gratuitous ARP on the home link)";
            if (type == "mip.mobile_node" && stage.contains("interface"))
                raw_why += (raw_why.empty() ? "" : ", ") + n.name + " (mobile node: gratuitous ARP on coming home)";
        }
    }
    out.push_back({CAP_NET_ADMIN, "cap_net_admin", admin_nodes + ": routes, addresses, MTU and proxy ARP follow the protocols"});
    if (!raw_why.empty()) out.push_back({CAP_NET_RAW, "cap_net_raw", raw_why});
    return out;
}

std::optional<RunAs> resolve_run_as(const RunConfig& config) {
    if (config.user.empty()) return std::nullopt;
    RunAs r;
    r.user = config.user;
    // getpwnam_r/getgrnam_r with buffers: the plain calls share static storage.
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    const auto as_number = number(config.user);
    const int err = as_number ? ::getpwuid_r(*as_number, &pw, buf.data(), buf.size(), &found)
                              : ::getpwnam_r(config.user.c_str(), &pw, buf.data(), buf.size(), &found);
    if (found != nullptr) {
        r.uid = pw.pw_uid;
        r.gid = pw.pw_gid;
        r.user = pw.pw_name;
    } else if (as_number && err == 0) {
        r.uid = *as_number;  // a bare uid without a passwd entry (e.g. a container's)
        r.gid = *as_number;
    } else {
        throw ConfigError(config.user_pointer, "no user \"" + config.user + "\" on this host",
                          "an existing unprivileged account, e.g. one made with `adduser --system --group --no-create-home mipsec`");
    }
    if (r.uid == 0) throw ConfigError(config.user_pointer, "\"" + config.user + "\" is root", "an unprivileged account; leave \"user\" out to stay root");
    r.group = std::to_string(r.gid);
    if (!config.group.empty()) {
        group gr{};
        group* g = nullptr;
        const auto gid_number = number(config.group);
        const int gerr = gid_number ? ::getgrgid_r(*gid_number, &gr, buf.data(), buf.size(), &g)
                                    : ::getgrnam_r(config.group.c_str(), &gr, buf.data(), buf.size(), &g);
        if (g != nullptr) {
            r.gid = gr.gr_gid;
            r.group = gr.gr_name;
        } else if (gid_number && gerr == 0) {
            r.gid = *gid_number;
            r.group = config.group;
        } else {
            throw ConfigError(config.group_pointer, "no group \"" + config.group + "\" on this host", "an existing group");
        }
        if (r.gid == 0) throw ConfigError(config.group_pointer, "\"" + config.group + "\" is root's group", "an unprivileged group");
    } else {
        group gr{};
        group* g = nullptr;
        if (::getgrgid_r(r.gid, &gr, buf.data(), buf.size(), &g) == 0 && g != nullptr) r.group = gr.gr_name;
        if (r.gid == 0) throw ConfigError(config.user_pointer, "\"" + r.user + "\"'s primary group is root's", "a \"group\" that is not root's");
    }
    return r;
}

std::uint64_t capability_mask(const std::string& set_name) {
    std::ifstream in("/proc/self/status");
    std::string line;
    const std::string prefix = set_name + ":";
    while (std::getline(in, line)) {
        if (!line.starts_with(prefix)) continue;
        auto text = line.substr(prefix.size());
        text.erase(0, text.find_first_not_of(" \t"));
        std::uint64_t v = 0;
        std::from_chars(text.data(), text.data() + text.size(), v, 16);
        return v;
    }
    return 0;
}

PrivilegeDrop drop_privileges(const std::optional<RunAs>& run_as, const std::vector<RuntimeCapability>& keep) {
    std::uint64_t keep_mask = 0;
    for (const auto& c : keep) keep_mask |= std::uint64_t{1} << c.number;
    if (auto n = thread_count(); n != 1)
        throw std::runtime_error("cannot drop privileges: " + std::to_string(n) + " threads run, and capabilities are per thread");

    uid_t ruid = 0, euid = 0, suid = 0;
    ::getresuid(&ruid, &euid, &suid);
    const bool from_root = ruid == 0 || euid == 0 || suid == 0;
    if (run_as && !from_root && (run_as->uid != euid || run_as->gid != ::getegid()))
        throw std::runtime_error("cannot switch to user " + run_as->user + ": started as uid " + std::to_string(euid) +
                                 " without root; start as root, or as " + run_as->user + " with AmbientCapabilities=");
    if (!run_as && from_root) throw std::runtime_error("no user to switch to: root keeps every privilege");

    // Bounding set first, while CAP_SETPCAP is still effective: afterwards not even an
    // execve of a file with capabilities can bring the rest back.
    const int last = last_capability();
    for (int c = 0; c <= last; ++c) {
        if ((keep_mask & (std::uint64_t{1} << c)) != 0) continue;
        if (::prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 1) continue;
        if (::prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && from_root)
            fail("cannot drop capability " + std::to_string(c) + " from the bounding set (CAP_SETPCAP missing? allow it in CapabilityBoundingSet=)", errno);
        // Not root and without CAP_SETPCAP: the bounding set stays, but no_new_privs below
        // and the absence of any execve keep it from mattering.
    }

    if (run_as && from_root) {
        // Keep the permitted set across the uid change; without it setresuid clears it.
        if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) fail("prctl(PR_SET_KEEPCAPS)", errno);
        if (::setgroups(0, nullptr) != 0) fail("cannot clear the supplementary groups (CAP_SETGID missing?)", errno);
        if (::setresgid(run_as->gid, run_as->gid, run_as->gid) != 0) fail("cannot switch to group " + run_as->group, errno);
        if (::setresuid(run_as->uid, run_as->uid, run_as->uid) != 0) fail("cannot switch to user " + run_as->user, errno);
        if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) fail("prctl(PR_SET_KEEPCAPS, 0)", errno);
    }

    const auto held = capget_self().permitted;
    const std::uint64_t kept = keep_mask & held;
    capset_self({kept, kept, 0});
    // Ambient capabilities would survive into anything we execute; we execute nothing.
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) fail("cannot clear the ambient capabilities", errno);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("prctl(PR_SET_NO_NEW_PRIVS)", errno);

    // Check rather than trust: every id changed, nothing more is held, and root is out of reach.
    PrivilegeDrop out;
    uid_t r = 0, e = 0, s = 0;
    gid_t rg = 0, eg = 0, sg = 0;
    ::getresuid(&r, &e, &s);
    ::getresgid(&rg, &eg, &sg);
    const auto now = capget_self();
    if (r == 0 || e == 0 || s == 0 || rg == 0 || eg == 0 || sg == 0)
        throw std::runtime_error("privileges not dropped: still uid " + std::to_string(e) + " gid " + std::to_string(eg));
    if (run_as && from_root && (e != run_as->uid || eg != run_as->gid || ::getgroups(0, nullptr) != 0))
        throw std::runtime_error("privileges not dropped: uid/gid/groups are not " + run_as->user + ":" + run_as->group + " alone");
    if (now.effective != kept || now.permitted != kept || now.inheritable != 0 || capability_mask("CapAmb") != 0)
        throw std::runtime_error("privileges not dropped: capability sets are not exactly " + mask_names(kept, keep));
    if (::setuid(0) == 0) throw std::runtime_error("privileges not dropped: setuid(0) still succeeds");
    if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) throw std::runtime_error("privileges not dropped: no_new_privs is not set");

    out.uid = e;
    out.gid = eg;
    out.kept = mask_names(kept, keep);
    for (const auto& c : keep)
        if ((kept & (std::uint64_t{1} << c.number)) == 0) out.missing.push_back(c.name + " (" + c.why + ")");
    return out;
}

}  // namespace mipsec::shell
