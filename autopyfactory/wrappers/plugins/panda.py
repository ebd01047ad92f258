"""Pilot plugin ``panda``: fetch the PanDA pilot and run it, as ATLAS factories do.

Chosen by ``--wrapperplugin=panda``, or by ``--wrappervo=ATLAS`` when no pilot
command is given (a command after ``--`` or in ``$APF_PILOT`` is run as given,
as before). It downloads the pilot tarball (``--wrapperpiloturl``, default
``DEFAULT_PILOT_URL``, the one ATLAS pilot wrappers use; ``{version}`` in it
is replaced by ``--wrapperpilotversion``, which must then match the
tarball's ``PILOTVERSION``), unpacks it safely into a fresh directory, finds
``pilot.py`` (at the top or one folder down, as in the PanDA cache's
``pilot3.tar.gz`` and PyPI's ``panda-pilot`` sdist) and runs it with the
python running the wrapper::

    pilot.py -q QUEUE -r QUEUE -s QUEUE -j JOBTYPE -i PILOTTYPE --pilot-user USER -w generic
             --url https://pandaserver.cern.ch -p 25443 [--resource-type TYPE] PASS-THROUGH...

QUEUE is ``--wrapperwmsqueue`` (the PanDA queue, also its resource and site,
as ATLAS names them); JOBTYPE ``--wrapperjobtype`` (managed); PILOTTYPE
``--wrapperpilottype`` (PR); USER ATLAS for the ATLAS VO, else generic;
``--wrapperresourcetype`` (SCORE, MCORE, ...) when given. The wrapper's
pass-through arguments come last, so the queue's own pilot options in
``executable.arguments`` win (another server: ``--url https://host -p PORT``).
APF 2.4's ``--wrappertarballurl`` (its wrapper's own tarball) and
``--wrapperserverurl`` (its pilot code cache) are not used.

How the pilot ended comes from the pilot's own report, not its exit code (a
pilot that found no job exits 0 like one that ran a job): the PanDA ids it
wrote to ``pandaIDs.out`` (in ``$PANDA_PILOT_SOURCE``) and the server's answers
in its log (copied to our output as it runs):

- exit 0 with job ids: ``ok`` (done), exit 0;
- exit 0, no job, and the server said it had none (``no jobs in PanDA``,
  StatusCode 20): ``empty``, exit ``EMPTY_EXIT`` (75, EX_TEMPFAIL: no work
  now), which the factory counts apart from done and fault;
- exit 0, no job and no such answer (the server never answered, say): ``pilotnojob``, exit 73;
- any other exit: ``pilotfailed`` with the pilot's exit code;
- the tarball cannot be fetched or has no pilot.py (or not the version
  asked for): ``nopilot``, exit 74.

Run as root, the pilot kills every root process whose parent is PID 1 when it
cleans up (the machine's services): as root it is always started with
``PILOT_NOKILL=1``.
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.parse
import urllib.request

NAME = "panda"
VOS = ("atlas",)
YIELDS_TO_COMMAND = True  # a pilot command given for the VO is run as given (exec), not this
DEFAULT_PILOT_URL = "http://pandaserver.cern.ch:25085/cache/pilot/pilot3.tar.gz"
DEFAULT_SERVER = ["--url", "https://pandaserver.cern.ch", "-p", "25443"]
EMPTY_EXIT = 75
NOJOB_EXIT = 73
NOPILOT_EXIT = 74
FETCH_TIMEOUT = 300.0
MAX_TARBALL = 200 * 1024 * 1024
JOBID_FILE = "pandaIDs.out"
# what the server answers a pilot when it has no job (getJob StatusCode 20) as the pilot logs it
NO_JOB = re.compile(r"no jobs in PanDA|StatusCode['\"]?\s*[:=]\s*['\"]?20\b|'StatusCode': '20'")


class NoPilot(Exception):
    """The pilot cannot be fetched or unpacked."""


def fetch(url, target, log):
    """Download ``url`` (http, https, file) into ``target``, at most MAX_TARBALL bytes."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise NoPilot(f"pilot tarball URL {url!r}: only http, https and file URLs")
    context = None
    if scheme == "https":
        import ssl
        context = ssl.create_default_context(capath=os.environ.get("X509_CERT_DIR") or None)
    log.info("fetching the PanDA pilot from %s", url)
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT, context=context) as answer, \
                open(target, "wb") as out:
            size = 0
            while True:
                block = answer.read(1 << 16)
                if not block:
                    break
                size += len(block)
                if size > MAX_TARBALL:
                    raise NoPilot(f"pilot tarball {url} is larger than {MAX_TARBALL} bytes")
                out.write(block)
    except (OSError, ValueError) as exc:
        raise NoPilot(f"cannot fetch the pilot tarball {url}: {exc}") from None


def unpack(tarball, directory):
    """Unpack regular files and folders only, none outside ``directory``; the folder holding pilot.py."""
    root = os.path.realpath(directory)
    try:
        with tarfile.open(tarball) as archive:
            for member in archive.getmembers():
                path = os.path.realpath(os.path.join(root, member.name))
                if not (member.isfile() or member.isdir()) or not path.startswith(root + os.sep):
                    continue  # links, devices and paths leaving the folder are left out
                member.mode = (member.mode | 0o600) & 0o755
                archive.extract(member, root, set_attrs=False)
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise NoPilot(f"cannot unpack the pilot tarball: {exc}") from None
    candidates = [root] + sorted(os.path.join(root, n) for n in os.listdir(root))
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "pilot.py")):
            return candidate
    raise NoPilot("no pilot.py in the pilot tarball (looked at its top and one folder down)")


def pilot_arguments(options):
    queue = options.wmsqueue
    vo = (options.vo or "").lower()
    argv = ["-q", queue, "-r", queue, "-s", queue, "-j", options.jobtype or "managed",
            "-i", options.pilottype or "PR", "--pilot-user", "ATLAS" if vo == "atlas" else "generic",
            "-w", "generic"] + DEFAULT_SERVER
    if options.resourcetype:
        argv += ["--resource-type", options.resourcetype]
    return argv


def job_ids(source):
    try:
        with open(os.path.join(source, JOBID_FILE)) as handle:
            return [line.strip() for line in handle if line.strip()]
    except OSError:
        return []


def run_pilot(ctx, argv, env, cwd):
    """Run the pilot, copying its output to ours; (exit code, True if the server said it had no job)."""
    if ctx.killed:
        return 128 + int(ctx.killed), False
    said_none = [False]
    child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ctx.child = child

    def copy():
        for raw in iter(child.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            if not said_none[0] and NO_JOB.search(line):
                said_none[0] = True
            sys.stdout.write(line)
            sys.stdout.flush()

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    try:
        code = child.wait()
    finally:
        reader.join(30)
        ctx.child = None
    return code, said_none[0]


def run(ctx):
    options = ctx.options
    if not options.wmsqueue:
        ctx.log.error("the PanDA pilot needs --wrapperwmsqueue (the PanDA queue)")
        return "badoptions", 66
    argv = pilot_arguments(options)
    url = options.piloturl or DEFAULT_PILOT_URL
    if "{version}" in url:
        if not options.pilotversion:
            ctx.log.error("pilot tarball URL %s names {version}: give --wrapperpilotversion", url)
            return "badoptions", 66
        url = url.replace("{version}", options.pilotversion)
    work = tempfile.mkdtemp(prefix="apf-panda-pilot-", dir=os.environ.get("TMPDIR") or os.getcwd())
    try:
        try:
            tarball = os.path.join(work, "pilot.tar.gz")
            fetch(url, tarball, ctx.log)
            source = unpack(tarball, os.path.join(work, "src"))
        except NoPilot as exc:
            print(f"APF-PANDA pilot=none reason={exc}", flush=True)
            ctx.log.error("%s", exc)
            return "nopilot", NOPILOT_EXIT
        version = ""
        try:
            with open(os.path.join(source, "PILOTVERSION")) as handle:
                version = handle.read().strip()
        except OSError:
            pass
        if options.pilotversion and version and version != options.pilotversion:
            ctx.log.error("the pilot tarball %s holds pilot %s, not the %s asked for", url, version,
                          options.pilotversion)
            return "nopilot", NOPILOT_EXIT
        env = dict(os.environ)
        env["PANDA_PILOT_SOURCE"] = source  # where the pilot writes the ids of the jobs it got
        if os.geteuid() == 0:
            env["PILOT_NOKILL"] = "1"  # else its cleanup kills the machine's root services
            ctx.log.warning("running the PanDA pilot as root (with PILOT_NOKILL=1)")
        command = [sys.executable, os.path.join(source, "pilot.py")] + argv + list(ctx.passthrough)
        print(f"APF-PANDA pilot={url} version={version or 'unknown'} queue={options.wmsqueue}", flush=True)
        try:
            code, said_none = run_pilot(ctx, command, env, source)
        except OSError as exc:
            ctx.log.error("cannot run the PanDA pilot: %s", exc)
            return "cannotrun", 68
        ids = job_ids(source)
        print(f"APF-PANDA exit={code} jobs={','.join(ids) or 'none'} server_said_no_job={said_none}", flush=True)
        if ctx.killed:
            return "killed", 128 + int(ctx.killed)
        if code != 0:
            return "pilotfailed", code
        if ids:
            return "ok", 0
        if said_none:
            return "empty", EMPTY_EXIT
        ctx.log.error("the PanDA pilot ended without a job and without the server saying it had none")
        return "pilotnojob", NOJOB_EXIT
    finally:
        shutil.rmtree(work, ignore_errors=True)
