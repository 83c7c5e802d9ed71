# SPDX-License-Identifier: MIT
"""The scenario file: a JSON document describing a lab (networks, hosts, mipsec nodes, traffic)
and a timeline. `load()` reads, substitutes parameters and validates it completely before
anything is created; every problem is reported with the JSON pointer (RFC 6901) of the value
at fault, as `mipsec check` reports node configs.

Top level (all keys but "scenario", "networks", "hosts" and "timeline" optional):
  scenario     name (letters, digits, '-')
  summary      one line, shown by `mipsec lab list`
  description  free text
  parameters   {"name": default}; "${name}" in any string is replaced (a string that is only
               "${name}" takes the value's type); `--set name=value` overrides a default
  networks     {"name": {"prefix": "a.b.c.d/n"}}: one Ethernet segment (a bridge) each
  hosts        {"name": {"forward": bool, "interfaces": {"ifname": {"network": n, "address": a}},
                "routes": [{"to": "default"|prefix, "via": addr, "dev": ifname, "if": {...}}],
                "nat": {"out": ifname, "random_ports": bool},
                "dhcp_server": {"interface": ifname, "range": [first, last], "router": addr},
                "addresses": ["a.b.c.d/n"] (on lo), "sysctl": {"net.…": value} (the namespace's own
                net.* settings, set when it is built, e.g. "net.ipv4.tcp_rto_max_ms": 10000),
                "nft": "table ip t { ... }" (an nftables ruleset loaded at start, e.g. marking packets)}}
               an interface "address" is "a.b.c.d/n", "dhcp" (a lease at start-up), or absent
  nodes        {"name": {"host": h, "config": {mipsec config}, "start": bool}}: one `mipsec run`
               each; "control_socket" is filled in; "${lab_dir}" names the run's directory and
               "${address:host/ifname}" the interface's current address (read at each start)
               or {"name": {"host": h, "strongswan": {"local": addr, "local_id": id, "remote_id": id,
                "psk": s, "pool": prefix, "local_ts": prefix, "remote": addr, "ike_proposals": s,
                "esp_proposals": s, "dpd_delay_s": n, "child_rekey_s": n, "ike_rekey_s": n}, "start": bool}}: a strongSwan IKEv1
               remote-access gateway (charon, kernel-libipsec, UDP encapsulation forced, Mode
               Config pool, PSK); its status is `swanctl --list-sas` parsed, stage
               "strongswan.gateway" (see strongswan_node.parse_list_sas); with "role": "client"
               {"role", "remote": gateway, "local_id", "remote_id", "psk", "remote_ts": prefix,
               "local", "ike_proposals", "esp_proposals", "dpd_delay_s", "encap": bool}: a
               strongSwan IKEv1 remote-access client asking Mode Config for an address and
               initiating when it starts, stage "strongswan.client"; either role: "child_rekey_s"
               (5-86400, default an hour) rekeys the CHILD_SA, "ike_rekey_s" re-authenticates
               the IKE SA (IKEv1 has no IKE SA rekey), charon's own timers, jitter included;
               charon logs to "${lab_dir}/charon-<host>/run/charon.log" (a file condition); a
               gateway's "encap": false leaves UDP encapsulation to NAT detection (RFC 3947);
               "child_lifetime_s" (5-86400) is the CHILD_SA's hard lifetime, "child_rekey_jitter_s"
               (0-3600) charon's rand_time (0: rekey exactly at child_rekey_s)
               a mipsec node may also have "options": [`mipsec run` options, e.g. "--user", "nobody"],
               "launch": {"user": u, "group": g, "ambient_caps": [caps], "bounding_set": [caps] |
               "bounding_drop": [caps]} (started through setpriv: as that user with those ambient
               capabilities, as systemd's User= and AmbientCapabilities= do, or with only, or
               without, those capabilities in its bounding set, as CapabilityBoundingSet= does;
               caps as "cap_net_admin"; a node launched as a user keeps its config and control
               socket in "${lab_dir}/<node>.home", that user's), and "notify": true (a systemd
               notify socket, NOTIFY_SOCKET, kept for the whole run: see "notify" conditions)
  "if"         {"parameter": value, ...} on a node, a route, a timeline step or a condition: it is part
               of the run only when every named parameter has that value (so `--set
               gateway=strongswan` swaps the gateway node and the conditions that read it)
  traffic      (a move times the first stream and the first probe listed)
               {"name": {"kind": "stream", "from": h, "source": addr, "to": h, "address": addr,
                "port": n, "pace_ms": n} | {"kind": "probe", "from": h, "to": addr, "interval_ms": n, "size": bytes, "count": n}}
               (a stream writes 2 KiB every "pace_ms", default 20, a fraction allowed (0.25: about
               8 KiB a millisecond, as the sleep's granularity lets it); 0: as fast as TCP takes it;
               a probe's "size": ICMP data bytes, 16-8972, sent with DF, so a tunnel that
               cannot carry it whole shows as loss; default ping's 56 without DF; "count": 1-1000
               requests, then the probe ends, e.g. to pass a few packets before an idle period;
               "tos": 0-255, the TOS byte of its requests (DSCP and ECN, ping -Q); "df": true or false,
               DF set or not whatever the size (false: the sender's kernel may fragment);
               a stream's "bytes": 2048 to 1 GiB: once a traffic condition reads at least that
               many received, the stream ends there and is checked byte for byte at once (its
               account gains "intact"), so it need not outlive a node stopped later;
               moves time the first probe listed that has no count)
               | {"kind": "packets", "from": h, "to": addr, "packets": [template...], "count": n,
                  "duration_s": s, "rate": per second, "variants": n, "seed": n, "listen": {...}}:
               crafted IPv4 packets from host h's raw socket (lab/packets.py; hostile, malformed
               or flooding traffic, sources may be spoofed within the lab's ranges): "variants"
               (1-10000, default 1) of each template are built first, the random parts drawn
               anew for each, then sent round-robin at "rate" a second (default 0: as fast as the
               socket takes them) until "count" packets (1-10000000) or "duration_s" (at most
               120) - at least one of the two; "listen": {"icmp_type": t, "wait_s": s} counts
               the ICMP messages of type t the host receives, listening up to wait_s after the
               last packet until one arrives. A template: {"source": addr | [first, last] (drawn
               per variant; default: the host's own), "destination": addr (default "to"),
               "ttl": 1-255 (64), "dont_fragment": bool, then one of "udp": {"port": p,
               "source_port": p (default "port"), "checksum": "valid" | "none" (0) | "bad"},
               "icmp": {"type": t, "code": c, "checksum": "valid" | "bad"} (the checksum over
               the ICMP message is computed), "protocol": n (a raw IP payload, e.g. 4 or 50),
               and "payload": [segments]: "hex bytes", {"random": n | [min, max]} random
               bytes, {"address": a | [first, last]} 4 bytes, {"uint": n | [low, high],
               "bytes": 1|2|4|8} big-endian, {"ntp_time": offset_s} the 8-byte NTP time of now
               plus offset (plus the variant's index: RFC 5944 §5.4 identifications),
               {"hmac_md5": key hex} HMAC-MD5 over the payload before it (RFC 5944 §3.5.1's
               authenticator), {"packet": template} a whole inner IPv4 packet (its
               "destination" required; two deep at most), {"hex": s} hex bytes (e.g. read from a
               status: a live IKE SA's "ike_cookies"). Any integer above may be [low, high]
               (drawn per variant), and an integer or an address (not a range) a value read
               when the packets start: {"node", "stage", "pointer"} as a condition's source
               (e.g. a live SA's SPI, a care-of address)
               | {"kind": "forged_replies", "from": h, "address": a, "key": hex, "spi": n,
                "trusted_networks": bool}: an attacker (forger.py): once started, host h owns
               address a (a home agent's, on its loopback) and answers every registration
               request to it with a success reply authenticated with "key" (a wrong one) under
               "spi", with the Trusted Networks Configured extension (RFC 5265 §5) unless
               "trusted_networks" is false; a mobile node must reject each of them
               | {"kind": "ike_flood", "from": h, "to": addr, "source": addr, "sources": n,
                "duration_s": s, "port": n, "proposal": s}: Main Mode first messages (RFC 2409
               §5, one SA payload with "proposal", default aes128-sha256-modp2048, PSK), each
               with a fresh initiator cookie so each is a new half-open negotiation, sent to
               addr:port (default 500) as fast as the host can for duration_s (default 1, at
               most 30) from "sources" (1-254, default 1) consecutive addresses from "source",
               added to the host's interface toward addr; its account {"sent": n, "done": bool}
  captures     {"network": {"outside": bool}}: dumpcap records that network's bridge for the whole
               run (capture-<network>.pcap; `--keep` copies them into the report directory);
               "outside": true asserts at the end that the capture holds no user packet in the
               clear, only IKE, ESP, registrations, MIP-tunnelled ESP and link control, as
               tshark dissects it (see capture.py); with captures, every IPsec stage of the
               mipsec nodes logs its keys into the run's directory (Wireshark's esp_sa and
               ikev1_decryption_table; `--keep` copies them beside the pcaps), so tshark reads
               inside ESP and each move's overhead per packet is measured on the probe's packets;
               "carries": ["ip:ip:icmp", ...] asserts at the end that some frame's dissection
               holds each of those protocol sequences (tshark's frame.protocols, in order, adjacent);
               "carries_at_least": n, that many frames for each of those (default 1);
               "if": {parameter: value} records it only in the runs it names;
               "clean": true that tshark finds no malformed frame nor an error-level expert item (an
               ICMP error aside: its quote of a packet is cut short, and tshark errs on what is missing);
               "decrypted": true that it holds ESP and tshark, given the nodes' key tables, reads
               an IP packet inside every ESP frame (every SA on that link has its keys logged; ESP
               quoted by an ICMP error is cut short and not counted);
               "fields": [{"filter": display filter, "field": "ip.dsfield", "occurrence": k, "equals"
               | "in" | "at_least" | "at_most": v, "frames": {"at_least": n, "at_most": n}, "label": s}]
               asserts at the end that the frames the filter selects (with the nodes' keys: inside
               ESP too, e.g. "esp && ip.len#2 == 128", the inner packet's length) number within
               "frames" (default at least 1) and that each one's field (its k-th occurrence, 1:
               the outermost layer's) passes the test; values as tshark writes them, numbers
               ("0xb9", "1", True) read as numbers
  timeline     steps, in order; each is one object with one action key and optional "label",
               "timeout_s":
                 {"start": node} {"stop": node} {"restart": node}
                 {"restart": node, "kill": true, "while_down": condition | [conditions], "host": h,
                  "until": ..., "after": ..., "expect": ...}
                                                            "kill": SIGKILL instead of SIGTERM (a
                                                            crash: no shutdown path runs, the exit
                                                            status is not checked; a strongSwan
                                                            node's charon likewise); "while_down" is asserted between
                                                            the stop and the start (e.g. the routes
                                                            that went with the TUN device); with
                                                            "host" the restart is a row
                                                            of the move table for that host's
                                                            nodes, as an outage is: "until", the
                                                            first probe reply and the stream timed
                                                            from the new start, "after" and
                                                            "expect" checked as a move's, the
                                                            restarted node's counters counted from 0
                 {"start": node, "refused": {"exit": n, "message": s | [s...]}}
                                                            the start must fail: `mipsec run` exits
                                                            n (1-255) within timeout_s, its output
                                                            naming s (each s of a list; a refused
                                                            start's clean-up is then checked with
                                                            host conditions); a node never started
                                                            but refused ("start": false) may fail
                                                            the load-time `mipsec check` with those
                                                            texts (a config refused at once)
                 {"wait": condition | [conditions]}
                 {"wait": ..., "throughout": condition | [conditions]}
                                                            the "throughout" conditions must hold at
                                                            every poll until the wait's own hold
                                                            (e.g. registered for as long as a
                                                            flood lasts)
                 {"traffic": [names]}                       starts those traffic generators (a stream
                                                            must connect within the step's timeout_s)
                 {"quiet": quiet}                           from now to the next link change
                 {"forget_path_mtu": host}                  the host forgets the path MTUs it learned
                                                            (`ip route flush cache`), as RFC 1191
                                                            §6.3's periodic increase would, later
                 {"move": {"host": h, "interface": i, "to": network, "address": a|"dhcp"|null,
                           "routes": [...], "restart": [nodes], "acquired": condition,
                           "until": condition | [conditions], "after": condition | [conditions],
                           "expect": {figure: bound}, "quiet": quiet}}
               a move re-plugs the interface into `to`, gets the address, restarts the
               `restart` nodes (clients without mobility), then times each step from the link
               change: "acquired" (default: the address appearing), "until" (registered /
               tunnel up), the first probe reply and the stream's first bytes; "after" is
               checked once all of them happened
                 {"outage": {"host": h, "interface": i, "duration_s": s, "until": ..., "after": ...,
                             "expect": ..., "quiet": quiet}}
               link loss: the interface's far end goes down for duration_s (0-60; the host sees
               carrier go) and comes back on the same network with the same address; "until",
               the first probe reply and the stream are timed from the carrier coming back,
               and the outage is a row of the move table, as a move is
                 {"link": {"host": h, "interface": i, "up": bool, "until": ..., "after": ...,
                           "expect": ..., "quiet": quiet}}
               a cable pulled ("up": false) or plugged back in ("up": true), for as long as the
               timeline says: the interface's far end goes down or up (the host sees carrier go
               or come), on the network it is on, with its address; for a host with another
               interface (the traffic moves there and back). "until", the first probe reply and
               the stream are timed from the change, and each is a row of the move table
                 {"assert": condition | [conditions]}
                 {"write": {"file": "${lab_dir}/name", "text": s, "mode": "0600"}}
                                                            replaces (or creates) a file of the
                                                            run's directory with that text and
                                                            mode (default "0600"), e.g. a state
                                                            file a node is to find corrupt
                 {"send": packets, "then": condition | [conditions]}
                                                            sends a "packets" generator's "count"
                                                            packets, then waits for "then", whose
                                                            "increased"... compare with values
                                                            from before the first packet (e.g. a
                                                            drop counter "increased_by_exactly"
                                                            the count)
                 {"swanctl": {"node": n, "do": "terminate" | "rekey" | "initiate", "sa": "child" | "ike",
                              "until": condition | [conditions]}}
                                                            the strongSwan node n does that to its
                                                            connection's CHILD_SA or IKE SA
                                                            (`swanctl --terminate --child net`, ...,
                                                            5 s timeout), as an operator would; the
                                                            step asserts swanctl succeeded, then
                                                            waits (timeout_s) for "until", whose
                                                            "increased"/"changed" compare with
                                                            before the command
                 {"drop": {"host": h, "from": addr, "udp_source_port": n, "payload": [[offset, "hex"], ...],
                           "count": n}}                     the forwarding host h drops the UDP
                                                            packets from addr:n whose payload holds
                                                            those bytes (1-4 each) at those offsets,
                                                            until it dropped count (default 1; the
                                                            step waits for them, timeout_s), then
                                                            forwards them again (e.g. one IKE
                                                            message lost in a NAT)
                 {"nat_flush": h}                           host h (one with "nat") forgets every
                                                            mapping, as a rebooting NAT does (conntrack
                                                            -F): the next packet out gets a new
                                                            mapping, with "random_ports" a new port
                 {"repeat": n, "steps": [steps]}            those steps, n rounds in a row (1-10000;
                                                            moves in them are rows of the move table
                                                            like any other), e.g. a soak's round of moves
                 {"remember": {"name": value}}              each value (a source below, no test) as it
                                                            is now, for a later "same_as":
                                                            {"remembered": "name"} (e.g. a process's
                                                            VmRSS after the first round of moves)
                 {"signal": {"node": n, "name": "HUP"|"USR1"|"USR2"|"TERM"|"INT", "until": ..., "after": ...}}
                                                            sends the signal to the mipsec node, by the
                                                            PID the lab started (HUP: reload the config
                                                            file); "until" is waited for, then "after"
                                                            checked, both compared with before the
                                                            signal ("increased", "unchanged": e.g. an
                                                            SPI the reload must keep)
                 {"config": {"node": n, "set": {"/json/pointer": value, ...}, "remove": ["/pointer"]}}
                                                            changes the node's config (removals, then
                                                            sets, in order; "/list/-" appends) and
                                                            rewrites the file it runs from,
                                                            "${lab_dir}/<node>.json"; a later start
                                                            uses it too; pointers are checked at load
                                                            against the config as it is by then ("write"
                                                            on that file puts anything there, e.g.
                                                            broken JSON)
  condition    {"node": n, "stage": type, "index": k, "pointer": "/json/pointer",
                one of "equals": v, "in": [v...], "prefix": s, "contains": v (a list holding v, or a
                string holding the string v), "at_least": x, "at_most": x, "exceeds": "/pointer"
                (a number greater than the one at that pointer of the same node and stage, read in
                the same status; "at_least" and "at_most" take such a pointer too), "increased" / "unchanged": true, "increased_by": n (in a move or a
                wait: compared with the move's or the wait's start), "increased_by_exactly": n
                (likewise; no more, no less), "same_as": value,
                "differs_from": value (both exist and are not equal), "changed": true (in a move or
                a wait: any value other than at its start, e.g. an SPI), "length":
                {"at_least": n, "at_most": n} (the elements of a list, members of an object or
                characters of a string), "absent": true (no value there: a failed command, a
                missing pointer, a node not running), "excludes": v (a list not holding v, or a
                string not holding the string v: e.g. a log without "cannot")}; with "same_as",
                "within": x lets numbers (at any depth) differ by up to x and "ignoring": [texts]
                leaves out the object keys (at any depth) holding any of those texts, e.g. every
                drop counter but the reasons a move explains, or a scrape's uptime samples; optional
                "lines": regex (the value, a string, counted as its lines that the regex finds
                something in; a file's "/text" is then the whole file; goes with a numeric test)
                or {"host": h, "ip": [args], "pointer": ..., test}: the host's own network state,
                `ip -j ARGS` in its namespace read as JSON (a failed command is no value); ARGS
                only read: options "-4", "-6", "-s" (statistics), then one of IP_OBJECTS and "show" or "get",
                e.g. ["neigh", "show", "10.1.0.77"], ["route", "show", "10.1.0.77/32"] ([] when
                there is none), ["link", "show", "type", "tun"], ["netconf", "show", "dev", "home0"]
                (/0: IPv4: "forwarding", "rp_filter", "proxy_neigh": proxy ARP)
                or {"node": n, "format": "text" | "prometheus", "pointer": ..., test}: the node's
                status as operators read it: "text" is `mipsec status` as one string (pointer "",
                e.g. "contains"), "prometheus" its `--format prometheus` exposition as an object
                of sample (name and labels as written, e.g. "mipsec_tun_active_mtu_bytes{node=
                \"mn\",device=\"mip0\"}") to value ("format": "json", the default, is the status
                the other conditions read)
                or {"host": h, "kernel_counters": true, "pointer": "/Group/Counter", test}: the
                host's kernel counters, /proc/net/snmp and /proc/net/netstat of its namespace
                (e.g. "/Udp/InCsumErrors": datagrams the kernel dropped for a bad checksum,
                "/Udp/RcvbufErrors": for a full socket buffer)
                or {"traffic": name, "pointer": ..., test}: a started traffic generator's own
                account: a probe's {"replies": n, "lost": l, "mtu": m} (l: requests unanswered
                between its first and its latest reply ("done": a counted probe has ended), so in a wait "/replies" "increased_by" n
                with "/lost" "unchanged" is n replies in a row without a loss; m: the last MTU
                ping was told, by an ICMP "fragmentation needed" or by its own kernel refusing
                the size), a stream's
                {"bytes": n} (received so far; with the stream's "bytes" reached, "intact": bool);
                a packets generator's {"sent": n, "done": bool, "heard": n, "first_heard_ms": t
                (from its first packet), "send_errors": n}; a forger's {"replies": n} (forged
                replies sent); an ike_flood's {"sent": n, "done": bool}; nothing before it starts
                or {"file": "${lab_dir}/name", "pointer": ..., test}: a file of the run's directory
                ("*" matches any part of a name): {"count": matches, and of the newest match
                "name", "mode" ("0600"), "size", "text" (its first 64 KiB)}; {"count": 0} when
                nothing matches; e.g. a state file's mode, a file moved aside, a node's log
                ("${lab_dir}/mipsec-ha-*.log": the newest of node ha's logs); also "uid", "gid" and
                "type" ("file", "socket", "other": a control socket's owner and mode); with "lines"
                (below) on "/text", the whole file's lines that match
                any source may add "plus": [pointers] and "minus": [pointers]: the value is the
                number at "pointer" plus and minus the numbers at those (same document, same
                read; e.g. two drop counters summed, or requests sent minus replies received);
                "default": n is the value where a pointer finds none (0 for a counter a status
                lists only once it counts)
                or {"node": n, "format": "document", "pointer": ..., test}: the whole `mipsec status
                --json` (its "reload" and "metrics_listener" beside "nodes"; "json" is nodes[0])
                or {"node": n, "format": "check", "pointer": "", test}: what `mipsec check` says of the
                node's config as the lab renders it now, output and errors as one string (running or
                not: e.g. the account and capabilities a node will drop to)
                or {"process": n, "pointer": ..., test}: the running mipsec node's process, by the PID
                the lab started: /proc/PID/status fields as strings, blanks single ("/Uid": "65534
                65534 65534 65534", "/CapEff": "0000000000001000", "/NoNewPrivs": "1", "/Groups":
                ""), "/comm", "/fds": where its descriptors point ("/dev/net/tun", "socket:[n]"),
                "/fd_count": how many, "/rss_kib": VmRSS as a number, "/pid"; no value once it has
                exited
                or {"notify": n, "pointer": ..., test}: what the node (one with "notify": true) told
                its notify socket so far: {"messages": [texts], "states": [each message's first line]}
                or {"http": {"host": h, "url": "http://a.b.c.d:port/path", "method": "GET", "parse":
                "text"|"json"|"prometheus"}, "pointer": ..., test}: a request from host h's namespace
                (a lab address or its own loopback): {"code": status | null when nothing answers,
                "headers": {...}, "body": text, or parsed (prometheus: sample to value, as the
                "prometheus" format), "error"}
                or {"tcp": {"host": h, "to": "a.b.c.d:port", "send": [piece, ...], "pause_ms": n},
                "pointer": ..., test}: sends the pieces (a string; {"hex": "16030100"};
                {"repeat": s, "times": n}; {"random": n} bytes), a byte at a time with pause_ms
                between when given, then reads until the peer closes: {"reply": text (latin-1),
                "sent": bytes, "seconds": s, "connected": bool}
                (an HTTP request or TCP exchange is made once per evaluation, and the step reports
                the answer its test saw: a listener counts each)
  value        {"node": ..., "pointer": ...} or {"host": ..., "ip": [...], "pointer": ...}
                without a test: what "same_as" compares with (the two must both exist and be
                equal), e.g. the home agent's binding and the mobile node's care-of address, or
                a correspondent's ARP entry and a host's MAC address; or {"remembered": name}:
                the value an earlier "remember" step stored under that name
  bound        {"at_least": x} and/or {"at_most": x}; figures: see FIGURES; "access_mode" (the
               RFC 5265 mode after the move) takes {"equals": m} or {"in": [m...]},
               "registrations_per_layer" a list of bounds, one per Mobile IP layer, inner first
  quiet        {"captures": [capture names], "protocols": [tshark protocol names, e.g. "esp"]}:
               no frame of those captures in the window (a move's: from its "until" holding, or
               the end of its waits, to the next link change) has one of those protocols at
               any depth of its dissection; checked at the end of the run. A protocol may be a
               chain "a:b" that matches those layers one directly inside the other ("ip:esp":
               ESP straight in IP, not ESP in UDP 4500, "eth:ethertype:ip:udp:udpencap:esp")
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import tempfile
from typing import Any, Optional

FIGURES = ("link_to_address_ms", "link_to_registration_ms", "link_to_first_packet_ms", "link_to_stream_ms",
           "probe_lost", "ike_messages", "ike_sessions", "registrations", "registrations_per_layer", "access_mode")
ACTIONS = ("start", "stop", "restart", "wait", "traffic", "move", "outage", "link", "assert", "quiet", "forget_path_mtu", "write",
           "nat_flush", "repeat", "remember", "send", "signal", "config", "swanctl", "drop")
REPEAT_MAX = 10000      # rounds of a "repeat" step
SAME_AS_OPTIONS = ("within", "ignoring")  # how a "same_as" compares: numbers within a tolerance, some keys left out
SYSCTL = re.compile(r"^net\.[a-z0-9_]+(\.[a-z0-9_-]+){1,4}$")  # namespaced: the host's own network stack
DROP_PAYLOAD_HEX = re.compile(r"^([0-9a-f]{2}){1,4}$")  # a "drop" step's payload bytes: 1-4, as hex
SWANCTL_DO = ("terminate", "rekey", "initiate")  # what a "swanctl" step may ask a strongSwan node to do to its SA
RUN_FILE = re.compile(r"^[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,3}$")
RUN_FILE_GLOB = re.compile(r"^[A-Za-z0-9._*-]{1,64}(/[A-Za-z0-9._*-]{1,64}){0,3}$")
FILE_MODE = re.compile(r"^0[0-7]{3}$")
RESTART_KEYS = ("kill", "while_down", "host", "until", "after", "expect")  # a restart's options
OUTAGE_MAX_S = 60
TSHARK_PROTOCOL = re.compile(r"^[a-z][a-z0-9_.-]{0,31}(:[a-z][a-z0-9_.-]{0,31}){0,3}$")  # "esp", or a chain "ip:esp"
TSHARK_STACK = re.compile(r"^[a-z][a-z0-9_.-]{0,31}(:[a-z][a-z0-9_.-]{0,31}){0,15}$")

# Addresses a scenario may use: documentation and benchmarking ranges (RFC 5737, RFC 2544)
# and private 10/8, all inside the lab's own namespaces.
ALLOWED_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15", "10.0.0.0/8")]
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,11}$")
IFNAME = re.compile(r"^[a-z][a-z0-9_.-]{0,14}$")
PARAM = re.compile(r"\$\{([a-z_][a-z0-9_]*)\}")
CONDITION_TESTS = ("equals", "in", "prefix", "contains", "at_least", "at_most", "exceeds", "increased", "increased_by", "unchanged",
                   "same_as", "length", "increased_by_exactly", "absent", "excludes", "differs_from", "changed")
NUMERIC_TESTS = ("equals", "in", "at_least", "at_most", "increased", "increased_by", "increased_by_exactly", "unchanged")  # what "lines" counts go with
STATUS_FORMATS = ("json", "text", "prometheus", "document", "check")
IP_OBJECTS = ("addr", "link", "route", "neigh", "rule", "netconf")
IP_OPTIONS = ("-4", "-6", "-s")
IP_ARG = re.compile(r"^(-[46s]|[A-Za-z0-9][A-Za-z0-9./:_-]{0,63})$")
PROPOSAL = re.compile(r"^[a-z0-9_]+(-[a-z0-9_]+)*(,[a-z0-9_]+(-[a-z0-9_]+)*)*$")
IDENTITY = re.compile(r"^[A-Za-z0-9.@_-]{1,64}$")
SWAN_REQUIRED = ("local", "local_id", "remote_id", "psk", "pool", "local_ts")
SWAN_OPTIONAL = ("role", "remote", "ike_proposals", "esp_proposals", "dpd_delay_s", "child_rekey_s", "ike_rekey_s", "encap",
                 "child_lifetime_s", "child_rekey_jitter_s")
SWAN_CLIENT_REQUIRED = ("role", "remote", "local_id", "remote_id", "psk", "remote_ts")
SWAN_CLIENT_OPTIONAL = ("local", "ike_proposals", "esp_proposals", "dpd_delay_s", "encap", "child_rekey_s", "ike_rekey_s",
                        "child_lifetime_s", "child_rekey_jitter_s")
COMBINE = ("plus", "minus")  # a condition's value: its pointer's number plus and minus those of other pointers
PACKETS_KEYS = ("count", "duration_s", "rate", "variants", "seed", "listen")
PACKET_KEYS = ("source", "destination", "ttl", "dont_fragment", "udp", "icmp", "protocol", "payload")
SEGMENT_KINDS = ("random", "address", "uint", "ntp_time", "hmac_md5", "packet", "hex")
HEX = re.compile(r"^([0-9a-fA-F]{2})*$")
PACKETS_MAX = 100000  # packets built in advance (templates x variants)

# A node's `mipsec run` as the scenario launches it (see the docstring's "nodes").
NODE_RUN_KEYS = ("options", "launch", "notify")
RUN_OPTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=/:-]{0,63}$|^--[a-z][a-z-]{0,31}$")
ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
CAPABILITY = re.compile(r"^cap_[a-z_]{2,24}$")
LAUNCH_KEYS = ("user", "group", "ambient_caps", "bounding_set", "bounding_drop")
SIGNALS = ("HUP", "USR1", "USR2", "TERM", "INT")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
HTTP_URL = re.compile(r"^http://(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})(/[A-Za-z0-9._~/?=&%-]*)?$")
TCP_SEND_MAX = 1 << 20  # bytes a "tcp" condition may send
HOST_EXTRA_KEYS = ("sysctl", "nft")
FIELD_TESTS = ("equals", "in", "at_least", "at_most")  # a capture's "fields" check, on every value
TSHARK_FIELD = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
# Loopback inside a host's own namespace, besides the lab's ranges: where a node's local
# listener (e.g. its metrics) answers.
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# An IKE flood's Main Mode proposal: cipher-hash-group as strongSwan writes it (RFC 2409 appendix A values).
IKE_FLOOD_PROPOSAL = re.compile(r"^(aes128|aes192|aes256)-(sha1|sha256|sha384|sha512)-(modp1024|modp1536|modp2048|modp3072|modp4096)$")


def active(element: Any, params: dict) -> bool:
    """Whether a node, step or condition is part of this run: its "if" names parameters and
    the values they must have."""
    cond = element.get("if") if isinstance(element, dict) else None
    return not isinstance(cond, dict) or all(params.get(k) == v for k, v in cond.items())


class ScenarioError(Exception):
    """Every problem found, each as (JSON pointer, message)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"{p or '/'}: {m}" for p, m in problems))


def ptr(*parts) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def substitute(value: Any, params: dict, problems: list, at: str = "") -> Any:
    """Replaces ${name} by its parameter; ${lab_dir} and ${address:...} are left for the runner."""
    if isinstance(value, dict):
        return {k: substitute(v, params, problems, at + ptr(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params, problems, at + ptr(i)) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    whole = PARAM.fullmatch(value)
    if whole and whole.group(1) in params:
        return params[whole.group(1)]

    def one(m):
        name = m.group(1)
        if name == "lab_dir":
            return m.group(0)
        if name not in params:
            problems.append((at, f"names an undefined parameter ${{{name}}}"))
            return m.group(0)
        return str(params[name])
    return PARAM.sub(one, value)


def parse_set(pairs: list[str], params: dict) -> dict:
    """--set name=value overrides; the value is read as JSON when it parses, else as a string."""
    out = dict(params)
    for pair in pairs:
        if "=" not in pair:
            raise ScenarioError([("--set", f"\"{pair}\" is not name=value")])
        k, v = pair.split("=", 1)
        if k not in params:
            raise ScenarioError([("--set", f"\"{k}\" is not a parameter of this scenario (it has: {', '.join(sorted(params)) or 'none'})")])
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


class Validator:
    def __init__(self, doc: dict):
        self.doc = doc
        self.problems: list[tuple[str, str]] = []
        self.step_in_run = True
        self.if_values: dict[str, list] = {}  # parameter -> the values "if"s name

    def fail(self, at: str, msg: str) -> None:
        self.problems.append((at, msg))

    def obj(self, v, at, required=(), optional=()) -> bool:
        if not isinstance(v, dict):
            self.fail(at, "is not an object")
            return False
        for k in v:
            if k not in required and k not in optional:
                self.fail(at + ptr(k), f"unknown key \"{k}\"; expected one of: {', '.join(list(required) + list(optional))}")
        for k in required:
            if k not in v:
                self.fail(at, f"misses \"{k}\"")
        return True

    def name_map(self, key: str, pattern=NAME) -> dict:
        v = self.doc.get(key, {})
        if not isinstance(v, dict):
            self.fail(ptr(key), "is not an object")
            return {}
        for k in v:
            if not pattern.match(k):
                self.fail(ptr(key, k), f"\"{k}\" is not a valid name (lower case letter first, letters/digits/-/_, at most 12)")
        return v

    def address(self, v, at, with_prefix: bool):
        try:
            if not isinstance(v, str):
                raise ValueError
            if with_prefix:
                if "/" not in v:
                    raise ValueError
                iface = ipaddress.ip_interface(v)
                if iface.version != 4:
                    raise ValueError
                addr = iface.ip
            else:
                addr = ipaddress.IPv4Address(v)
        except ValueError:
            self.fail(at, f"{json.dumps(v)} is not an IPv4 address{'/prefix' if with_prefix else ''}")
            return None
        if not any(addr in n for n in ALLOWED_NETS):
            self.fail(at, f"{addr} is outside the lab's ranges (192.0.2/24, 198.51.100/24, 203.0.113/24, 198.18/15, 10/8)")
        return iface if with_prefix else addr

    def ref(self, v, at, table: dict, what: str) -> bool:
        if not isinstance(v, str) or v not in table:
            self.fail(at, f"{json.dumps(v)} is not a {what} of this scenario (known: {', '.join(sorted(table)) or 'none'})")
            return False
        return True

    def run(self) -> None:
        d = self.doc
        if not self.obj(d, "", ("scenario", "networks", "hosts", "timeline"),
                        ("summary", "description", "parameters", "nodes", "traffic", "captures")):
            return
        if not isinstance(d.get("scenario"), str) or not re.match(r"^[a-z0-9][a-z0-9-]*$", d.get("scenario", "")):
            self.fail(ptr("scenario"), "is not a name (lower case letters, digits, '-')")
        networks = self.name_map("networks")
        hosts = self.name_map("hosts")
        nodes = self.name_map("nodes")
        traffic = self.name_map("traffic")
        self.all_nodes, self.traffic = nodes, traffic  # (a packets template may read a node's status)
        prefixes = {}
        for n, spec in networks.items():
            at = ptr("networks", n)
            if self.obj(spec, at, ("prefix",)) and "prefix" in spec:
                try:
                    net = ipaddress.IPv4Network(spec["prefix"])
                    if not any(net.subnet_of(a) for a in ALLOWED_NETS):
                        self.fail(at + "/prefix", f"{net} is outside the lab's ranges")
                    for other, onet in prefixes.items():
                        if net.overlaps(onet):
                            self.fail(at + "/prefix", f"{net} overlaps network \"{other}\" ({onet})")
                    prefixes[n] = net
                except (ValueError, TypeError):
                    self.fail(at + "/prefix", f"{json.dumps(spec['prefix'])} is not an IPv4 network prefix (host bits zero)")
        used: dict = {}  # (network, address) -> pointer of its first use
        self.used = used
        self.params = d.get("parameters", {})
        self.interfaces: dict[str, dict] = {}
        for h, spec in hosts.items():
            at = ptr("hosts", h)
            if not self.obj(spec, at, (), ("forward", "interfaces", "routes", "nat", "dhcp_server", "addresses") + HOST_EXTRA_KEYS):
                continue
            self.host_extras(spec, at)
            if "forward" in spec and not isinstance(spec["forward"], bool):
                self.fail(at + "/forward", "is not true or false")
            ifs = spec.get("interfaces", {})
            if not isinstance(ifs, dict):
                self.fail(at + "/interfaces", "is not an object")
                ifs = {}
            self.interfaces[h] = ifs
            for i, ispec in ifs.items():
                iat = at + ptr("interfaces", i)
                if not IFNAME.match(i) or i == "lo":
                    self.fail(iat, f"\"{i}\" is not a usable interface name")
                if not self.obj(ispec, iat, ("network",), ("address", "mtu")):
                    continue
                self.ref(ispec.get("network"), iat + "/network", networks, "network")
                self.interface_address(ispec.get("address"), iat + "/address", ispec.get("network"), prefixes, used)
                if "mtu" in ispec and (not isinstance(ispec["mtu"], int) or not 576 <= ispec["mtu"] <= 9000):
                    self.fail(iat + "/mtu", "is not an MTU between 576 and 9000")
            addrs = spec.get("addresses", [])
            if not isinstance(addrs, list):
                self.fail(at + "/addresses", "is not a list")
                addrs = []
            for k, a in enumerate(addrs):
                self.address(a, at + ptr("addresses", k), True)
            self.routes(spec.get("routes", []), at + "/routes", ifs)
            if "nat" in spec and self.obj(spec["nat"], at + "/nat", ("out",), ("random_ports",)):
                self.ref(spec["nat"].get("out"), at + "/nat/out", ifs, f"interface of host \"{h}\"")
            if "dhcp_server" in spec and self.obj(spec["dhcp_server"], at + "/dhcp_server", ("interface", "range", "router")):
                ds = spec["dhcp_server"]
                if self.ref(ds.get("interface"), at + "/dhcp_server/interface", ifs, f"interface of host \"{h}\""):
                    net = prefixes.get(ifs[ds["interface"]].get("network"))
                    rng = ds.get("range")
                    if not (isinstance(rng, list) and len(rng) == 2):
                        self.fail(at + "/dhcp_server/range", "is not [first, last]")
                    else:
                        for k, a in enumerate(rng):
                            ip = self.address(a, at + ptr("dhcp_server", "range", k), False)
                            if ip is not None and net is not None and ip not in net:
                                self.fail(at + ptr("dhcp_server", "range", k), f"{ip} is not in the interface's network {net}")
                    self.address(ds.get("router"), at + "/dhcp_server/router", False)
        params = d.get("parameters", {})
        self.params = params
        self.active_nodes = {}
        for n, spec in nodes.items():
            at = ptr("nodes", n)
            if self.obj(spec, at, ("host",), ("config", "strongswan", "start", "if") + NODE_RUN_KEYS):
                self.node_run(spec, at)
                self.ref(spec.get("host"), at + "/host", hosts, "host")
                self.if_(spec, at)
                if active(spec, params):
                    self.active_nodes[n] = spec
                if ("config" in spec) == ("strongswan" in spec):
                    self.fail(at, "has neither or both of \"config\" (a mipsec node) and \"strongswan\" (a strongSwan gateway)")
                elif "config" in spec and not isinstance(spec.get("config"), dict):
                    self.fail(at + "/config", "is not an object (a mipsec config, inline)")
                elif "strongswan" in spec:
                    self.strongswan(spec["strongswan"], at + "/strongswan")
                if "start" in spec and not isinstance(spec["start"], bool):
                    self.fail(at + "/start", "is not true or false")
        for t, spec in traffic.items():
            at = ptr("traffic", t)
            if not isinstance(spec, dict):
                self.fail(at, "is not an object")
                continue
            kind = spec.get("kind")
            if kind == "stream":
                if self.obj(spec, at, ("kind", "from", "source", "to", "address"), ("port", "pace_ms", "bytes")):
                    if "bytes" in spec and (not isinstance(spec["bytes"], int) or isinstance(spec["bytes"], bool)
                                            or not 2048 <= spec["bytes"] <= 1 << 30):
                        self.fail(at + "/bytes", "is not a number of bytes, 2048 to 1 GiB")
                    if "pace_ms" in spec and (not isinstance(spec["pace_ms"], (int, float)) or isinstance(spec["pace_ms"], bool)
                                              or not 0 <= spec["pace_ms"] <= 1000):
                        self.fail(at + "/pace_ms", "is not 0-1000 ms (a fraction allowed)")
                    self.ref(spec.get("from"), at + "/from", hosts, "host")
                    self.ref(spec.get("to"), at + "/to", hosts, "host")
                    self.address(spec.get("source"), at + "/source", False)
                    self.address(spec.get("address"), at + "/address", False)
                    if "port" in spec and (not isinstance(spec["port"], int) or not 1024 <= spec["port"] <= 65535):
                        self.fail(at + "/port", "is not a port 1024-65535")
            elif kind == "probe":
                if self.obj(spec, at, ("kind", "from", "to"), ("interval_ms", "size", "count", "tos", "df")):
                    if "tos" in spec and (not isinstance(spec["tos"], int) or isinstance(spec["tos"], bool) or not 0 <= spec["tos"] <= 255):
                        self.fail(at + "/tos", "is not a TOS byte, 0-255 (DSCP << 2 | ECN)")
                    if "df" in spec and not isinstance(spec["df"], bool):
                        self.fail(at + "/df", "is not true or false")
                    if "count" in spec and (not isinstance(spec["count"], int) or isinstance(spec["count"], bool)
                                            or not 1 <= spec["count"] <= 1000):
                        self.fail(at + "/count", "is not a number of echo requests, 1-1000")
                    if "size" in spec and (not isinstance(spec["size"], int) or isinstance(spec["size"], bool)
                                           or not 16 <= spec["size"] <= 8972):
                        self.fail(at + "/size", "is not a number of ICMP data bytes, 16-8972")
                    self.ref(spec.get("from"), at + "/from", hosts, "host")
                    self.address(spec.get("to"), at + "/to", False)
                    if "interval_ms" in spec and (not isinstance(spec["interval_ms"], int) or not 10 <= spec["interval_ms"] <= 10000):
                        self.fail(at + "/interval_ms", "is not 10-10000")
            elif kind == "packets":
                self.packets_traffic(spec, at, hosts)
            elif kind == "forged_replies":
                self.forged_replies(spec, at, hosts)
            elif kind == "ike_flood":
                self.ike_flood(spec, at)
            else:
                self.fail(at + "/kind", f"{json.dumps(kind)} is not \"stream\", \"probe\", \"packets\", \"forged_replies\" or \"ike_flood\"")
        self.captures = d.get("captures", {})
        if not isinstance(self.captures, dict):
            self.fail(ptr("captures"), "is not an object of network: {\"outside\": bool}")
            self.captures = {}
        for n, spec in self.captures.items():
            at = ptr("captures", n)
            self.ref(n, at, networks, "network")
            if not self.obj(spec, at, (), ("outside", "carries", "clean", "decrypted", "carries_at_least", "if", "fields")):
                continue
            self.if_(spec, at)
            needed = spec.get("carries_at_least", 1)
            if not isinstance(needed, int) or isinstance(needed, bool) or not 1 <= needed <= 100000:
                self.fail(at + "/carries_at_least", "is not a number of frames, 1-100000")
            elif "carries_at_least" in spec and "carries" not in spec:
                self.fail(at + "/carries_at_least", "goes with \"carries\" (how many frames each sequence needs)")
            if "fields" in spec:
                self.capture_fields(spec["fields"], at + "/fields")
            for k in ("outside", "clean", "decrypted"):
                if k in spec and not isinstance(spec[k], bool):
                    self.fail(at + "/" + k, "is not true or false")
            if "carries" in spec:
                v = spec["carries"]
                if not isinstance(v, list) or not v:
                    self.fail(at + "/carries", "is not a non-empty list of protocol sequences (e.g. \"ip:ip:icmp\")")
                else:
                    for k, x in enumerate(v):
                        if not isinstance(x, str) or not TSHARK_STACK.match(x):
                            self.fail(at + ptr("carries", k), f"{json.dumps(x)} is not a protocol sequence as tshark writes it "
                                                              "(e.g. \"ip:ip:icmp\")")
        self.all_nodes, self.hosts, self.networks, self.traffic = nodes, hosts, networks, traffic
        self.nodes = self.active_nodes
        steps = d.get("timeline")
        if not isinstance(steps, list) or not steps:
            self.fail(ptr("timeline"), "is not a non-empty list of steps")
            return
        self.remembered: set = set()  # names "remember" steps stored so far, in timeline order
        for k, step in enumerate(steps):
            self.step(step, ptr("timeline", k))
        for k, values in self.if_values.items():
            if k in params and params[k] not in values:
                known = ", ".join(sorted({json.dumps(v) for v in values}))
                self.fail(ptr("parameters", k), f"{json.dumps(params[k])} is none of the values this scenario's \"if\"s choose from ({known})")

    def combine(self, c: dict, at: str) -> None:
        """"plus" / "minus": pointers into the same document whose numbers are added to or
        taken from the one at "pointer" (e.g. the sum of two drop counters)."""
        if "default" in c and (not isinstance(c["default"], (int, float)) or isinstance(c["default"], bool)):
            self.fail(at + "/default", "is not a number (the value where a pointer finds none, e.g. 0 for a counter not listed)")
        for k in COMBINE:
            if k not in c:
                continue
            v = c[k]
            if not isinstance(v, list) or not v:
                self.fail(at + "/" + k, "is not a non-empty list of JSON pointers")
                continue
            for i, p in enumerate(v):
                if not isinstance(p, str) or not p.startswith("/"):
                    self.fail(at + ptr(k, i), f"{json.dumps(p)} is not a JSON pointer (\"/a/b\")")

    def packets_traffic(self, spec, at: str, hosts: dict) -> None:
        """A "packets" traffic generator: crafted IPv4 packets from a host (lab/packets.py)."""
        if not self.obj(spec, at, ("kind", "from", "to", "packets"), PACKETS_KEYS):
            return
        self.ref(spec.get("from"), at + "/from", hosts, "host")
        self.address(spec.get("to"), at + "/to", False)
        if "count" not in spec and "duration_s" not in spec:
            self.fail(at, "has neither \"count\" nor \"duration_s\" (when to stop)")
        if "count" in spec and not self.integer(spec["count"], 1, 10_000_000):
            self.fail(at + "/count", "is not a number of packets, 1-10000000")
        if "duration_s" in spec and (not isinstance(spec["duration_s"], (int, float)) or isinstance(spec["duration_s"], bool)
                                     or not 0 < spec["duration_s"] <= 120):
            self.fail(at + "/duration_s", "is not a number of seconds, more than 0 and at most 120")
        if "rate" in spec and (not isinstance(spec["rate"], (int, float)) or isinstance(spec["rate"], bool)
                               or not 0 <= spec["rate"] <= 1_000_000):
            self.fail(at + "/rate", "is not packets per second, 0 (as fast as the socket takes them) to 1000000")
        variants_ok = self.integer(spec.get("variants", 1), 1, 10000)
        if not variants_ok:
            self.fail(at + "/variants", "is not a number of variants per template, 1-10000")
        if "seed" in spec and not self.integer(spec["seed"], 0, 2**32 - 1):
            self.fail(at + "/seed", "is not a random seed, 0-4294967295")
        if "listen" in spec and self.obj(spec["listen"], at + "/listen", ("icmp_type",), ("wait_s",)):
            if not self.integer(spec["listen"]["icmp_type"], 0, 255):
                self.fail(at + "/listen/icmp_type", "is not an ICMP type, 0-255")
            w = spec["listen"].get("wait_s", 0)
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0 <= w <= 30:
                self.fail(at + "/listen/wait_s", "is not a number of seconds, 0-30")
        templates = spec.get("packets")
        if not isinstance(templates, list) or not templates or len(templates) > 64:
            self.fail(at + "/packets", "is not a list of 1-64 packet templates")
            return
        if variants_ok and len(templates) * spec.get("variants", 1) > PACKETS_MAX:
            self.fail(at + "/variants", f"makes more than {PACKETS_MAX} packets to build (templates x variants)")
        for k, t in enumerate(templates):
            self.packet_template(t, at + ptr("packets", k), 0)

    def send_step(self, step: dict, at: str) -> None:
        """{"send": packets traffic with a count, "then": conditions}: the packets are sent, then
        the conditions waited for, compared with values from before the first packet."""
        name = step["send"]
        if self.ref(name, at + "/send", self.traffic, "traffic generator"):
            t = self.traffic[name]
            if not isinstance(t, dict) or t.get("kind") != "packets" or "count" not in t:
                self.fail(at + "/send", f"\"{name}\" is not \"packets\" traffic with a \"count\"")
        if "then" in step:
            self.condition(step["then"], at + "/then", True)

    def status_value(self, v, at: str) -> bool:
        """A value read from a node's status (or a host's, a file's) when the packets start:
        {"node", "stage", "pointer"}; False when v is no such object."""
        if isinstance(v, dict) and "pointer" in v:
            self.source(v, at, ())
            return True
        return False

    @staticmethod
    def integer(v, low: int, high: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high

    def int_or_range(self, v, at: str, low: int, high: int, what: str) -> None:
        """A number, or [low, high]: drawn in that range for each variant."""
        if self.status_value(v, at):
            return
        if isinstance(v, list):
            if len(v) != 2 or not all(self.integer(x, low, high) for x in v) or v[0] > v[1]:
                self.fail(at, f"is not [low, high], {what} {low}-{high}, low first")
        elif not self.integer(v, low, high):
            self.fail(at, f"is not {what} {low}-{high}, or [low, high]")

    def address_or_range(self, v, at: str) -> None:
        if self.status_value(v, at):
            return
        if isinstance(v, list):
            if len(v) != 2:
                self.fail(at, "is not an address or [first, last]")
                return
            a, b = (self.address(x, at + ptr(i), False) for i, x in enumerate(v))
            if a is not None and b is not None and int(a) > int(b):
                self.fail(at, f"{json.dumps(v)}: the first address is after the last")
        else:
            self.address(v, at, False)

    def packet_template(self, t, at: str, depth: int) -> None:
        """One IPv4 packet: its header fields, then "udp", "icmp" or a raw "protocol", and the payload."""
        if not self.obj(t, at, (), PACKET_KEYS):
            return
        kinds = [k for k in ("udp", "icmp", "protocol") if k in t]
        if len(kinds) != 1:
            self.fail(at, f"has {len(kinds)} of \"udp\", \"icmp\", \"protocol\"; expected exactly one")
        if "source" in t:
            self.address_or_range(t["source"], at + "/source")
        if "destination" in t and not self.status_value(t["destination"], at + "/destination"):
            self.address(t["destination"], at + "/destination", False)
        elif depth > 0:
            self.fail(at, "misses \"destination\" (an inner packet has no traffic \"to\" to default to)")
        if "ttl" in t and not self.integer(t["ttl"], 1, 255):
            self.fail(at + "/ttl", "is not a TTL, 1-255")
        if "dont_fragment" in t and not isinstance(t["dont_fragment"], bool):
            self.fail(at + "/dont_fragment", "is not true or false")
        if "protocol" in t and not self.integer(t["protocol"], 0, 255):
            self.fail(at + "/protocol", "is not an IP protocol number, 0-255")
        if "udp" in t and self.obj(t["udp"], at + "/udp", ("port",), ("source_port", "checksum")):
            for k in ("port", "source_port"):
                if k in t["udp"]:
                    self.int_or_range(t["udp"][k], at + "/udp/" + k, 0, 65535, "a port")
            if t["udp"].get("checksum", "valid") not in ("valid", "none", "bad"):
                self.fail(at + "/udp/checksum", "is not \"valid\" (the default), \"none\" (0) or \"bad\"")
        if "icmp" in t and self.obj(t["icmp"], at + "/icmp", ("type",), ("code", "checksum")):
            for k in ("type", "code"):
                if k in t["icmp"]:
                    self.int_or_range(t["icmp"][k], at + "/icmp/" + k, 0, 255, "a number")
            if t["icmp"].get("checksum", "valid") not in ("valid", "bad"):
                self.fail(at + "/icmp/checksum", "is not \"valid\" (the default) or \"bad\"")
        segments = t.get("payload", [])
        if not isinstance(segments, list):
            self.fail(at + "/payload", "is not a list of segments")
            return
        for k, seg in enumerate(segments):
            self.segment(seg, at + ptr("payload", k), depth)

    def segment(self, seg, at: str, depth: int) -> None:
        """One piece of a payload: hex bytes, or one of SEGMENT_KINDS."""
        if isinstance(seg, str):
            if not HEX.match(seg):
                self.fail(at, "is not hex bytes (an even number of hex digits)")
            return
        if not isinstance(seg, dict):
            self.fail(at, f"is not hex bytes or an object with one of: {', '.join(SEGMENT_KINDS)}")
            return
        kinds = [k for k in SEGMENT_KINDS if k in seg]
        if len(kinds) != 1:
            self.fail(at, f"has {len(kinds)} of {', '.join(SEGMENT_KINDS)}; expected exactly one")
            return
        kind = kinds[0]
        if not self.obj(seg, at, (kind,), ("bytes",) if kind == "uint" else ()):
            return
        v = seg[kind]
        if kind == "random":
            self.int_or_range(v, at + "/random", 0, 1400, "a number of random bytes")
        elif kind == "address":
            self.address_or_range(v, at + "/address")
        elif kind == "uint":
            n = seg.get("bytes", 4)
            if n not in (1, 2, 4, 8):
                self.fail(at + "/bytes", "is not 1, 2, 4 or 8")
            else:
                self.int_or_range(v, at + "/uint", 0, (1 << (8 * n)) - 1, f"a {n}-byte number")
        elif kind == "ntp_time":
            if not isinstance(v, (int, float)) or isinstance(v, bool) or abs(v) > 86400 * 365:
                self.fail(at + "/ntp_time", "is not an offset from now in seconds (at most a year either way)")
        elif kind == "hmac_md5":
            if not isinstance(v, str) or not v or not HEX.match(v):
                self.fail(at + "/hmac_md5", "is not a key in hex")
        elif kind == "hex":
            if not self.status_value(v, at + "/hex") and (not isinstance(v, str) or not HEX.match(v)):
                self.fail(at + "/hex", "is not hex bytes, or a value read from a status ({\"node\", \"stage\", \"pointer\"})")
        elif kind == "packet":
            if depth >= 2:
                self.fail(at + "/packet", "nests packets more than two deep")
            else:
                self.packet_template(v, at + "/packet", depth + 1)
    def forged_replies(self, spec, at: str, hosts: dict) -> None:
        """A hostile host answering registration requests to an address it should not own
        (forger.py): the key must be hex and the SPI one a mobile node could use (RFC 5944 §1.10:
        0-255 are reserved)."""
        if not self.obj(spec, at, ("kind", "from", "address", "key", "spi"), ("trusted_networks",)):
            return
        if "from" in spec:
            self.ref(spec["from"], at + "/from", hosts, "host")
        if "address" in spec:
            self.address(spec["address"], at + "/address", False)
        key = spec.get("key", "00")
        if not isinstance(key, str) or not re.fullmatch(r"([0-9a-fA-F]{2}){1,64}", key):
            self.fail(at + "/key", "is not a key in hex (1-64 bytes)")
        spi = spec.get("spi", 256)
        if not isinstance(spi, int) or isinstance(spi, bool) or not 256 <= spi <= 0xFFFFFFFF:
            self.fail(at + "/spi", "is not an SPI, 256-4294967295 (0-255 are reserved, RFC 5944 §1.10)")
        if "trusted_networks" in spec and not isinstance(spec["trusted_networks"], bool):
            self.fail(at + "/trusted_networks", "is not true or false")

    def ike_flood(self, spec: dict, at: str) -> None:
        """Main Mode first messages with fresh initiator cookies from consecutive source
        addresses, sent as fast as the host can for duration_s (a half-open flood)."""
        if not self.obj(spec, at, ("kind", "from", "to", "source"), ("sources", "duration_s", "port", "proposal")):
            return
        self.ref(spec.get("from"), at + "/from", self.doc.get("hosts") or {}, "host")
        self.address(spec.get("to"), at + "/to", False)
        first = self.address(spec.get("source"), at + "/source", False)
        n = spec.get("sources", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 254:
            self.fail(at + "/sources", "is not a number of source addresses, 1-254")
        elif first is not None and any(first in net for net in ALLOWED_NETS):
            self.address(str(first + n - 1), at + "/sources", False)
        d = spec.get("duration_s", 1)
        if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0 < d <= 30:
            self.fail(at + "/duration_s", "is not a number of seconds, more than 0 and at most 30")
        if "port" in spec and (not isinstance(spec["port"], int) or isinstance(spec["port"], bool) or not 1 <= spec["port"] <= 65535):
            self.fail(at + "/port", "is not a UDP port, 1-65535")
        if "proposal" in spec and (not isinstance(spec["proposal"], str) or not IKE_FLOOD_PROPOSAL.match(spec["proposal"])):
            self.fail(at + "/proposal", "is not an IKE proposal aes128|aes192|aes256-sha1|sha256|sha384|sha512-modp1024|...|modp4096")

    def if_(self, element: dict, at: str) -> None:
        cond = element.get("if")
        if cond is None:
            return
        if not isinstance(cond, dict) or not cond:
            self.fail(at + "/if", "is not an object of parameter: value")
            return
        for k, v in cond.items():
            self.if_values.setdefault(k, []).append(v)
            if k not in self.params:
                self.fail(at + ptr("if", k), f"\"{k}\" is not a parameter of this scenario (it has: {', '.join(sorted(self.params)) or 'none'})")

    def strongswan(self, s, at: str) -> None:
        """A strongSwan gateway element: every value charon's swanctl.conf gets is checked here,
        so a bad one is named by its pointer, not by a charon that will not load."""
        role = s.get("role", "gateway") if isinstance(s, dict) else "gateway"
        if role not in ("gateway", "client"):
            self.fail(at + "/role", f"{json.dumps(role)} is neither \"gateway\" nor \"client\"")
            return
        client = role == "client"
        if not self.obj(s, at, SWAN_CLIENT_REQUIRED if client else SWAN_REQUIRED, SWAN_CLIENT_OPTIONAL if client else SWAN_OPTIONAL):
            return
        for k in ("local", "remote"):
            if k in s:
                self.address(s[k], at + "/" + k, False)
        if "encap" in s and not isinstance(s["encap"], bool):
            self.fail(at + "/encap", "is not true or false")
        for k in ("pool", "local_ts", "remote_ts"):
            if k in s:
                try:
                    net = ipaddress.IPv4Network(s[k])
                    if not any(net.subnet_of(a) for a in ALLOWED_NETS):
                        self.fail(at + "/" + k, f"{net} is outside the lab's ranges")
                except (ValueError, TypeError):
                    self.fail(at + "/" + k, f"{json.dumps(s[k])} is not an IPv4 network prefix (host bits zero)")
        for k in ("local_id", "remote_id"):
            if k in s and (not isinstance(s[k], str) or not IDENTITY.match(s[k])):
                self.fail(at + "/" + k, "is not an identity (1-64 letters, digits, '.', '@', '_', '-')")
        if "psk" in s and (not isinstance(s["psk"], str) or len(s["psk"]) < 8 or '"' in s["psk"] or "\\" in s["psk"]):
            self.fail(at + "/psk", "is not a pre-shared key (a string of at least 8 characters, no quote or backslash)")
        for k in ("ike_proposals", "esp_proposals"):
            if k in s and (not isinstance(s[k], str) or not PROPOSAL.match(s[k])):
                self.fail(at + "/" + k, "is not a strongSwan proposal list (e.g. \"aes128-sha256-modp2048\")")
        if "dpd_delay_s" in s and (not isinstance(s["dpd_delay_s"], int) or isinstance(s["dpd_delay_s"], bool)
                                   or not 1 <= s["dpd_delay_s"] <= 3600):
            self.fail(at + "/dpd_delay_s", "is not a number of seconds, 1-3600")
        for k in ("child_rekey_s", "ike_rekey_s", "child_lifetime_s"):
            if k in s and (not isinstance(s[k], int) or isinstance(s[k], bool) or not 5 <= s[k] <= 86400):
                self.fail(at + "/" + k, "is not a number of seconds, 5-86400")
        if "child_rekey_jitter_s" in s and (not isinstance(s["child_rekey_jitter_s"], int) or isinstance(s["child_rekey_jitter_s"], bool)
                                            or not 0 <= s["child_rekey_jitter_s"] <= 3600):
            self.fail(at + "/child_rekey_jitter_s", "is not a number of seconds, 0-3600")

    def claim(self, network, ip: str, at: str, used: dict) -> None:
        """Two interfaces on one network may not share an address."""
        if (network, ip) in used:
            self.fail(at, f"address {ip} is already used on network \"{network}\" at {used[(network, ip)]}")
        else:
            used[(network, ip)] = at

    def interface_address(self, a, at, network, prefixes, used) -> None:
        if a is None or a == "dhcp":
            return
        iface = self.address(a, at, True)
        if iface is None:
            return
        net = prefixes.get(network)
        if net is not None and iface.ip not in net:
            self.fail(at, f"{iface.ip} is not in network \"{network}\" ({net})")
        self.claim(network, str(iface.ip), at, used)

    def routes(self, routes, at, ifs) -> None:
        if not isinstance(routes, list):
            self.fail(at, "is not a list")
            return
        for k, r in enumerate(routes):
            rat = at + ptr(k)
            if not self.obj(r, rat, ("to",), ("via", "dev", "if")):
                continue
            self.if_(r, rat)
            if r.get("to") != "default":
                try:
                    ipaddress.IPv4Network(r.get("to"))
                except (ValueError, TypeError):
                    self.fail(rat + "/to", f"{json.dumps(r.get('to'))} is not \"default\" or a prefix")
            if "via" in r:
                self.address(r["via"], rat + "/via", False)
            if "dev" in r:
                self.ref(r["dev"], rat + "/dev", ifs, "interface of this host")
            if "via" not in r and "dev" not in r:
                self.fail(rat, "has neither \"via\" nor \"dev\"")

    def condition(self, c, at, in_move: bool) -> None:
        if isinstance(c, list):
            if not c:
                self.fail(at, "is an empty list of conditions")
            for k, one in enumerate(c):
                self.condition(one, at + ptr(k), in_move)
            return
        if not self.source(c, at, ("if", "lines") + CONDITION_TESTS + SAME_AS_OPTIONS):
            return
        self.if_(c, at)
        if "same_as" in c and isinstance(c["same_as"], dict) and "remembered" in c["same_as"]:
            if self.obj(c["same_as"], at + "/same_as", ("remembered",)):
                self.ref(c["same_as"]["remembered"], at + "/same_as/remembered", dict.fromkeys(self.remembered),
                         "value remembered by an earlier \"remember\" step")
        elif "same_as" in c:
            self.source(c["same_as"], at + "/same_as", (), active(c, self.params))
        if "differs_from" in c:
            self.source(c["differs_from"], at + "/differs_from", (), active(c, self.params))
        self.same_as_options(c, at)
        if "length" in c and self.obj(c["length"], at + "/length", (), ("at_least", "at_most")):
            if not c["length"] or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in c["length"].values()):
                self.fail(at + "/length", "is not {\"at_least\": n} and/or {\"at_most\": n}, whole numbers 0 or more")
        tests = [t for t in CONDITION_TESTS if t in c]
        if "lines" in c:
            try:
                if not isinstance(c["lines"], str) or not c["lines"]:
                    raise re.error("empty")
                re.compile(c["lines"])
                if tests and tests[0] not in NUMERIC_TESTS:
                    self.fail(at + "/" + tests[0], f"does not go with \"lines\" (a count): use one of {', '.join(NUMERIC_TESTS)}")
            except re.error:
                self.fail(at + "/lines", f"{json.dumps(c['lines'])} is not a regular expression (Python's re)")
        if len(tests) != 1:
            self.fail(at, f"has {len(tests)} tests; expected exactly one of: {', '.join(CONDITION_TESTS)}")
        for t in ("at_least", "at_most"):
            if t in c and not (isinstance(c[t], (int, float)) and not isinstance(c[t], bool)
                               or isinstance(c[t], str) and c[t].startswith("/")):
                self.fail(at + "/" + t, "is not a number, nor a JSON pointer (\"/a/b\") into the same status as \"pointer\"")
        if "increased_by" in c:
            if not isinstance(c["increased_by"], (int, float)) or isinstance(c["increased_by"], bool) or c["increased_by"] <= 0:
                self.fail(at + "/increased_by", "is not a positive number")
            elif not in_move:
                self.fail(at + "/increased_by", "only means something in a move or a wait (compared with its start)")
        if "increased_by_exactly" in c:
            if not self.integer(c["increased_by_exactly"], 1, 2**53):
                self.fail(at + "/increased_by_exactly", "is not a positive integer")
            elif not in_move:
                self.fail(at + "/increased_by_exactly", "only means something in a move, a wait or a send (compared with its start)")
        if "in" in c and not isinstance(c["in"], list):
            self.fail(at + "/in", "is not a list")
        if "excludes" in c and (c["excludes"] is None or isinstance(c["excludes"], (dict, list))):
            self.fail(at + "/excludes", "is not a string, number or boolean (not an element of the list, or not part of the string)")
        if "absent" in c and c["absent"] is not True:
            self.fail(at + "/absent", "is not true")
        if "prefix" in c and not isinstance(c["prefix"], str):
            self.fail(at + "/prefix", "is not a string")
        if "contains" in c and (c["contains"] is None or isinstance(c["contains"], (dict, list))):
            self.fail(at + "/contains", "is not a string, number or boolean (an element of a list, or part of a string)")
        if "exceeds" in c and (not isinstance(c["exceeds"], str) or not c["exceeds"].startswith("/")):
            self.fail(at + "/exceeds", "is not a JSON pointer (\"/a/b\") into the same status as \"pointer\"")
        for t in ("increased", "unchanged", "changed"):
            if t not in c:
                continue
            if c[t] is not True:
                self.fail(at + "/" + t, "is not true")
            elif not in_move:
                self.fail(at + "/" + t, "only means something in a move or a wait (compared with its start)")
        if "index" in c and (not isinstance(c["index"], int) or c["index"] < 0):
            self.fail(at + "/index", "is not a stage index (0 = the first stage of that type)")

    def source(self, c, at: str, more: tuple, in_run: bool = True) -> bool:
        """Where a condition's (or a "same_as" value's) value comes from: a node's status
        ("node", "stage", "index"), a host's `ip -j` ("host", "ip") or a probe's counts
        ("probe"), and its "pointer"."""
        host = isinstance(c, dict) and "host" in c
        if isinstance(c, dict) and any(k in c for k in ("process", "http", "tcp", "notify")):
            return self.probe_source(c, at, more, in_run)
        if isinstance(c, dict) and "file" in c:
            if not self.obj(c, at, ("file", "pointer"), more + COMBINE + ("default",)):
                return False
            self.run_file(c["file"], at + "/file", glob=True)
            self.combine(c, at)
            p = c.get("pointer")
            if not isinstance(p, str) or (p and not p.startswith("/")):
                self.fail(at + "/pointer", "is not a JSON pointer (\"\" or \"/a/b\")")
            return True
        traffic = isinstance(c, dict) and "traffic" in c
        if host and "kernel_counters" in c:
            # The host's kernel counters (/proc/net/snmp and /proc/net/netstat of its namespace).
            if not self.obj(c, at, ("host", "kernel_counters", "pointer"), more + COMBINE + ("default",)):
                return False
            self.combine(c, at)
            self.ref(c["host"], at + "/host", self.doc.get("hosts") or {}, "host")
            if c["kernel_counters"] is not True:
                self.fail(at + "/kernel_counters", "is not true")
            p = c.get("pointer")
            if not isinstance(p, str) or not re.match(r"^/[A-Za-z0-9]+/[A-Za-z0-9]+$", p):
                self.fail(at + "/pointer", "is not \"/Group/Counter\" as /proc/net/snmp and netstat name them (e.g. \"/Udp/InCsumErrors\")")
            return True
        required, optional = ((("host", "ip", "pointer"), ()) if host else (("traffic", "pointer"), ()) if traffic
                              else (("node", "pointer"), ("stage", "index", "format")))
        if not self.obj(c, at, required, optional + more + COMBINE + ("default",)):
            return False
        self.combine(c, at)
        if host:
            self.ref(c["host"], at + "/host", self.doc.get("hosts") or {}, "host")
            self.ip_args(c.get("ip"), at + "/ip")
        elif traffic:
            self.ref(c["traffic"], at + "/traffic", self.traffic, "traffic generator")
        else:
            self.node_ref(c.get("node"), at + "/node", self.step_in_run and in_run and active(c, self.params))
            fmt = c.get("format", "json")
            if fmt not in STATUS_FORMATS:
                self.fail(at + "/format", f"{json.dumps(fmt)} is not one of: {', '.join(STATUS_FORMATS)}")
            elif fmt != "json" and ("stage" in c or "index" in c):
                self.fail(at + "/format", f"a {fmt} status has no stages (\"stage\" and \"index\" read the JSON status)")
            elif fmt == "check" and "strongswan" in (self.all_nodes.get(c.get("node")) or {} if isinstance(c.get("node"), str) else {}):
                self.fail(at + "/format", "reads `mipsec check` of a mipsec node's config (a strongSwan node has none)")
        p = c.get("pointer")
        if not isinstance(p, str) or (p and not p.startswith("/")):
            self.fail(at + "/pointer", "is not a JSON pointer (\"\" or \"/a/b\")")
        return True

    def same_as_options(self, c: dict, at: str) -> None:
        """"within": numbers (at any depth) may differ by that much; "ignoring": object keys
        (at any depth) left out of the comparison. Both only with "same_as"."""
        for k in SAME_AS_OPTIONS:
            if k in c and "same_as" not in c:
                self.fail(at + "/" + k, "only goes with \"same_as\"")
        if "within" in c and (not isinstance(c["within"], (int, float)) or isinstance(c["within"], bool) or c["within"] < 0):
            self.fail(at + "/within", "is not a number, 0 or more")
        if "ignoring" in c and (not isinstance(c["ignoring"], list) or not c["ignoring"]
                                or not all(isinstance(x, str) and x for x in c["ignoring"])):
            self.fail(at + "/ignoring", "is not a non-empty list of texts (keys holding any of them are left out)")

    def repeat(self, step: dict, at: str) -> None:
        """{"repeat": n, "steps": [...]}: those steps, n rounds in a row."""
        n = step["repeat"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= REPEAT_MAX:
            self.fail(at + "/repeat", f"is not a number of rounds, 1-{REPEAT_MAX}")
        steps = step.get("steps")
        if not isinstance(steps, list) or not steps:
            self.fail(at + ("/steps" if "steps" in step else ""), "is not a non-empty list of steps" if "steps" in step
                      else "misses \"steps\" (the steps to repeat)")
            return
        outer = self.step_in_run
        for k, sub in enumerate(steps):
            self.step(sub, at + ptr("steps", k))
            self.step_in_run = outer

    def remember(self, v, at: str) -> None:
        """{"remember": {"name": value}}: each value (a condition's source, no test) as it is
        now, for a later condition's "same_as": {"remembered": "name"}."""
        if not isinstance(v, dict) or not v:
            self.fail(at, "is not an object of name: value (a condition's source without a test)")
            return
        for name, src in v.items():
            if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", name):
                self.fail(at + ptr(name), f"\"{name}\" is not a name (lower case letter first, letters, digits, - and _, at most 32)")
            self.source(src, at + ptr(name), ())
            self.remembered.add(name)

    def sysctl(self, v, at: str) -> None:
        """A host's own network sysctls, set when it is built (e.g. net.ipv4.tcp_rto_max_ms)."""
        if not isinstance(v, dict):
            self.fail(at, "is not an object of sysctl name: value")
            return
        for k, x in v.items():
            if not SYSCTL.match(k):
                self.fail(at + ptr(k), f"\"{k}\" is not a network sysctl of the host's namespace (net.…)")
            if not (isinstance(x, int) and not isinstance(x, bool)) and not (isinstance(x, str) and re.match(r"^[A-Za-z0-9 ._-]{1,64}$", x)):
                self.fail(at + ptr(k), "is not a number or a short string")

    def run_file(self, v, at: str, glob: bool) -> None:
        """A file of the run's own directory: "${lab_dir}/name" (a condition's may hold "*")."""
        pattern = RUN_FILE_GLOB if glob else RUN_FILE
        if not isinstance(v, str) or not v.startswith("${lab_dir}/") or not pattern.match(v[len("${lab_dir}/"):]) \
                or ".." in v.split("/"):
            self.fail(at, "is not a file of the run's directory (\"${lab_dir}/name\", letters, digits, . _ - /"
                          + (", * matching any part of a name" if glob else "") + ")")

    def ip_args(self, v, at: str) -> None:
        """`ip -j` arguments that only read: [-4|-6|-s]... OBJECT show|get ARGS."""
        if not isinstance(v, list) or not 2 <= len(v) <= 10 or not all(isinstance(a, str) and IP_ARG.match(a) for a in v):
            self.fail(at, "is not a list of 2 to 10 iproute2 arguments (letters, digits, . / : _ -)")
            return
        rest = list(v)
        while rest and rest[0] in IP_OPTIONS:
            rest.pop(0)
        if len(rest) < 2 or rest[0] not in IP_OBJECTS or rest[1] not in ("show", "get"):
            self.fail(at, f"does not read: expected options among {', '.join(IP_OPTIONS)}, then one of {', '.join(IP_OBJECTS)}, then \"show\" or \"get\"")

    def node_ref(self, v, at: str, in_run: bool) -> None:
        """An element that is part of this run may only name nodes that are too."""
        if in_run and isinstance(v, str) and v in self.all_nodes and v not in self.active_nodes:
            self.fail(at, f"node \"{v}\" is not part of this run (its \"if\" does not hold for these parameters)")
        else:
            self.ref(v, at, self.all_nodes, "node")

    def quiet(self, q, at: str) -> None:
        if not self.obj(q, at, ("captures", "protocols")):
            return
        for key, what in (("captures", "capture"), ("protocols", "protocol")):
            v = q.get(key)
            if not isinstance(v, list) or not v:
                self.fail(at + "/" + key, f"is not a non-empty list of {what} names")
                continue
            for k, x in enumerate(v):
                if key == "captures":
                    if self.ref(x, at + ptr(key, k), self.captures, "capture (a network under \"captures\")") and self.step_in_run \
                            and not active(self.captures[x], self.params):
                        self.fail(at + ptr(key, k), f"capture \"{x}\" is not part of this run (its \"if\" does not hold for these parameters)")
                elif not isinstance(x, str) or not TSHARK_PROTOCOL.match(x):
                    self.fail(at + ptr(key, k), f"{json.dumps(x)} is not a protocol name as tshark writes it (e.g. \"esp\"), "
                                                "or a chain of up to four (\"ip:esp\")")

    def bound(self, figure: str, b, at: str) -> None:
        if figure == "registrations_per_layer":
            if not isinstance(b, list) or not b:
                self.fail(at, "is not a list of bounds, one per Mobile IP layer (inner first)")
                return
            for k, one in enumerate(b):
                self.bound("registrations", one, at + ptr(k))
            return
        if figure == "access_mode":
            if self.obj(b, at, (), ("equals", "in")):
                if len(b) != 1:
                    self.fail(at, "has not exactly one of \"equals\", \"in\"")
                if "equals" in b and not isinstance(b["equals"], str):
                    self.fail(at + "/equals", "is not a mode name (c, f, cvc, fvc, ...)")
                if "in" in b and (not isinstance(b["in"], list) or not all(isinstance(x, str) for x in b["in"])):
                    self.fail(at + "/in", "is not a list of mode names")
            return
        if self.obj(b, at, (), ("at_least", "at_most")):
            for t, x in b.items():
                if not isinstance(x, (int, float)) or isinstance(x, bool):
                    self.fail(at + "/" + t, "is not a number")

    def step(self, step, at) -> None:
        actions = ACTIONS
        if not self.obj(step, at, (), actions + ("label", "timeout_s", "if", "refused", "steps", "throughout", "then") + RESTART_KEYS):
            return
        self.if_(step, at)
        in_run = self.step_in_run = active(step, self.params)
        present = [a for a in actions if a in step]
        if len(present) != 1:
            self.fail(at, f"has {len(present)} actions; expected exactly one of: {', '.join(actions)}")
            return
        a = present[0]
        v = step[a]
        if "timeout_s" in step and (not isinstance(step["timeout_s"], (int, float)) or not 0 < step["timeout_s"] <= 300):
            self.fail(at + "/timeout_s", "is not a number of seconds, 0-300")
        if "refused" in step:
            r = step["refused"]
            if a != "start":
                self.fail(at + "/refused", "only goes with \"start\"")
            elif self.obj(r, at + "/refused", ("exit", "message")):
                if not isinstance(r["exit"], int) or isinstance(r["exit"], bool) or not 1 <= r["exit"] <= 255:
                    self.fail(at + "/refused/exit", "is not an exit status, 1-255")
                if not refusal_texts(r["message"]):
                    self.fail(at + "/refused/message", "is not a non-empty string or a non-empty list of them")
                node = self.doc.get("nodes", {}).get(v) if isinstance(self.doc.get("nodes"), dict) and isinstance(v, str) else None
                if isinstance(node, dict) and "strongswan" in node:
                    self.fail(at + "/refused", "is for mipsec nodes (a strongSwan node has no exit status to expect)")
        if "steps" in step and a != "repeat":
            self.fail(at + "/steps", "only goes with \"repeat\"")
        if "then" in step and a != "send":
            self.fail(at + "/then", "only goes with \"send\"")
        if "throughout" in step:
            if a != "wait":
                self.fail(at + "/throughout", "only goes with \"wait\"")
            else:
                self.condition(step["throughout"], at + "/throughout", False)
        for k in RESTART_KEYS:
            if k in step and a != "restart":
                self.fail(at + "/" + k, "only goes with \"restart\"")
        if a in ("start", "stop", "restart"):
            self.node_ref(v, at + "/" + a, in_run)
        if a == "restart":
            self.restart(step, at)
        elif a in ("wait", "assert"):
            self.condition(v, at + "/" + a, a == "wait")
        elif a == "quiet":
            self.quiet(v, at + "/quiet")
        elif a == "repeat":
            self.repeat(step, at)
        elif a == "remember":
            self.remember(v, at + "/remember")
        elif a == "forget_path_mtu":
            self.ref(v, at + "/forget_path_mtu", self.hosts, "host")
        elif a == "write":
            if self.obj(v, at + "/write", ("file", "text"), ("mode",)) and "file" in v and "text" in v:
                self.run_file(v["file"], at + "/write/file", glob=False)
                if not isinstance(v["text"], str):
                    self.fail(at + "/write/text", "is not a string")
                if "mode" in v and (not isinstance(v["mode"], str) or not FILE_MODE.match(v["mode"])):
                    self.fail(at + "/write/mode", "is not an octal file mode (\"0600\")")
        elif a == "send":
            self.send_step(step, at)
        elif a == "signal":
            self.signal_step(v, at + "/signal", in_run)
        elif a == "config":
            self.config_step(v, at + "/config", in_run)
        elif a == "swanctl":
            if self.obj(v, at + "/swanctl", ("node", "do", "sa"), ("until",)):
                if "until" in v:
                    self.condition(v["until"], at + "/swanctl/until", True)
                self.node_ref(v.get("node"), at + "/swanctl/node", in_run)
                node = (self.doc.get("nodes") or {}).get(v.get("node")) if isinstance(v.get("node"), str) else None
                if isinstance(node, dict) and "strongswan" not in node:
                    self.fail(at + "/swanctl/node", f"node \"{v['node']}\" is a mipsec node, not a strongSwan one")
                if v.get("do") not in SWANCTL_DO:
                    self.fail(at + "/swanctl/do", f"{json.dumps(v.get('do'))} is not one of: {', '.join(SWANCTL_DO)}")
                if v.get("sa") not in ("child", "ike"):
                    self.fail(at + "/swanctl/sa", f"{json.dumps(v.get('sa'))} is not \"child\" or \"ike\"")
        elif a == "drop":
            dat = at + "/drop"
            if self.obj(v, dat, ("host", "from", "udp_source_port"), ("payload", "count")):
                if self.ref(v.get("host"), dat + "/host", self.hosts, "host") and not (self.hosts[v["host"]] or {}).get("forward"):
                    self.fail(dat + "/host", f"host \"{v['host']}\" does not forward (\"forward\": true): it has no packets to drop")
                self.address(v.get("from"), dat + "/from", False)
                p = v.get("udp_source_port")
                if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 65535:
                    self.fail(dat + "/udp_source_port", "is not a UDP port, 1-65535")
                pl = v.get("payload", [])
                if not isinstance(pl, list) or len(pl) > 4:
                    self.fail(dat + "/payload", "is not a list of at most 4 [offset, \"hex bytes\"]")
                else:
                    for k, one in enumerate(pl):
                        if (not isinstance(one, list) or len(one) != 2 or not isinstance(one[0], int) or isinstance(one[0], bool)
                                or not 0 <= one[0] <= 1400 or not isinstance(one[1], str) or not DROP_PAYLOAD_HEX.match(one[1])):
                            self.fail(dat + ptr("payload", k), "is not [offset into the UDP payload 0-1400, 1-4 bytes as lower-case hex]")
                c = v.get("count", 1)
                if not isinstance(c, int) or isinstance(c, bool) or not 1 <= c <= 100:
                    self.fail(dat + "/count", "is not a number of packets, 1-100")
        elif a == "nat_flush":
            if self.ref(v, at + "/nat_flush", self.hosts, "host") and "nat" not in (self.hosts[v] if isinstance(self.hosts[v], dict) else {}):
                self.fail(at + "/nat_flush", f"host \"{v}\" has no \"nat\" to flush")
        elif a == "traffic":
            if not isinstance(v, list) or not v:
                self.fail(at + "/traffic", "is not a list of traffic names")
            else:
                for k, t in enumerate(v):
                    self.ref(t, at + ptr("traffic", k), self.traffic, "traffic generator")
        elif a == "outage":
            oat = at + "/outage"
            if not self.obj(v, oat, ("host", "interface", "duration_s"), ("until", "after", "expect", "quiet")):
                return
            if self.ref(v.get("host"), oat + "/host", self.hosts, "host"):
                self.ref(v.get("interface"), oat + "/interface", self.interfaces.get(v["host"], {}), f"interface of host \"{v['host']}\"")
            d = v.get("duration_s", 1)
            if not isinstance(d, (int, float)) or isinstance(d, bool) or not 0 < d <= OUTAGE_MAX_S:
                self.fail(oat + "/duration_s", f"is not a number of seconds, more than 0 and at most {OUTAGE_MAX_S}")
            self.after_change(v, oat)
        elif a == "link":
            lat = at + "/link"
            if not self.obj(v, lat, ("host", "interface", "up"), ("until", "after", "expect", "quiet")):
                return
            if self.ref(v.get("host"), lat + "/host", self.hosts, "host"):
                self.ref(v.get("interface"), lat + "/interface", self.interfaces.get(v["host"], {}), f"interface of host \"{v['host']}\"")
            if not isinstance(v.get("up"), bool):
                self.fail(lat + "/up", "is not true (plugged back in) or false (pulled)")
            self.after_change(v, lat)
        elif a == "move":
            mat = at + "/move"
            if not self.obj(v, mat, ("host", "interface", "to"),
                            ("address", "routes", "restart", "acquired", "until", "after", "expect", "quiet")):
                return
            if self.ref(v.get("host"), mat + "/host", self.hosts, "host"):
                ifs = self.interfaces.get(v["host"], {})
                self.ref(v.get("interface"), mat + "/interface", ifs, f"interface of host \"{v['host']}\"")
                self.routes(v.get("routes", []), mat + "/routes", ifs)
            if self.ref(v.get("to"), mat + "/to", self.networks, "network"):
                a_ = v.get("address")
                if a_ not in (None, "dhcp"):
                    iface = self.address(a_, mat + "/address", True)
                    net = self.doc["networks"][v["to"]].get("prefix")
                    try:
                        if iface is not None and iface.ip not in ipaddress.IPv4Network(net):
                            self.fail(mat + "/address", f"{iface.ip} is not in network \"{v['to']}\" ({net})")
                        owner = self.used.get((v["to"], str(iface.ip))) if iface is not None else None
                        if owner and not owner.startswith(ptr("hosts", v.get("host"), "interfaces", v.get("interface"))):
                            self.fail(mat + "/address", f"address {iface.ip} is already used on network \"{v['to']}\" at {owner}")
                    except (ValueError, TypeError):
                        pass
            for k, n in enumerate(v.get("restart", []) if isinstance(v.get("restart", []), list) else [None]):
                self.node_ref(n, mat + ptr("restart", k), in_run)
            if "acquired" in v:
                self.condition(v["acquired"], mat + "/acquired", True)
            self.after_change(v, mat)

    def restart(self, step: dict, at: str) -> None:
        """A restart's options: "kill" (SIGKILL, a crash), and "host" with the figures a move
        has ("until", "after", "expect"), timed from the new start."""
        if "kill" in step and not isinstance(step["kill"], bool):
            self.fail(at + "/kill", "is not true or false")
        if "while_down" in step:
            self.condition(step["while_down"], at + "/while_down", False)
        if "host" in step:
            self.ref(step["host"], at + "/host", self.hosts, "host")
            self.after_change(step, at)
        else:
            for k in ("until", "after", "expect"):
                if k in step:
                    self.fail(at + "/" + k, "needs \"host\" (whose nodes the restart's row of the move table reads)")

    def after_change(self, v: dict, at: str) -> None:
        """What a move and an outage share: "until", "after", "expect", "quiet"."""
        for k in ("until", "after"):
            if k in v:
                self.condition(v[k], at + "/" + k, True)
        if "expect" in v and self.obj(v["expect"], at + "/expect", (), FIGURES):
            for f, b in v["expect"].items():
                if f in FIGURES:
                    self.bound(f, b, at + ptr("expect", f))
        if "quiet" in v:
            self.quiet(v["quiet"], at + "/quiet")


    # -- running nodes, signals, config changes, process/HTTP/TCP/notify conditions -------------
    def capture_fields(self, v, at: str) -> None:
        """A capture's "fields" checks: a display filter, a field and a test on every value."""
        if not isinstance(v, list) or not v:
            self.fail(at, "is not a non-empty list of field checks")
            return
        for k, f in enumerate(v):
            fat = at + ptr(k)
            if not self.obj(f, fat, ("filter", "field"), ("occurrence", "frames", "label") + FIELD_TESTS):
                continue
            if not isinstance(f["filter"], str) or not 0 < len(f["filter"]) <= 400 or "\n" in f["filter"]:
                self.fail(fat + "/filter", "is not a display filter (one line, at most 400 characters)")
            if not isinstance(f["field"], str) or not TSHARK_FIELD.match(f["field"]):
                self.fail(fat + "/field", f"{json.dumps(f['field'])} is not a field name as tshark writes it (\"ip.dsfield\")")
            occ = f.get("occurrence", 1)
            if not isinstance(occ, int) or isinstance(occ, bool) or not 1 <= occ <= 8:
                self.fail(fat + "/occurrence", "is not 1-8 (1: the outermost layer's field)")
            tests = [t for t in FIELD_TESTS if t in f]
            if len(tests) != 1:
                self.fail(fat, f"has {len(tests)} tests; expected exactly one of: {', '.join(FIELD_TESTS)}")
            for t in ("at_least", "at_most"):
                if t in f and (not isinstance(f[t], (int, float)) or isinstance(f[t], bool)):
                    self.fail(fat + "/" + t, "is not a number")
            if "in" in f and not isinstance(f["in"], list):
                self.fail(fat + "/in", "is not a list")
            if "frames" in f and self.obj(f["frames"], fat + "/frames", (), ("at_least", "at_most")):
                for t, x in f["frames"].items():
                    if not isinstance(x, int) or isinstance(x, bool) or x < 0:
                        self.fail(fat + ptr("frames", t), "is not a number of frames")

    def host_extras(self, spec: dict, at: str) -> None:
        """A host's own "sysctl" settings (its namespace's net.* only) and "nft" ruleset."""
        if "sysctl" in spec:
            self.sysctl(spec["sysctl"], at + "/sysctl")
        if "nft" in spec and (not isinstance(spec["nft"], str) or not spec["nft"].strip() or "include" in spec["nft"]):
            self.fail(at + "/nft", "is not an nftables ruleset (text for `nft -f -`, no include)")

    def node_run(self, spec: dict, at: str) -> None:
        """How a mipsec node's `mipsec run` is launched: "options" (command-line options),
        "launch" (setpriv: another user, ambient capabilities, a bounding set), "notify" (a
        systemd notify socket)."""
        if any(k in spec for k in NODE_RUN_KEYS) and "strongswan" in spec:
            self.fail(at, "has \"options\", \"launch\" or \"notify\", which are for mipsec nodes")
            return
        if "options" in spec:
            o = spec["options"]
            if not isinstance(o, list) or not o or not all(isinstance(x, str) and RUN_OPTION.match(x) for x in o) \
                    or not o[0].startswith("--"):
                self.fail(at + "/options", "is not a list of `mipsec run` options (\"--user\", \"nobody\", ...; an option first)")
        if "notify" in spec and not isinstance(spec["notify"], bool):
            self.fail(at + "/notify", "is not true or false")
        if "launch" in spec:
            la = at + "/launch"
            v = spec["launch"]
            if not self.obj(v, la, (), LAUNCH_KEYS):
                return
            if not v:
                self.fail(la, "is empty (expected one of: " + ", ".join(LAUNCH_KEYS) + ")")
            for k in ("user", "group"):
                if k in v and (not isinstance(v[k], str) or not ACCOUNT.match(v[k])):
                    self.fail(la + "/" + k, "is not an account name (lower case letters, digits, _ -)")
            if "group" in v and "user" not in v:
                self.fail(la + "/group", "needs \"user\"")
            if "bounding_set" in v and "bounding_drop" in v:
                self.fail(la, "has both \"bounding_set\" (the capabilities kept) and \"bounding_drop\" (those removed)")
            for k in ("ambient_caps", "bounding_set", "bounding_drop"):
                if k in v and (not isinstance(v[k], list) or not v[k]
                               or not all(isinstance(x, str) and CAPABILITY.match(x) for x in v[k])):
                    self.fail(la + "/" + k, "is not a non-empty list of capability names (\"cap_net_admin\")")
            if "ambient_caps" in v and "user" not in v:
                self.fail(la + "/ambient_caps", "needs \"user\" (root has every capability already)")

    def signal_step(self, v, at: str, in_run: bool) -> None:
        if not self.obj(v, at, ("node", "name"), ("until", "after")):
            return
        self.node_ref(v.get("node"), at + "/node", in_run)
        node = self.all_nodes.get(v.get("node")) if isinstance(v.get("node"), str) else None
        if isinstance(node, dict) and "strongswan" in node:
            self.fail(at + "/node", "is a strongSwan node (signals go to mipsec nodes)")
        if v.get("name") not in SIGNALS:
            self.fail(at + "/name", f"{json.dumps(v.get('name'))} is not one of: {', '.join(SIGNALS)}")
        for k in ("until", "after"):
            if k in v:
                self.condition(v[k], at + "/" + k, True)

    def config_step(self, v, at: str, in_run: bool) -> None:
        """A change to a node's config file: applied, in timeline order, to a copy of the node's
        config here, so every pointer is checked against the config as it will be then."""
        if not self.obj(v, at, ("node",), ("set", "remove")):
            return
        self.node_ref(v.get("node"), at + "/node", in_run)
        node = self.all_nodes.get(v.get("node")) if isinstance(v.get("node"), str) else None
        if not isinstance(node, dict) or not isinstance(node.get("config"), dict):
            if isinstance(node, dict):
                self.fail(at + "/node", "is not a mipsec node (it has no config)")
            return
        if "set" not in v and "remove" not in v:
            self.fail(at, "has neither \"set\" nor \"remove\"")
        if not hasattr(self, "configs"):
            self.configs: dict = {}
        cfg = self.configs.setdefault(v["node"], json.loads(json.dumps(node["config"])))
        if "remove" in v:
            if not isinstance(v["remove"], list) or not v["remove"]:
                self.fail(at + "/remove", "is not a non-empty list of JSON pointers")
            else:
                for k, p in enumerate(v["remove"]):
                    problem = edit_config(cfg, p, None, remove=True)
                    if problem:
                        self.fail(at + ptr("remove", k), problem)
        if "set" in v:
            if not isinstance(v["set"], dict) or not v["set"]:
                self.fail(at + "/set", "is not an object of JSON pointer: value")
            else:
                for p, x in v["set"].items():
                    problem = edit_config(cfg, p, x)
                    if problem:
                        self.fail(at + ptr("set", p), problem)

    def probe_source(self, c: dict, at: str, more: tuple, in_run: bool) -> bool:
        """A condition reading a node's process ("process": /proc/PID/status), a systemd
        notify socket ("notify"), an HTTP request ("http") or a TCP exchange ("tcp")."""
        kinds = [k for k in ("process", "http", "tcp", "notify") if k in c]
        if len(kinds) != 1:
            self.fail(at, "has more than one of \"process\", \"http\", \"tcp\", \"notify\"")
            return False
        kind = kinds[0]
        if not self.obj(c, at, (kind, "pointer"), more):
            return False
        v = c[kind]
        if kind in ("process", "notify"):
            self.node_ref(v, at + "/" + kind, self.step_in_run and in_run and active(c, self.params))
            node = self.all_nodes.get(v) if isinstance(v, str) else None
            if isinstance(node, dict) and "strongswan" in node:
                self.fail(at + "/" + kind, "is a strongSwan node (this reads a mipsec node)")
            elif kind == "notify" and isinstance(node, dict) and node.get("notify") is not True:
                self.fail(at + "/notify", f"node \"{v}\" has no \"notify\": true (no notify socket to read)")
        elif kind == "http":
            if self.obj(v, at + "/http", ("host", "url"), ("method", "parse")):
                self.ref(v.get("host"), at + "/http/host", self.doc.get("hosts") or {}, "host")
                self.endpoint(v.get("url"), at + "/http/url", url=True)
                if v.get("method", "GET") not in HTTP_METHODS:
                    self.fail(at + "/http/method", f"{json.dumps(v.get('method'))} is not one of: {', '.join(HTTP_METHODS)}")
                if v.get("parse", "text") not in ("text", "json", "prometheus"):
                    self.fail(at + "/http/parse", "is not \"text\", \"json\" or \"prometheus\"")
        else:
            if self.obj(v, at + "/tcp", ("host", "to", "send"), ("pause_ms",)):
                self.ref(v.get("host"), at + "/tcp/host", self.doc.get("hosts") or {}, "host")
                self.endpoint(v.get("to"), at + "/tcp/to", url=False)
                try:
                    if not v["send"] or len(tcp_bytes(v["send"])) > TCP_SEND_MAX:
                        self.fail(at + "/tcp/send", f"is empty or more than {TCP_SEND_MAX} bytes")
                except ValueError as e:
                    self.fail(at + "/tcp/send" + str(e).split(" ", 1)[0], str(e).split(" ", 1)[1])
                p = v.get("pause_ms", 0)
                if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0 <= p <= 5000:
                    self.fail(at + "/tcp/pause_ms", "is not 0-5000 ms (a pause after each byte sent)")
        p = c.get("pointer")
        if not isinstance(p, str) or (p and not p.startswith("/")):
            self.fail(at + "/pointer", "is not a JSON pointer (\"\" or \"/a/b\")")
        return True

    def endpoint(self, v, at: str, url: bool) -> None:
        """An HTTP URL ("http://a.b.c.d:port/path") or a TCP "a.b.c.d:port" inside the lab (its
        ranges, or a host's own loopback)."""
        m = HTTP_URL.match(v) if url and isinstance(v, str) else \
            re.match(r"^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$", v) if isinstance(v, str) else None
        try:
            addr = ipaddress.IPv4Address(m.group(1)) if m else None
        except ValueError:
            addr = None
        if addr is None or not 1 <= int(m.group(2)) <= 65535:
            self.fail(at, f"{json.dumps(v)} is not " + ("an http://a.b.c.d:port/path URL" if url else "a.b.c.d:port"))
        elif addr not in LOOPBACK and not any(addr in n for n in ALLOWED_NETS):
            self.fail(at, f"{addr} is outside the lab's ranges and loopback")

def refusal_texts(message: Any) -> list:
    """A refused start's "message": one text or a list of texts its output must all hold."""
    texts = [message] if isinstance(message, str) else message if isinstance(message, list) else []
    return texts if texts and all(isinstance(t, str) and t for t in texts) else []


def refused_only(doc: dict, node: str) -> list:
    """The texts a node's refusals expect, when the node is never started except in refused
    starts (a config meant to be refused, e.g. a state file in a missing directory); else []."""
    spec = doc.get("nodes", {}).get(node, {})
    starts = [s for s in doc.get("timeline", []) if isinstance(s, dict) and s.get("start") == node]
    if spec.get("start", True) is not False or not starts or not all(isinstance(s.get("refused"), dict) for s in starts):
        return []
    return [t for s in starts for t in refusal_texts(s["refused"].get("message"))]


def tcp_bytes(pieces: Any) -> bytes:
    """What a "tcp" condition sends: a list of pieces, each a string (sent as UTF-8), {"hex":
    "16030100"}, {"repeat": s, "times": n} or {"random": n} (n random bytes: fresh on each send,
    e.g. garbage that is not HTTP). Raises ValueError("/k problem") for a bad piece."""
    if not isinstance(pieces, list):
        raise ValueError(" is not a list of pieces (strings, {\"hex\"}, {\"repeat\", \"times\"}, {\"random\"})")
    out = b""
    for k, x in enumerate(pieces):
        if isinstance(x, str):
            out += x.encode()
        elif isinstance(x, dict) and set(x) == {"hex"} and isinstance(x["hex"], str) and re.fullmatch(r"([0-9a-fA-F]{2})+", x["hex"]):
            out += bytes.fromhex(x["hex"])
        elif isinstance(x, dict) and set(x) == {"repeat", "times"} and isinstance(x["repeat"], str) and x["repeat"] \
                and isinstance(x["times"], int) and not isinstance(x["times"], bool) and 1 <= x["times"] <= TCP_SEND_MAX:
            out += x["repeat"].encode() * x["times"]
        elif isinstance(x, dict) and set(x) == {"random"} and isinstance(x["random"], int) and not isinstance(x["random"], bool) \
                and 1 <= x["random"] <= TCP_SEND_MAX:
            out += os.urandom(x["random"])
        else:
            raise ValueError(f"/{k} is not a string, {{\"hex\": hex digits}}, {{\"repeat\": s, \"times\": n}} or {{\"random\": n}}")
        if len(out) > TCP_SEND_MAX:
            break
    return out


def edit_config(cfg: dict, pointer: Any, value: Any, remove: bool = False) -> str:
    """Sets (or removes) the value at an RFC 6901 pointer of a config in place; "-" as the last
    token appends to a list (RFC 6902's "add"). The parent must exist. Returns a problem, or ""."""
    if not isinstance(pointer, str) or not pointer.startswith("/"):
        return "is not a JSON pointer (\"/a/b\")"
    value = json.loads(json.dumps(value))  # a copy: a later edit must not reach into the scenario's step
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    parent = cfg
    for t in tokens[:-1]:
        if isinstance(parent, dict) and t in parent:
            parent = parent[t]
        elif isinstance(parent, list) and t.isdigit() and int(t) < len(parent):
            parent = parent[int(t)]
        else:
            return f"{pointer}: the config has no {t!r} there"
    last = tokens[-1]
    if isinstance(parent, dict):
        if remove and last not in parent:
            return f"{pointer}: the config has no {last!r} to remove"
        if remove:
            del parent[last]
        else:
            parent[last] = value
    elif isinstance(parent, list):
        if last == "-" and not remove:
            parent.append(value)
        elif last.isdigit() and int(last) < len(parent):
            if remove:
                del parent[int(last)]
            else:
                parent[int(last)] = value
        else:
            return f"{pointer}: {last!r} is not an index of that list" + ("" if remove else " (\"-\" appends)")
    else:
        return f"{pointer}: the parent is not an object or a list"
    return ""


def check_node_configs(doc: dict, mipsec: str) -> list[tuple[str, str]]:
    """Runs `mipsec check` on each inline node config (with placeholders filled by stand-ins);
    its complaint's own pointer is appended to the config's pointer. A node only ever started
    to be refused may fail it, saying what its refusals expect."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="mipsec-lab-check-") as tmp:
        for name, spec in (doc.get("nodes") or {}).items():
            if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict) or "strongswan" in spec:
                continue  # (a strongSwan gateway is checked by the validator)
            cfg = render_config(spec["config"], tmp, lambda host_if: "198.18.0.1", name)
            path = os.path.join(tmp, f"{name}.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            try:
                r = subprocess.run([mipsec, "check", path], capture_output=True, text=True, timeout=30)
            except OSError as e:
                return [("", f"cannot run {mipsec} check: {e.strerror}")]
            expected = refused_only(doc, name)
            if r.returncode != 0 and expected and all(t in r.stdout + r.stderr for t in expected):
                continue
            if r.returncode != 0:
                # "mipsec: config PATH: /pointer: problem"
                text = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}"
                m = re.match(r"^mipsec: config [^:]*: (/[^:]*|/): (.*)$", text)
                inner, msg = (m.group(1), m.group(2)) if m else ("", text)
                problems.append((ptr("nodes", name, "config") + ("" if inner == "/" else inner), f"mipsec check: {msg}"))
    return problems


ADDRESS_REF = re.compile(r"\$\{address:([a-z][a-z0-9_-]*)/([a-z][a-z0-9_.-]*)\}")


def render_config(cfg: dict, lab_dir: str, address_of, node: str, home: Optional[str] = None) -> dict:
    """A node's config as `mipsec run` reads it: ${lab_dir} and ${address:host/if} filled, and
    a control socket in the lab directory (or the node's `home`) unless the scenario names one."""
    def fill(v):
        if isinstance(v, dict):
            return {k: fill(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fill(x) for x in v]
        if isinstance(v, str):
            v = v.replace("${lab_dir}", lab_dir)
            return ADDRESS_REF.sub(lambda m: address_of((m.group(1), m.group(2))), v)
        return v
    out = fill(cfg)
    out.setdefault("name", node)
    out.setdefault("control_socket", os.path.join(home or lab_dir, f"{node}.sock"))
    return out


def load(path: str, sets: Optional[list[str]] = None, mipsec: Optional[str] = None) -> dict:
    """Reads, substitutes and validates a scenario; raises ScenarioError with every problem."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ScenarioError([("", f"cannot read {path}: {e.strerror}")])
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ScenarioError([("", f"is not JSON: {e}")])
    if not isinstance(raw, dict):
        raise ScenarioError([("", "is not a JSON object")])
    params = raw.get("parameters", {})
    if not isinstance(params, dict):
        raise ScenarioError([("/parameters", "is not an object")])
    params = parse_set(sets or [], params)
    problems: list = []
    doc = {k: (v if k == "parameters" else substitute(v, params, problems, ptr(k))) for k, v in raw.items()}
    doc["parameters"] = params
    v = Validator(doc)
    v.run()
    problems += v.problems
    if mipsec and isinstance(doc.get("nodes"), dict):
        problems += check_node_configs(doc, mipsec)
    if problems:
        raise ScenarioError(problems)
    # A capture whose "if" does not hold is not recorded in this run.
    doc["captures"] = {n: c for n, c in doc.get("captures", {}).items() if active(c, params)}
    return doc
