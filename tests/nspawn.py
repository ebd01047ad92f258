"""A real systemd as PID 1: a Debian 12 root booted with ``systemd-nspawn --boot`` (tests/services/nspawn.sh).

``booted(root, binds)`` starts the container on a throw-away overlay of the cached root (the root itself
never changes), waits until its systemd has finished booting, and yields a ``Container`` whose ``run``
executes a command inside it (``nsenter`` into every namespace of its PID 1). At the end the container
is halted (SIGTERM to systemd-nspawn) and what nspawn leaves on the host is removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(os.environ.get("APF_NSPAWN_ROOT", "/var/lib/apf-nspawn/bookworm"))
BOOT_TIMEOUT = 180.0
# cgroup v2, or the two hierarchies of a v1 ("hybrid") host that systemd uses
CGROUP_HIERARCHIES = ("/sys/fs/cgroup", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")


def unavailable() -> str:
    """Why this host cannot boot the container at all ('' when it can)."""
    if os.geteuid() != 0:
        return "systemd-nspawn --boot needs root"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup file system on this host"
    return ""


def missing() -> str:
    """What tests/services/nspawn.sh should have installed and did not ('' when all is there)."""
    if not shutil.which("systemd-nspawn"):
        return "systemd-nspawn is missing"
    if not (ROOT / ".apf-nspawn").exists():
        return f"the container root {ROOT} is missing"
    return ""


class Container:
    def __init__(self, leader: int, log: Path):
        self.leader = leader  # the container's PID 1 (systemd), as the host sees it
        self.log = log

    def run(self, *argv: str, input: str | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["nsenter", "-t", str(self.leader), "-a", *argv], input=input, capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stdout[-2000:]}"
                                 f"{done.stderr[-2000:]}")
        return done

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.run("sh", "-c", f'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod {mode} "$1"', "-", path,
                 input=text)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "-p", ",".join(properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", unit, check=False).stdout

    def wait(self, predicate, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in path.read_text().split()]
    except OSError:
        return []


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@contextmanager
def booted(name: str, workdir: Path, binds: dict[str, Path] | None = None) -> Iterator[Container]:
    """Boot the cached root (``--volatile=overlay``) as machine ``name``; ``binds``: container path -> host path."""
    log = workdir / f"nspawn-{name}.log"
    argv = ["systemd-nspawn", "-D", str(ROOT), f"--machine={name}", "--register=no", "--keep-unit",
            "--private-network", "--volatile=overlay", "--console=read-only", "--boot"]
    argv += [f"--bind-ro={host}:{inside}" for inside, host in (binds or {}).items()]
    # a cgroup of its own: with --keep-unit nspawn puts the container under the cgroup it runs in, so
    # two containers started from one cgroup would share it
    groups = [Path(hierarchy) / f"apf-nspawn-{name}" for hierarchy in CGROUP_HIERARCHIES
              if Path(hierarchy, "cgroup.procs").exists()]
    for group in groups:
        group.mkdir(exist_ok=True)

    def enter_own_cgroup() -> None:
        for group in groups:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    with open(log, "w") as out:
        nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=enter_own_cgroup)
    try:
        deadline = time.monotonic() + BOOT_TIMEOUT
        leader = 0
        while not leader:
            if nspawn.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"systemd-nspawn did not start ({nspawn.returncode}): {log.read_text()[-3000:]}")
            time.sleep(0.05)
            # nspawn forks a short-lived helper first: the container's PID 1 is the child running systemd
            leader = next((pid for pid in _children(nspawn.pid) if _command(pid) == "systemd"), 0)
        container = Container(leader, log)
        state = ""
        while state not in ("running", "degraded"):
            if nspawn.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the container did not finish booting in {BOOT_TIMEOUT:.0f}s (nspawn "
                                     f"{nspawn.returncode}, PID 1 {leader}, state {state!r}): {log.read_text()[-2000:]}")
            time.sleep(0.1)
            answer = container.run("systemctl", "is-system-running", check=False, timeout=30)
            state = answer.stdout.strip() or answer.stderr.strip()
        yield container
    finally:
        if nspawn.poll() is None:
            nspawn.send_signal(signal.SIGTERM)  # systemd-nspawn halts the container cleanly
            try:
                nspawn.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(nspawn.pid, signal.SIGKILL)
                nspawn.wait(30)
        # what nspawn leaves on the host: the (empty) cgroups, innermost first, and its propagation directory
        for group in groups:
            for directory, _, _ in sorted(os.walk(group), key=lambda entry: -len(entry[0])):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass
        try:
            os.rmdir(f"/run/systemd/nspawn/propagate/{name}")
        except OSError:
            pass
