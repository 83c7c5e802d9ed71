# SPDX-License-Identifier: MIT
"""`mipsec run` speaks the systemd notify protocol to a socket the test listens on, as systemd
would with Type=notify (this machine has no systemd running): an IP-in-IP node in a private
network namespace says READY=1 only once its control socket answers and its TUN device
exists, sends STATUS=, sends WATCHDOG=1 at half of $WATCHDOG_USEC for as long as it runs, and
STOPPING=1 on SIGTERM before it exits 0. A node that cannot start never says READY=1."""
import argparse
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from lab.netns import Checks, Lab, node_status, require_root  # noqa: E402

WATCHDOG_USEC = 400000


def write_config(lab, local):
    cfg = {
        "name": "a", "control_socket": f"{lab.dir}/a.sock", "log_level": "info",
        "tun": {"name": "mip0", "address": "10.10.1.1/24", "routes": ["10.10.2.0/24"]},
        "transport": {"local": local, "raw_protocols": [4]},
        "pipeline": [{"type": "mip.ipip", "local": local, "remote": "192.0.2.2"}],
    }
    path = f"{lab.dir}/a-{local}.json"
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def receive(sock, until):
    """(arrival time, message) for every datagram until the monotonic deadline."""
    got = []
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return got
        sock.settimeout(left)
        try:
            got.append((time.monotonic(), sock.recv(4096).decode()))
        except socket.timeout:
            return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    args = ap.parse_args()
    require_root("the notify protocol test (TUN device in a network namespace)")
    checks = Checks()
    with Lab("notify") as lab:
        a, b = lab.host("a"), lab.host("b")
        lab.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
        # A path socket: an abstract one belongs to a network namespace and the node runs in
        # another (the unit test covers the abstract form).
        notify_path = f"{lab.dir}/notify.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC=str(WATCHDOG_USEC))

        proc = a.spawn([args.mipsec, "run", write_config(lab, "192.0.2.1")], log_name="mipsec-a", env=env)
        listener.settimeout(10)
        try:
            first = listener.recv(4096).decode()
        except socket.timeout:
            first = ""
        # Look at the node the moment READY arrives, before anything else happens.
        sock_exists = os.path.exists(f"{lab.dir}/a.sock")
        tun_exists = a.run(["ip", "link", "show", "mip0"], check=False).returncode == 0
        answers = node_status(a, args.mipsec, f"{lab.dir}/a.sock") is not None
        lines = first.split("\n")
        checks.check("the first notification is READY=1", "READY=1" in lines, first)
        checks.check("... with a STATUS= line", any(x.startswith("STATUS=running 1 node(s)") for x in lines), first)
        checks.check("at READY=1 the control socket exists and answers", sock_exists and answers)
        checks.check("at READY=1 the TUN device exists", tun_exists)

        got = receive(listener, time.monotonic() + 1.6)
        pings = [t for t, m in got if m == "WATCHDOG=1"]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        checks.check("WATCHDOG=1 keeps coming (every 200 ms for WATCHDOG_USEC=400000)", len(pings) >= 6, f"{len(pings)} in 1.6 s: {got}")
        checks.check("... never more than WATCHDOG_USEC apart", gaps and max(gaps) < WATCHDOG_USEC / 1e6, str(gaps))
        checks.check("... and nothing else while running", all(m == "WATCHDOG=1" for _, m in got), str(got))

        code = lab.stop(proc)
        after = receive(listener, time.monotonic() + 0.5)
        stopping = [m for _, m in after if "STOPPING=1" in m.split("\n")]
        checks.check("SIGTERM: STOPPING=1 is sent", len(stopping) == 1, str(after))
        idx = next((i for i, (_, m) in enumerate(after) if "STOPPING=1" in m), len(after))
        checks.check("... and no WATCHDOG=1 after it", all(m != "WATCHDOG=1" for _, m in after[idx + 1:]), str(after))
        checks.check("... and mipsec exits 0", code == 0, f"exit {code}")

        # A node that cannot start (its address is on no interface) must not claim readiness.
        r = a.run([args.mipsec, "run", write_config(lab, "198.51.100.99")], check=False, env=env)
        silent = receive(listener, time.monotonic() + 0.3)
        checks.check("a failed start exits 1 and never sends READY=1",
                     r.returncode == 1 and not any("READY=1" in m for _, m in silent), f"exit {r.returncode}: {silent}")
        listener.close()
        if checks.failed:
            lab.dump_logs()
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
