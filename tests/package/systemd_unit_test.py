# SPDX-License-Identifier: MIT
"""mipsec@.service passes `systemd-analyze verify` with no warning at all (verify exits 0 even
for unknown keys, so any output fails the test), run against the built binary; a unit with a
misspelt key is caught the same way, so the check can fail. The package test verifies the
installed unit again, with its man pages."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from lab.netns import Checks  # noqa: E402


def verify(unit_text, mipsec, directory):
    path = os.path.join(directory, "mipsec@.service")
    with open(path, "w") as f:
        f.write(unit_text.replace("/usr/bin/mipsec", mipsec))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mipsec", required=True)
    ap.add_argument("--unit", required=True)
    args = ap.parse_args()
    if shutil.which("systemd-analyze") is None:
        print("FAIL systemd-analyze is missing (package systemd; tools/install-deps.sh installs it)")
        return 1
    checks = Checks()
    unit = open(args.unit).read()
    with tempfile.TemporaryDirectory(prefix="mipsec-unit-") as d:
        code, out = verify(unit, os.path.abspath(args.mipsec), d)
        checks.check("systemd-analyze verify: exit 0, no warning", code == 0 and out == "", out)
        code, out = verify(unit.replace("ProtectHome=yes", "ProtectHomes=yes"), os.path.abspath(args.mipsec), d)
        checks.check("... and a misspelt key is reported", "ProtectHomes" in out, out)
    settings = [line.strip() for line in unit.splitlines() if "=" in line and not line.startswith("#")]
    for wanted in ("Type=notify", "NotifyAccess=main", "RuntimeDirectory=mipsec", "StateDirectory=mipsec", "ProtectSystem=strict", "ReadWritePaths=/run/mipsec",
                   "PrivateTmp=yes", "ProtectHome=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_SETPCAP",
                   "RestrictAddressFamilies=AF_INET AF_NETLINK AF_UNIX AF_PACKET", "ExecStart=/usr/bin/mipsec run /etc/mipsec/%i.json"):
        checks.check(f"the unit sets {wanted}", wanted in settings)
    checks.check("the unit has a watchdog", any(s.startswith("WatchdogSec=") and s != "WatchdogSec=0" for s in settings))
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
