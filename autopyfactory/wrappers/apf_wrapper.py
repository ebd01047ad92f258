"""Python stage of the pilot wrapper: choose the pilot plugin, run it, report how it ended.

Runs on worker nodes with whatever python3 they have (3.6 or newer): no newer
syntax here or in the plugins.

Options (APF 2.4 names): --wrappervo --wrapperwmsqueue --wrapperbatchqueue
--wrappergrid --wrapperpurpose --wrapperserverurl --wrapperplugin
--wrapperpilottype --wrapperloglevel --wrappermode --wrappertarballurl
--wrapperspecialcmd, and for the ``panda`` plugin --wrapperjobtype
--wrapperresourcetype --wrapperpiloturl --wrapperpilotversion; arguments after ``--`` are handed to the plugin (the
``exec`` plugin runs them). Every other argument (APF 2.4's pass-through
arguments for the pilot, e.g. ``-s SITE -w generic -u managed``) reaches the
pilot unchanged and in order: ``ctx.passthrough``; ``exec`` appends them to
the pilot command.

Pilot plugins are drop-in files: ``<wrapper dir>/plugins/*.py`` and every
``*.py`` in the directories of ``$APF_WRAPPER_PLUGINS`` (colon separated,
searched first, so a site can override a built-in); a pilot sent with its
plugins as loose files (HTCondor) finds them beside this file, named by
``$APF_WRAPPER_PLUGIN_FILES`` (colon separated). A plugin module has::

    NAME = "myvo"                 # what --wrapperplugin names
    VOS = ("myvo",)               # optional: chosen for these --wrappervo when no --wrapperplugin
    def run(ctx):                 # ctx.options, ctx.args, ctx.log, ctx.run_payload(argv, timeout)
        return "ok", 0            # (status word, exit code)

Selection: --wrapperplugin if given; else the plugin whose VOS contains
--wrappervo (a built-in one that sets ``YIELDS_TO_COMMAND``, ``panda`` for
ATLAS, only when no pilot command is given); else, for a --wrappervo no plugin claims: ``exec`` (said so on
stderr) when there is a pilot command (after ``--`` or in ``$APF_PILOT``),
``local`` when there is a Local WMS spool (--wrapperserverurl file://DIR or
$APF_WMS_SPOOLDIR), else a clear message and exit 70; with no VO, ``local``.
--wrappermode=test chooses and reports, runs nothing.

Exit codes: 0 ok; 66 bad options; 67 bad work item; 68 payload could not
run; 70 unknown plugin; 71 plugin crashed; 72 broken plugin file; 73 the
PanDA pilot ended without a job and without the server saying it had none;
74 no PanDA pilot (tarball not fetched or without pilot.py); 75 empty: the
pilot found no work (the factory counts it apart from done and fault); 143
killed by SIGTERM; otherwise the payload's own exit code. The last line is always
``APF-WRAPPER-END status=<word> exit=<code>``.
"""

import argparse
import glob
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time

OPTIONS = ["vo", "wmsqueue", "batchqueue", "grid", "purpose", "serverurl", "plugin",
           "pilottype", "loglevel", "mode", "tarballurl", "specialcmd",
           "jobtype", "resourcetype", "piloturl", "pilotversion"]  # the last four: the panda plugin's
MODES = ("normal", "test")
DEFAULT_PLUGIN = "local"
VO_FALLBACK = "exec"  # a VO no plugin claims: its pilot runs as given (APF 2.4 sites)
KILL_GRACE = 30.0  # seconds a signalled payload gets before SIGKILL

log = logging.getLogger("apf-wrapper")


def parse(argv):
    """The --wrapper* options, what follows ``--``, and every other argument in order (pass-through)."""
    if "--" in argv:
        cut = argv.index("--")
        argv, rest = argv[:cut], argv[cut + 1:]
    else:
        rest = []
    ours, passthrough = [], []
    words = iter(argv)
    for word in words:
        if not word.startswith("--wrapper"):
            passthrough.append(word)
            continue
        ours.append(word)
        if "=" not in word:  # --wrapperX VALUE
            ours.append(next(words, ""))
    p = argparse.ArgumentParser(prog="apf-wrapper", allow_abbrev=False)
    for name in OPTIONS:
        p.add_argument("--wrapper" + name, dest=name, default="")
    options, unknown = p.parse_known_args(ours)
    options.extra = rest
    options.passthrough = passthrough
    options.unknown = unknown
    return options


def end(status, code):
    print(f"APF-WRAPPER-END status={status} exit={code:d}", flush=True)
    return code


class Killed(Exception):
    """The batch system asked the pilot to stop (SIGTERM/SIGINT)."""


class Context:
    """What a pilot plugin gets: the options, a logger, and a way to run its payload."""

    def __init__(self, options):
        self.options = options
        self.args = options.extra
        self.passthrough = options.passthrough
        self.log = log
        self.child = None
        self.killed = None

    def run_payload(self, argv, timeout=None):
        """Run ``argv`` (a list, no shell); SIGTERM to the wrapper is passed on to it. Returns its exit code."""
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"payload must be a non-empty list of strings, got {argv!r}")
        if self.killed:
            raise Killed()
        self.child = subprocess.Popen(argv)
        try:
            code = self.child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.log.error("payload %s ran longer than %ss: killing it", argv[0], timeout)
            self.child.kill()
            self.child.wait()
            raise
        finally:
            self.child = None
        if self.killed:
            raise Killed()
        return code

    def on_signal(self, signum, frame):
        """Pass the signal on to the payload and let it end; kill it if it has not after a grace period."""
        self.killed = signum
        child = self.child
        if child is None or child.poll() is not None:
            raise Killed()
        child.send_signal(signum)
        timer = threading.Timer(KILL_GRACE, lambda: child.poll() is None and child.kill())
        timer.daemon = True
        timer.start()


def plugin_files():
    """Every plugin file, in search order: $APF_WRAPPER_PLUGINS, <here>/plugins, then the files named by
    $APF_WRAPPER_PLUGIN_FILES beside this one (the built-in plugins sent along with a grid pilot)."""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [d for d in os.environ.get("APF_WRAPPER_PLUGINS", "").split(":") if d]
    dirs.append(os.path.join(here, "plugins"))
    files = []
    for directory in dirs:
        files.extend(p for p in sorted(glob.glob(os.path.join(directory, "*.py")))
                     if not os.path.basename(p).startswith("_"))
    for name in os.environ.get("APF_WRAPPER_PLUGIN_FILES", "").split(":"):
        path = os.path.join(here, os.path.basename(name))
        if name.endswith(".py") and os.path.isfile(path) and path != os.path.abspath(__file__):
            files.append(path)
    return files


def load_plugins():
    """{name: module} of every plugin file; the first one found wins. Broken files are reported, not fatal."""
    plugins, broken = {}, {}
    for path in plugin_files():
        stem = os.path.splitext(os.path.basename(path))[0]
        module_name = f"apf_wrapper_plugin_{len(plugins) + len(broken)}_{stem}"
        try:
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            name = str(module.NAME).lower()
            if not callable(getattr(module, "run", None)):
                raise AttributeError("no run(ctx) function")
        except Exception as exc:
            broken[path] = f"{type(exc).__name__}: {exc}"
            continue
        plugins.setdefault(name, module)
    return plugins, broken


def choose(options, plugins):
    """Name of the plugin to run, or None."""
    if options.plugin:
        name = options.plugin.lower()
        return name if name in plugins else None
    vo = options.vo.lower()
    if vo:
        command = bool(options.extra or os.environ.get("APF_PILOT"))
        for name, module in sorted(plugins.items()):
            if vo in [v.lower() for v in getattr(module, "VOS", ())]:
                if command and getattr(module, "YIELDS_TO_COMMAND", False):
                    break  # the site gave its own pilot command: run it as given
                return name
        if command:
            return VO_FALLBACK if VO_FALLBACK in plugins else None
        if not (options.serverurl.startswith("file://") or os.environ.get("APF_WMS_SPOOLDIR")):
            return None  # neither a pilot to run nor a Local WMS spool: said so, never a silent fallback
    return DEFAULT_PLUGIN if DEFAULT_PLUGIN in plugins else None


def main(argv):
    options = parse(argv)
    level = (options.loglevel or "info").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO), stream=sys.stderr,
                        format="%(asctime)s apf-wrapper %(levelname)s: %(message)s")
    mode = (options.mode or "normal").lower()
    if mode not in MODES:
        log.error("unknown --wrappermode %r (known: %s)", options.mode, ", ".join(MODES))
        return end("badoptions", 66)
    if options.unknown:
        log.warning("ignoring unknown --wrapper options: %s", " ".join(options.unknown))
    plugins, broken = load_plugins()
    for path, why in sorted(broken.items()):
        log.warning("pilot plugin %s not usable: %s", path, why)
    name = choose(options, plugins)
    if name is None:
        known = ", ".join(sorted(plugins)) or "none"
        if options.plugin:
            print(f"unknown pilot plugin {options.plugin} (known: {known})", file=sys.stderr)
        else:
            print(f"no pilot plugin for VO {options.vo!r} (known: {known}) and no pilot command: give the "
                  "pilot command after -- in executable.arguments or in APF_PILOT (it then runs as given, "
                  "with the pass-through arguments), name a plugin with --wrapperplugin, or add one "
                  f"with VOS = ({options.vo.lower()!r},)", file=sys.stderr)
        return end("badplugin", 70)
    module = plugins[name]
    if options.tarballurl or options.specialcmd:
        log.warning("--wrappertarballurl and --wrapperspecialcmd are APF 2.4's: nothing is downloaded "
                    "or run for them (the panda plugin fetches the PanDA pilot from --wrapperpiloturl; "
                    "the exec pilot command can do the rest)")
    if name == VO_FALLBACK and not options.plugin:
        print(f"a pilot command is given for VO {options.vo!r} (pilot plugins: {', '.join(sorted(plugins))}): "
              "running the pilot command as given (exec), with the pass-through arguments",
              file=sys.stderr, flush=True)
    print(f"APF-WRAPPER-PLUGIN name={name} file={module.__file__} vo={options.vo} wmsqueue={options.wmsqueue} batchqueue={options.batchqueue} mode={mode}", flush=True)
    if mode == "test":
        return end("test", 0)
    ctx = Context(options)
    previous = {s: signal.signal(s, ctx.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    started = time.time()
    try:
        status, code = module.run(ctx)
    except Killed:
        status, code = "killed", 128 + int(ctx.killed or signal.SIGTERM)
    except Exception as exc:
        log.exception("pilot plugin %s crashed", name)
        status, code = "plugincrash", 71
        print(f"pilot plugin {name} crashed: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(f"pilot plugin {name} ended after {time.time() - started:.1f}s", flush=True)
    return end(status, int(code))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
