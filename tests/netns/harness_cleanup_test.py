# SPDX-License-Identifier: MIT
"""The namespace harness removes everything it made on every exit path: normal exit, an
exception, and SIGINT/SIGTERM while processes run inside its namespaces."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from lab.netns import Checks, require_root  # noqa: E402

CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from lab.netns import Lab
mode = sys.argv[2]
with Lab("cleanup") as lab:
    a, b = lab.host("a"), lab.host("b")
    lab.link(a, "192.0.2.1/24", b, "192.0.2.2/24")
    lab.nat_box("n", a, ("10.0.0.1/24", "10.0.0.2/24"), b, ("198.51.100.1/24", "198.51.100.2/24"))
    a.spawn(["sleep", "300"])
    print("READY", lab.dir, *[ns for ns in lab._namespaces], flush=True)
    if mode == "raise":
        raise RuntimeError("deliberate failure")
    if mode == "wait":
        time.sleep(300)
"""


def namespaces():
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


def run_child(mode, sig=None):
    tools = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools")
    p = subprocess.Popen(["/usr/bin/python3", "-c", CHILD, tools, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().split()
    made = line[2:] if line and line[0] == "READY" else []
    lab_dir = line[1] if len(line) > 1 else ""
    if sig is not None:
        time.sleep(0.3)
        p.send_signal(sig)
    p.wait(30)
    return made, lab_dir, p.returncode


def main():
    require_root("the harness clean-up test")
    checks = Checks()
    for mode, sig, name in (("exit", None, "normal exit"), ("raise", None, "an exception"),
                            ("wait", signal.SIGINT, "SIGINT"), ("wait", signal.SIGTERM, "SIGTERM")):
        made, lab_dir, code = run_child(mode, sig)
        left = namespaces() & set(made)
        checks.check(f"{name}: the lab made 3 namespaces", len(made) == 3, str(made))
        checks.check(f"{name}: none of them is left", not left, str(left))
        checks.check(f"{name}: the lab directory is removed", lab_dir != "" and not os.path.exists(lab_dir), lab_dir)
        if mode == "raise":
            checks.check("an exception still fails the run", code != 0, f"exit {code}")
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
