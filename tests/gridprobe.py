#!/usr/bin/python3
"""What a grid factory does, tried from inside autopyfactory.service (tests/test_systemd_nspawn.py).

``gridprobe.py --serve`` stands for the schedd and munge outside the unit: it answers on the schedd's
shared-port socket, on its TCP port and on munge's socket (one line, "schedd here").

The factory starts this as a pilot of a Local queue, so it runs as the service's user, in the unit's
sandbox (mount namespace, system call filter, capabilities) like condor_submit or sbatch would. It prints
one JSON object (each step: "ok" or what failed) to its stdout, which is the pilot's log. Standard
library only: it runs on the container's python3.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys

CREDENTIALS = "/var/lib/autopyfactory/credentials"
SCHEDD_SOCKET = "/run/lock/condor/daemon_sock/schedd"
MUNGE_SOCKET = "/run/munge/munge.socket.2"
SCHEDD_PORT = 9618
SITE_LOGS = "/home/autopyfactory/factory/logs"  # an APF 2.4 baseLogDir, writable through the site drop-in


def attempt(step, *args) -> str:
    try:
        result = step(*args)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return "ok" if result is None else result


def read(path: str) -> str:
    with open(path) as handle:
        return "ok" if handle.read() else f"{path} is empty"


def write(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"written by pid {os.getpid()} inside the unit\n")


def talk(family: int, address) -> str:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(address)
        sock.sendall(b"hello\n")
        answer = sock.recv(64).decode().strip()
    return "ok" if answer == "schedd here" else f"answer {answer!r}"


def htcondor_bindings() -> str:
    """The bindings the EL9 RPM bundles, as the factory loads them: the config read, a submit description made."""
    code = ("import sys; sys.path[:0] = ['/usr/share/autopyfactory/bundled', '/usr/lib/python3.11/site-packages', "
            "'/usr/lib64/autopyfactory/bundled']; import htcondor2; "
            "cpus, memory = htcondor2.param['DETECTED_CPUS'], htcondor2.param['DETECTED_MEMORY']; "
            "assert int(cpus) >= 1 and int(memory) > 0, (cpus, memory); "
            "print(htcondor2.Submit({'universe': 'grid', 'grid_resource': 'condor ce.example.org ce.example.org:9619',"
            " 'executable': '/bin/true'}))")
    done = subprocess.run(["/usr/bin/python3.11", "-s", "-c", code], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 or "grid_resource = condor ce.example.org" not in done.stdout:
        return f"exit {done.returncode}: {done.stderr.strip()[-300:]}"
    return "ok"


def run_stand_in(command: str) -> str:
    """A stand-in of condor_submit / sbatch: reads the site's client configuration, as the real ones do."""
    done = subprocess.run([command], capture_output=True, text=True, timeout=60)
    return "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-200:]}"


# a child makes the call: with SIGSYS it would die (-31); with EPERM it prints the errno and exits 0
SYSCALL_CHILD = ("import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
                 "r = libc.syscall(int(sys.argv[1]), 0, 0, 0, 0, 0); print(r, ctypes.get_errno())")
FILTERED = {"mount": 165, "reboot": 169, "swapon": 167}


def filtered_call(number: int) -> str:
    child = subprocess.run([sys.executable, "-c", SYSCALL_CHILD, str(number)], capture_output=True, text=True,
                           timeout=60)
    if child.returncode != 0:
        return f"child ended with {child.returncode}"
    result, errno = child.stdout.split()
    import errno as errnos
    return "EPERM" if (result, int(errno)) == ("-1", errnos.EPERM) else f"returned {result}, errno {errno}"


def serve() -> int:
    import selectors
    import socketserver

    class Answer(socketserver.StreamRequestHandler):
        def handle(self):
            self.rfile.readline()
            self.wfile.write(b"schedd here\n")

    servers = [socketserver.TCPServer(("127.0.0.1", SCHEDD_PORT), Answer)]
    for path in (SCHEDD_SOCKET, MUNGE_SOCKET):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        servers.append(socketserver.UnixStreamServer(path, Answer))
        os.chmod(path, 0o777)  # as munge's and condor's sockets are: anyone may connect
    with selectors.DefaultSelector() as selector:
        for server in servers:
            selector.register(server, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                key.fileobj.handle_request()


def main() -> int:
    user = pwd.getpwuid(os.getuid()).pw_name
    with open("/proc/self/cgroup") as handle:
        cgroup = handle.read().strip()
    steps = {
        "user": user,
        "inside the unit": "ok" if "autopyfactory.service" in cgroup else f"cgroup {cgroup}",
        "read a CA in /etc/grid-security/certificates": attempt(read, "/etc/grid-security/certificates/5f2a1e0d.0"),
        "read /etc/grid-security/hostcert.pem": attempt(read, "/etc/grid-security/hostcert.pem"),
        "read /etc/grid-security/hostkey.pem (root's 0400)": attempt(read, "/etc/grid-security/hostkey.pem"),
        "read the host key handed by LoadCredential=": attempt(
            read, "/run/credentials/autopyfactory.service/hostkey.pem"),
        "read /etc/grid-security/robotkey.pem (0400 root, ACL for the user)": attempt(
            read, "/etc/grid-security/robotkey.pem"),
        "write a proxy in the credentials directory": attempt(write, f"{CREDENTIALS}/x509up_probe"),
        "read the site's HTCondor client configuration": attempt(read, "/etc/condor/condor_config"),
        "read the site's Slurm client configuration": attempt(read, "/etc/slurm/slurm.conf"),
        "load the HTCondor bindings (config, submit description)": attempt(htcondor_bindings),
        "run condor_submit": attempt(run_stand_in, "condor_submit"),
        "run sbatch": attempt(run_stand_in, "sbatch"),
        "reach the schedd's socket": attempt(talk, socket.AF_UNIX, SCHEDD_SOCKET),
        "reach the schedd's port": attempt(talk, socket.AF_INET, ("127.0.0.1", SCHEDD_PORT)),
        "reach munge's socket": attempt(talk, socket.AF_UNIX, MUNGE_SOCKET),
        "write a proxy in /tmp": attempt(write, f"/tmp/x509up_u{os.getuid()}"),
        "write a pilot log beside this one": attempt(write, os.path.join(
            os.path.dirname(os.readlink("/proc/self/fd/1")), "probe.log")),
        "write the site's log directory (drop-in)": attempt(write, f"{SITE_LOGS}/probe.log"),
        "write elsewhere in /home": attempt(write, "/home/autopyfactory/probe.log"),
        "write /etc/apf": attempt(write, "/etc/apf/probe.conf"),
    }
    for name, number in FILTERED.items():
        steps[f"filtered call {name}"] = attempt(filtered_call, number)
    print(json.dumps(steps, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(serve() if sys.argv[1:] == ["--serve"] else main())
