// SPDX-License-Identifier: MIT
#pragma once
// Least privilege for `mipsec run`. Setup (TUN devices, sockets on ports below 1024, raw and
// packet sockets) needs root; running needs much less, and what it needs follows from the
// configured roles:
//   CAP_NET_ADMIN  every node: rtnetlink changes (TUN MTU following the path MTU, host routes
//                  for a home agent's bindings and a foreign agent's visitors, a mobile node's
//                  default route via its foreign agent, the VPN's Mode Config address, the
//                  policy rule removed at exit), SO_MARK on the path MTU probe socket, and
//                  /proc/sys/net writes (proxy ARP), which the kernel lets CAP_NET_ADMIN make.
//   CAP_NET_RAW    only a node that opens a packet socket after setup: the gratuitous ARP a
//                  home agent with a "home_interface" sends for each new binding, and a mobile
//                  node following an "interface" sends on coming home (RFC 5944 §4.6).
// Raw IP sockets ("raw_protocols"), a foreign agent's visitor link and UDP sockets on 434 or
// 500 need nothing once open: the kernel checks CAP_NET_RAW and CAP_NET_BIND_SERVICE when a
// socket is created or bound, never when it sends or receives, and no node re-opens or
// re-binds a socket when its addresses change (a mobile node binds the wildcard address).
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "apps/shell/node_config.hpp"

namespace mipsec::shell {

struct RuntimeCapability {
    int number;        // CAP_NET_ADMIN, CAP_NET_RAW (linux/capability.h)
    std::string name;  // "cap_net_admin", as /proc and capsh spell it
    std::string why;   // for the log: which node needs it for what
};

/// The capabilities `config`'s nodes use after setup, CAP_NET_ADMIN first.
std::vector<RuntimeCapability> runtime_capabilities(const RunConfig& config);

/// The account `mipsec run` switches to.
struct RunAs {
    std::string user;
    std::string group;
    uid_t uid = 0;
    gid_t gid = 0;
};

/// Looks up `config.run_as` (a name or a number); `group` defaults to the user's primary
/// group. Throws ConfigError at the key that names an unknown account or root.
std::optional<RunAs> resolve_run_as(const RunConfig& config);

/// What drop_privileges did, for the log.
struct PrivilegeDrop {
    uid_t uid = 0;
    gid_t gid = 0;
    std::string kept;                  // "cap_net_admin,cap_net_raw", or "none"
    std::vector<std::string> missing;  // wanted but never held (started without them)
};

/// Switches to `run_as` (needs root: CAP_SETUID, CAP_SETGID, CAP_SETPCAP) keeping exactly
/// `keep` in the permitted and effective sets; empties the inheritable, ambient and (where
/// CAP_SETPCAP allows) bounding sets, no supplementary groups, and sets no_new_privs, so
/// nothing this process becomes or runs can regain what it gave up. Started as a non-root
/// user with capabilities (systemd's AmbientCapabilities=), `run_as` may be absent or name
/// that same user, and the sets are trimmed to `keep` the same way. Throws
/// std::runtime_error saying what failed; the caller must then exit (fail closed).
PrivilegeDrop drop_privileges(const std::optional<RunAs>& run_as, const std::vector<RuntimeCapability>& keep);

/// The current process's capability sets from /proc/self/status ("CapEff" etc.) as bit masks.
std::uint64_t capability_mask(const std::string& set_name);

}  // namespace mipsec::shell
