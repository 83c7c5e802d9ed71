# SPDX-License-Identifier: MIT
"""The Debian package, installed and removed for real with dpkg, without touching this machine.

Method: the test unshares a private mount namespace, mounts an overlay whose lower layer is
the running system's / and whose upper layer is a tmpfs, and runs dpkg chrooted into it. dpkg
then works on a root that is this machine as it is (its own dpkg database, libraries and
Depends), every write lands in the tmpfs, and everything disappears when the test process
exits — no download, no debootstrap, and no --force option: `dpkg -i`, `-r` and `-P` do exactly
what they would do on a host.

Checks: cpack builds mipsec_<version>_amd64.deb with Depends computed by dpkg-shlibdeps; on a
root where mipsec is unknown and an old configuration already sits in /etc/mipsec, `dpkg -i`
installs binary, man pages, unit, examples and copyright; `mipsec version` matches the
package; `mipsec check` accepts every shipped example and the examples cover every role;
`systemd-analyze verify` accepts the installed unit; `dpkg -r` leaves only conffiles (the
package has none) and the administrator's own file; `dpkg -P` forgets the package; a purge on a
root without local configuration leaves no /etc/mipsec at all.
"""
import argparse
import ctypes
import glob
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
from lab.netns import Checks  # noqa: E402

SKIP = 77
CLONE_NEWNS = 0x00020000
ROLES = {"mip.mobile_node", "mip.home_agent", "mip.foreign_agent", "ipsec.vpn_client", "ipsec.vpn_gateway"}
OLD_CONFIG = '{"name": "old", "tun": {"name": "old0"}, "transport": {"local": "192.0.2.1"}, "pipeline": []}\n'


def run(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r


def build_package(build_dir, out_dir):
    run(["cpack", "-G", "DEB", "--config", os.path.join(build_dir, "CPackConfig.cmake"), "-B", out_dir])
    debs = glob.glob(os.path.join(out_dir, "*.deb"))
    if len(debs) != 1:
        raise RuntimeError(f"cpack made {debs}")
    return debs[0]


class ThrowawayRoot:
    """This machine's / under a tmpfs overlay, in this process's own mount namespace."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        # Nothing mounted from here on propagates back to the host.
        run(["mount", "--make-rprivate", "/"])
        self.base = tempfile.mkdtemp(prefix="mipsec-deb-")
        run(["mount", "-t", "tmpfs", "tmpfs", self.base])
        for d in ("upper", "work", "root"):
            os.mkdir(os.path.join(self.base, d))
        self.path = os.path.join(self.base, "root")
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir=/,upperdir={self.base}/upper,workdir={self.base}/work", self.path])
        run(["mount", "--rbind", "/dev", f"{self.path}/dev"])
        run(["mount", "-t", "proc", "proc", f"{self.path}/proc"])
        run(["mount", "-t", "sysfs", "sysfs", f"{self.path}/sys"])
        # No /run/systemd/system inside: the maintainer scripts see no running systemd.
        run(["mount", "-t", "tmpfs", "tmpfs", f"{self.path}/run"])

    def host_path(self, path):
        return self.path + path

    def run(self, argv, check=False):
        return run(["chroot", self.path, *argv], check=check, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})

    def status(self):
        r = self.run(["dpkg-query", "-W", "-f=${Status}", "mipsec"])
        return r.stdout.strip() if r.returncode == 0 else None


def left_over(root, listed, allowed):
    """Paths the package listed that are still there and should not be: files other than
    `allowed`, and directories that are now empty (dpkg removes its empty directories)."""
    out = []
    for p in listed:
        hp = root.host_path(p)
        if not os.path.lexists(hp) or p in allowed:
            continue
        if os.path.islink(hp) and os.path.isdir(hp):
            continue  # /lib -> usr/lib on a merged-/usr system: the system's, not ours
        if os.path.isdir(hp):
            if not os.listdir(hp):
                out.append(p + "/ (empty)")
        else:
            out.append(p)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIPPED: installing a package with dpkg into an overlay root needs root")
        return SKIP
    for tool in ("cpack", "dpkg-shlibdeps", "chroot", "unshare"):
        if shutil.which(tool) is None:
            print(f"FAIL {tool} is missing (tools/install-deps.sh installs it)")
            return 1
    if run(["dpkg-query", "-W", "mipsec"], check=False).returncode == 0:
        print("SKIPPED: mipsec is installed on this machine; the test wants a root without it")
        return SKIP

    checks = Checks()
    out = tempfile.mkdtemp(prefix="mipsec-cpack-")
    try:
        deb = build_package(args.build_dir, out)
        version = run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()
        checks.check("cpack names the package mipsec_<version>_amd64.deb",
                     os.path.basename(deb) == f"mipsec_{version}_amd64.deb", os.path.basename(deb))
        depends = run(["dpkg-deb", "-f", deb, "Depends"]).stdout.strip()
        checks.check("Depends comes from dpkg-shlibdeps (libc6, libssl3, libsodium23, libstdc++6)",
                     all(f"{lib} (>=" in depends for lib in ("libc6", "libssl3", "libsodium23", "libstdc++6")), depends)
        conffiles = run(["sh", "-c", f"dpkg-deb --ctrl-tarfile '{deb}' | tar -xOf - ./conffiles 2>/dev/null"], check=False).stdout.split()

        root = ThrowawayRoot()
        deb_inside = "/tmp/" + os.path.basename(deb)
        os.makedirs(root.host_path("/tmp"), exist_ok=True)
        shutil.copy(deb, root.host_path(deb_inside))
        checks.check("the throwaway root does not know mipsec before the install", root.status() is None, str(root.status()))

        # A machine with an old configuration: the install must leave it alone.
        os.makedirs(root.host_path("/etc/mipsec"), exist_ok=True)
        with open(root.host_path("/etc/mipsec/old.json"), "w") as f:
            f.write(OLD_CONFIG)
        r = root.run(["dpkg", "-i", deb_inside])
        checks.check("dpkg -i installs the package", r.returncode == 0 and root.status() == "install ok installed", r.stdout + r.stderr)
        listed = root.run(["dpkg-query", "-L", "mipsec"]).stdout.split("\n")
        listed = [p for p in listed if p.startswith("/")]
        for p in ("/usr/bin/mipsec", "/usr/share/man/man1/mipsec.1.gz", "/usr/share/man/man5/mipsec.json.5.gz",
                  "/lib/systemd/system/mipsec@.service", "/usr/share/doc/mipsec/copyright", "/usr/share/doc/mipsec/examples/README"):
            checks.check(f"the package installs {p}", p in listed and os.path.isfile(root.host_path(p)))
        checks.check("the old configuration is untouched by the install", open(root.host_path("/etc/mipsec/old.json")).read() == OLD_CONFIG)

        r = root.run(["mipsec", "version"])
        checks.check("the installed mipsec version matches the package", r.returncode == 0 and r.stdout.strip() == f"mipsec {version}", r.stdout + r.stderr)
        examples = sorted(p for p in listed if p.startswith("/usr/share/doc/mipsec/examples/") and p.endswith(".json"))
        checks.check("five example configurations are shipped", len(examples) == 5, str(examples))
        roles = set()
        for ex in examples:
            r = root.run(["mipsec", "check", ex])
            checks.check(f"mipsec check accepts {os.path.basename(ex)}", r.returncode == 0, r.stdout + r.stderr)
            roles |= {t for t in ROLES if t in r.stdout}
        checks.check("the examples cover every role", roles == ROLES, str(sorted(ROLES - roles)))
        r = root.run(["man", "-P", "cat", "mipsec.json"])
        checks.check("man mipsec.json finds the installed page", r.returncode == 0 and "pipeline" in r.stdout, r.stderr)
        r = root.run(["systemd-analyze", "verify", "/lib/systemd/system/mipsec@.service"])
        checks.check("systemd-analyze verify accepts the installed unit (binary, man pages, every key)",
                     r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr)

        r = root.run(["dpkg", "-r", "mipsec"])
        checks.check("dpkg -r removes it, keeping only its configuration state",
                     r.returncode == 0 and root.status() == "deinstall ok config-files", r.stderr + str(root.status()))
        left = left_over(root, listed, set(conffiles))
        checks.check("after dpkg -r nothing of the package is left but conffiles", left == [], str(left))
        checks.check("after dpkg -r the administrator's configuration is still there", open(root.host_path("/etc/mipsec/old.json")).read() == OLD_CONFIG)
        r = root.run(["dpkg", "-P", "mipsec"])
        checks.check("dpkg -P purges it: dpkg no longer knows the package", r.returncode == 0 and root.status() is None, r.stderr)
        left = left_over(root, listed, set())
        checks.check("after dpkg -P nothing of the package is left", left == [], str(left))
        checks.check("after dpkg -P the administrator's own file is still there (dpkg never owned it)",
                     os.path.exists(root.host_path("/etc/mipsec/old.json")))

        # Without a local configuration, install then purge leaves no trace at all.
        os.remove(root.host_path("/etc/mipsec/old.json"))
        os.rmdir(root.host_path("/etc/mipsec"))
        r = root.run(["dpkg", "-i", deb_inside])
        mode = os.stat(root.host_path("/etc/mipsec")).st_mode & 0o777 if r.returncode == 0 else None
        checks.check("on a root without it, the install creates /etc/mipsec 0750 (configurations hold keys)", mode == 0o750, f"{mode and oct(mode)} {r.stderr}")
        r = root.run(["dpkg", "-P", "mipsec"])
        checks.check("install then purge on a root with no configuration: /etc/mipsec is gone too",
                     r.returncode == 0 and not os.path.exists(root.host_path("/etc/mipsec")), r.stderr)
        checks.check("the host itself was never touched", not os.path.exists("/usr/bin/mipsec")
                     and run(["dpkg-query", "-W", "mipsec"], check=False).returncode != 0)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return checks.finish()


if __name__ == "__main__":
    sys.exit(main())
