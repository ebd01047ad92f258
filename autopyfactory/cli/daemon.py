"""``autopyfactory``: the factory daemon.

Start-up order: validate the config (refuse to start on any error), take the
pidfile lock and open the log file while still root, then detach
(python-daemon: umask, chdir /, new session, privileges dropped to
--runas/factoryUser with its supplementary groups), write the pid, build the
factory and tell the starting process that it is up (so an init script sees
a failed start as a failure).

Signals: SIGTERM/SIGINT stop gracefully (a cycle under way finishes its
submission; threads are joined with a bound; a second signal exits at
once); SIGHUP reloads the configuration; SIGUSR2 reopens the log file
(logrotate), nothing else; SIGUSR1 logs every thread's stack. Under systemd
(Type=notify) it reports READY=1, RELOADING=1 and STOPPING=1 on $NOTIFY_SOCKET,
and logs to the journal without timestamps of its own, each line prefixed with its
syslog priority (``<4>`` for a warning) when stderr is the journal ($JOURNAL_STREAM).
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import logging.handlers
import os
import pwd
import select
import signal
import socket
import sys
import threading
import time

from autopyfactory import __version__, earlysignals, journal, memory
from autopyfactory.earlysignals import EARLY_SIGNALS, early

if __name__ == "__main__":  # python -m autopyfactory.cli.daemon: signals caught before the heavy imports
    earlysignals.catch()

from autopyfactory.config import ConfigError, FactoryConfig, load, placeholders  # noqa: E402

# the factory and all it imports (web server, persistence, ...) are loaded now, before
# --runas drops privileges: the new user may not be able to read the Python installation
from autopyfactory.factory import Factory  # noqa: E402
from autopyfactory.redact import redact, redact_handler  # noqa: E402

DEFAULT_CONF = "/etc/apf/factory.conf"
LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s [%(threadName)s] %(name)s: %(message)s"  # the journal stamps each line
READY_TIMEOUT = 120.0  # seconds the starting process waits for the daemon to come up
STOP_TIMEOUT = 30.0  # bound on joining the queue threads at stop

log = logging.getLogger("autopyfactory")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="autopyfactory", description="AutoPyFactory pilot factory daemon")
    p.add_argument("--conf", default=DEFAULT_CONF, help=f"factory.conf (default {DEFAULT_CONF})")
    p.add_argument("--foreground", action="store_true", help="do not detach")
    p.add_argument("--cycles", type=int, default=None, metavar="N",
                   help="run N cycles of every queue, then exit 0")
    p.add_argument("--runas", default=None, metavar="USER",
                   help="drop privileges to USER (default: factoryUser when started as root)")
    p.add_argument("--log", default="stdout", metavar="PATH|stdout|syslog")
    p.add_argument("--loglevel", default="info", type=str.lower, choices=["debug", "info", "warning", "error"])
    p.add_argument("--pidfile", default=None, metavar="PATH",
                   help="pidfile, locked while the factory runs (default: autopyfactory.pid beside the "
                        "persistence store, so that two factories on one configuration refuse)")
    p.add_argument("--version", action="version", version=f"autopyfactory {__version__}")
    return p


# ---------------------------------------------------------------- logging


def setup_logging(target: str, level: str, owner: pwd.struct_passwd | None = None) -> logging.Handler:
    """Log to a file (reopened when moved away or on SIGHUP), stdout or syslog."""
    if target == "stdout" and journal.stderr_is_journal():
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.set_name(journal.HANDLER_NAME)  # apf log asks journalctl (autopyfactory/journal.py)
        handler.setFormatter(journal.JournalFormatter(JOURNAL_FORMAT))
    elif target == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    elif target == "syslog":
        # APF_SYSLOG_SOCKET: another socket than /dev/log (containers, tests)
        address = os.environ.get("APF_SYSLOG_SOCKET", "/dev/log")
        if not os.path.exists(address):
            # SysLogHandler would drop every message silently
            raise FileNotFoundError(2, f"no syslog socket {address}")
        handler = logging.handlers.SysLogHandler(address=address)
        handler.setFormatter(logging.Formatter("autopyfactory[%(process)d]: %(levelname)s [%(threadName)s] "
                                               "%(name)s: %(message)s"))
    else:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(target)
        if owner is not None and os.geteuid() == 0:
            # the daemon reopens it after dropping privileges
            os.chown(target, owner.pw_uid, owner.pw_gid)
    if handler.formatter is None:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    redact_handler(handler)  # no secret in any log line (autopyfactory/redact.py)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler


def reopen_logs() -> None:
    """Close and reopen every log file (after logrotate moved it away)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
                if isinstance(handler, logging.handlers.WatchedFileHandler):
                    handler._statstream()
            finally:
                handler.release()
    log.info("log files reopened")


def notify(state: str) -> None:
    """Tell systemd (Type=notify) our state on $NOTIFY_SOCKET; nothing when it is not set."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("cannot notify systemd (%s): %s", address, exc)


def log_uncaught() -> None:
    """Exceptions nobody catches go to the log (stderr may be /dev/null in a daemon)."""
    def thread_hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "?"
        log.critical("uncaught exception in thread %s", name,
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    threading.excepthook = thread_hook


# ---------------------------------------------------------------- pidfile


class AlreadyRunning(Exception):
    def __init__(self, path: str, pid: int | None):
        self.path, self.pid = path, pid
        super().__init__(f"another autopyfactory (pid {pid or '?'}) holds {path}: not starting")


def default_pidfile(config: FactoryConfig) -> str:
    """``autopyfactory.pid`` beside the persistence store: one factory per configuration and store."""
    return os.path.join(os.path.dirname(os.path.abspath(config.persistence_path)), "autopyfactory.pid")


class PidFile:
    """A pidfile held with an flock for the life of the daemon.

    The lock, and only the lock, says an instance is alive: a pidfile left by
    a crashed factory is taken over (it is stale, whatever process now has
    that pid), a locked one makes the new instance refuse to start. The descriptor is opened (as
    root) before detaching and survives the forks of daemonization.
    """

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.fd: int | None = None
        self.stale_pid: int | None = None

    @staticmethod
    def _read(fd: int) -> int | None:
        try:
            return int(os.pread(fd, 64, 0).decode().strip() or 0) or None
        except (ValueError, OSError):
            return None

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = self._read(fd)
            os.close(fd)
            raise AlreadyRunning(self.path, pid) from None
        old = self._read(fd)
        self.stale_pid = old if old != os.getpid() else None
        self.fd = fd

    def write(self, pid: int | None = None) -> None:
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid or os.getpid()}\n".encode(), 0)
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if self._read(self.fd) == os.getpid():
                try:
                    os.unlink(self.path)
                except OSError:  # no longer allowed to (privileges dropped): leave it empty
                    os.ftruncate(self.fd, 0)
        finally:
            os.close(self.fd)
            self.fd = None


# ---------------------------------------------------------------- privileges


def resolve_user(args: argparse.Namespace, config: FactoryConfig) -> pwd.struct_passwd | None:
    """The user to run as: --runas, else factoryUser when started as root; None to stay as we are."""
    name = args.runas or (config.get("factoryUser") if os.geteuid() == 0 else "")
    if not name:
        return None
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"no such user {name!r} (--runas / factoryUser)") from None
    if user.pw_uid == os.geteuid():
        return None
    if os.geteuid() != 0:
        raise ValueError(f"cannot run as {name}: only root can change user (running as uid {os.geteuid()})")
    return user


def prepare_dirs(config: FactoryConfig, user: pwd.struct_passwd) -> None:
    """Create (as root) the directories the factory writes that do not exist yet, owned by ``user``.

    Existing directories keep their owner: that is the operator's choice.
    """
    for path in (config.get("baseLogDir"), os.path.dirname(config.persistence_path)):
        if not path or os.path.exists(path):
            continue
        try:
            os.makedirs(path, mode=0o755)
            os.chown(path, user.pw_uid, user.pw_gid)
        except OSError as exc:
            log.warning("cannot create %s for %s: %s", path, user.pw_name, exc.strerror or exc)


def drop_privileges(user: pwd.struct_passwd) -> None:
    """Become ``user`` with its primary and supplementary groups, for good (no way back to root)."""
    os.initgroups(user.pw_name, user.pw_gid)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)


# ---------------------------------------------------------------- running


# Signals that arrive before the factory can act on them (reading the configuration, loading
# plugins, detaching): remembered by the first handlers installed, then acted on by run().
def catch_early_signals() -> None:
    """A SIGHUP (systemctl reload) right after start must not kill the daemon (autopyfactory/start.py).

    Signals blocked until now (across ``memory.without_thread_caches``) arrive here.
    """
    earlysignals.catch()


def run(args: argparse.Namespace, config: FactoryConfig, ready=None) -> int:
    """Build and run the factory in this process until stopped."""
    log_uncaught()
    memory.limit_arenas()  # before the first queue thread
    for warning in config.warnings:
        log.warning("config: %s", warning)
    factory = Factory(config)  # with the plugins the config was validated with
    reload = factory.reload

    def reload_and_notify(*args, **kwargs):
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            return reload(*args, **kwargs)
        finally:
            notify("READY=1")

    factory.reload = reload_and_notify
    stopping = {"count": 0}

    def on_stop(signum, frame):
        stopping["count"] += 1
        if stopping["count"] > 1:
            log.warning("signal %s again: exiting now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(1)
        log.info("signal %s: stopping (cycles under way finish first)", signal.Signals(signum).name)
        notify("STOPPING=1")
        factory.request_stop()

    def on_hangup(signum, frame):
        factory.request_reload()

    def on_usr1(signum, frame):
        factory.request_dump()

    def on_usr2(signum, frame):
        # not in the handler itself: the interrupted thread may hold a log handler's lock
        threading.Thread(target=reopen_logs, name="reopen-logs", daemon=True).start()

    handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGHUP: on_hangup,
                signal.SIGUSR1: on_usr1, signal.SIGUSR2: on_usr2}
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    if {signal.SIGTERM, signal.SIGINT} & set(early):
        log.info("stopped while starting: not starting the queues")
        return 0
    try:
        factory.start(cycles=args.cycles)
    except Exception:
        log.exception("factory failed to start")
        factory.stop(5)
        raise
    for signum in dict.fromkeys(early):  # each remembered signal once, now that the factory can act on it
        log.info("signal %s came while starting: acting on it now", signal.Signals(signum).name)
        handlers[signum](signum, None)
    early.clear()
    if ready is not None:
        ready()
    notify(f"READY=1\nSTATUS=running {len(factory.queues)} queue(s)\nMAINPID={os.getpid()}")
    try:
        factory.wait()
    finally:
        factory.stop(STOP_TIMEOUT)
    return 0


def _wait_for_daemon(read_fd: int, child: int) -> int:
    """In the starting process: wait for the daemon's word, exit 0 only if it came up."""
    chunks = []
    deadline = time.time() + READY_TIMEOUT
    while time.time() < deadline:
        readable, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.time()))
        if not readable:
            break
        data = os.read(read_fd, 4096)
        if not data:
            break
        chunks.append(data)
        if b"\n" in data:
            break
    os.close(read_fd)
    try:
        os.waitpid(child, 0)  # the intermediate process exits as soon as it has forked
    except ChildProcessError:
        pass
    message = b"".join(chunks).decode(errors="replace").strip()
    if message.startswith("ready"):
        print(f"autopyfactory started ({message})")
        return 0
    if not message:
        message = ("the daemon did not report within "
                   f"{READY_TIMEOUT:.0f}s or exited during start-up; see its log")
    print(f"autopyfactory: failed to start: {message}", file=sys.stderr)
    return 1


def daemonize(args: argparse.Namespace, config: FactoryConfig, user: pwd.struct_passwd | None,
              pidfile: PidFile | None, handler: logging.Handler) -> int:
    import daemon  # python-daemon

    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child > 0:
        os.close(write_fd)
        return _wait_for_daemon(read_fd, child)
    os.close(read_fd)
    preserve = [write_fd]
    if pidfile is not None and pidfile.fd is not None:
        preserve.append(pidfile.fd)
    stream = getattr(handler, "stream", None)
    if stream is not None and hasattr(stream, "fileno"):
        try:
            preserve.append(stream.fileno())
        except (OSError, ValueError):
            pass
    to_stdout = args.log == "stdout"
    # python-daemon 3.1's initgroups=True sets the supplementary
    # groups but not the primary gid (the daemon kept gid 0), so we change owner
    # ourselves (initgroups, setgid, setuid) right before it; it then only confirms them.
    context = daemon.DaemonContext(
        working_directory="/",
        umask=0o022,
        uid=user.pw_uid if user else os.getuid(),
        gid=user.pw_gid if user else os.getgid(),
        initgroups=False,
        detach_process=True,
        files_preserve=preserve,
        stdout=sys.stdout if to_stdout else None,
        stderr=sys.stderr if to_stdout else None,
        signal_map={signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None},
    )
    code = 1
    try:
        try:
            if user is not None:
                drop_privileges(user)
            context.open()
            if args.log == "syslog":
                setup_logging("syslog", args.loglevel)
            if pidfile is not None:
                pidfile.write()
        except Exception as exc:
            os.write(write_fd, f"error: {type(exc).__name__}: {exc}\n".encode())
            raise

        def ready() -> None:
            os.write(write_fd, f"ready pid={os.getpid()}\n".encode())
            os.close(write_fd)

        log.info("autopyfactory %s daemon started, pid %d, user %s", __version__, os.getpid(),
                 pwd.getpwuid(os.getuid()).pw_name)
        code = run(args, config, ready)
    except Exception as exc:
        log.exception("daemon failed")
        try:
            os.write(write_fd, f"error: {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    finally:
        if pidfile is not None:
            pidfile.release()
        logging.shutdown()
        os._exit(code)
    return code  # not reached


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # run as the program: once more without glibc's thread caches (autopyfactory/memory.py)
        signal.pthread_sigmask(signal.SIG_BLOCK, EARLY_SIGNALS)  # held, not lost, across it
        for signum in dict.fromkeys(early):  # those caught already: pending again, so they outlive it too
            os.kill(os.getpid(), signum)
        early.clear()
        memory.without_thread_caches()
    catch_early_signals()
    args = parser().parse_args(argv)
    try:
        config = load(args.conf, partial=True)
    except ConfigError as exc:
        print(f"autopyfactory: refusing to start, {len(exc.problems)} problem(s) in the configuration:",
              file=sys.stderr)
        for problem in exc.problems:
            print(redact(str(problem)), file=sys.stderr)
        for warning in exc.warnings:
            print(redact(f"warning: {warning}"), file=sys.stderr)
        return 2
    for problem in placeholders(config)[:1]:
        print(f"autopyfactory: refusing to start: {problem}", file=sys.stderr)
        return 2
    for name, problems in config.invalid.items():  # the others start; the factory shows these as critical
        print(f"autopyfactory: queue {name} will not start, {len(problems)} problem(s) in its section:",
              file=sys.stderr)
        for problem in problems:
            print(problem, file=sys.stderr)
    try:
        user = resolve_user(args, config)
    except ValueError as exc:
        print(f"autopyfactory: refusing to start: {exc}", file=sys.stderr)
        return 2
    pidfile = PidFile(args.pidfile or default_pidfile(config))
    try:
        pidfile.acquire()
    except AlreadyRunning as exc:
        print(f"autopyfactory: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"autopyfactory: cannot open pidfile {pidfile.path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    try:
        # a daemon connects to syslog after detaching (the socket would not survive it)
        handler = setup_logging(args.log if (args.foreground or args.log != "syslog") else "stdout",
                                args.loglevel, user)
    except OSError as exc:
        print(f"autopyfactory: cannot log to {args.log}: {exc.strerror or exc}", file=sys.stderr)
        if pidfile is not None:
            pidfile.release()
        return 1
    if user is not None:
        prepare_dirs(config, user)
    if pidfile is not None and pidfile.stale_pid:
        log.warning("pidfile %s named pid %d, which holds no lock on it: taking it over", pidfile.path,
                    pidfile.stale_pid)
    if not args.foreground:
        return daemonize(args, config, user, pidfile, handler)
    try:
        if user is not None:
            drop_privileges(user)
        if pidfile is not None:
            pidfile.write()
        return run(args, config)
    finally:
        if pidfile is not None:
            pidfile.release()


if __name__ == "__main__":
    sys.exit(main())
