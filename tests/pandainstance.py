"""A real PanDA server on 127.0.0.1 for tests: ``panda-server`` 0.8.1 on a throwaway PostgreSQL 15.

Usage, from a test (the ``panda_server`` session fixture, registered in conftest)::

    def test_something(panda_server):
        ids = panda_server.submit("MY_SITE", 3)      # real jobs through /api/v1/job/submit
        panda_server.refresh_stats()                 # what pg_cron does every minute
        panda_server.api                             # https://127.0.0.1:<port>/api/v1
        panda_server.pki / "ca.pem"                  # the test CA (also hashed in pki/cadir)

What it starts, in one temporary directory:

- a PostgreSQL 15 cluster (``initdb`` as ``postgres``, trust authentication,
  listening on 127.0.0.1 only, on a free port) with ``pg_cron`` and
  ``pg_partman`` preloaded, and the official PanDA schema loaded from
  ``$APF_PANDA_SCHEMA/schema/postgres`` (the public repository PanDAWMS/panda-database;
  ``SCHEMA_COMMIT`` is the commit the tests were written against). Without
  that variable every test using the fixture is skipped, saying how to get it;
- the unmodified server (``pandaserver.server.panda:application``) under
  gunicorn, which does TLS itself and asks for a client certificate: a
  test CA signs the server's certificate (127.0.0.1), the pilot's
  (``PILOT_DN``, the production DN of the server's configuration) and a
  user's (``USER_DN``, not production). ``tests/panda_wsgi.py`` gives the
  application what Apache's mod_wsgi and mod_ssl would: the URL path in
  ``SCRIPT_NAME`` and the verified client DN in ``SSL_CLIENT_S_DN``.

``stop_server()``/``start_server()`` stop and start the web server alone
(the database keeps its jobs). ``close()`` stops everything and removes the
directory. Installed by tests/services/panda.sh (PostgreSQL 15 + pg_cron +
pg_partman from Debian, panda-server in ``$APF_PANDA_HOME/venv``, default
/opt/apf-panda).

Facts about the schema and the server that this relies on (checked with
panda-server 0.8.1 and schema 0.1.6 on Debian 12): ``pg_PARTITION.sql`` is
written for pg_partman 5 and Debian has 4.7 (``p_type => 'range'`` becomes
``'native'``); pg_cron jobs need the cluster's address in ``cron.job``; the
submit API needs the site in ``schedconfig_json``; job statistics come from a
summary table that pg_cron refreshes every minute (``refresh_stats`` calls the
procedure at once); a job a pilot finished waits in ``holding`` until the
adder daemon runs (``run_adder`` runs one pass of it); an empty database
answers ``success: false``; the server wants a full ``[logger]`` section in
panda_common.cfg and the dummy adder/setupper plugins.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.waiting import wait_for

PANDA_HOME = Path(os.environ.get("APF_PANDA_HOME", "/opt/apf-panda"))
VENV = PANDA_HOME / "venv"
PGBIN = Path("/usr/lib/postgresql/15/bin")
SCHEMA_REPO = "https://github.com/PanDAWMS/panda-database"
SCHEMA_COMMIT = "d57eeb90fdbd216870f9cabdbfbfeb984cf0dfc1"
PILOT_DN = "/DC=test/CN=testpilot"
USER_DN = "/DC=test/CN=testuser"
PRODUCTION_DNS = "/CN=testpilot"
SCHEMA_FILES = ("PANDA_TABLE", "PANDA_SEQUENCE", "PANDA_FUNCTION", "PANDA_TRIGGER", "PANDA_SCHEDULER_JOBS",
                "PANDAMETA_TABLE", "PANDAMETA_SEQUENCE", "PANDAARCH_TABLE", "PANDABIGMON_TABLE",
                "PANDABIGMON_VIEW", "PANDABIGMON_SEQUENCE", "PANDABIGMON_TRIGGER", "PANDABIGMON_PROCEDURE",
                "DEFT_TABLE")
START_TIMEOUT = 90.0
HERE = Path(__file__).resolve().parent
# job states of PanDA's tables: active ones, and those of jobs that left them
ACTIVE_TABLES = ("jobsdefined4", "jobsactive4", "jobswaiting4")
ENDED_TABLES = ("jobsarchived4",)


def schema_dir() -> Path | None:
    """``$APF_PANDA_SCHEMA/schema/postgres`` when it holds the schema, else None."""
    root = os.environ.get("APF_PANDA_SCHEMA", "")
    path = Path(root) / "schema" / "postgres"
    return path if root and (path / "sqls" / "init_step.sql").is_file() else None


def missing() -> str | None:
    """Why a real PanDA server cannot start here (None: it can)."""
    if schema_dir() is None:
        return ("APF_PANDA_SCHEMA does not name a copy of the PanDA database schema (the folder holding "
                f"schema/postgres/): clone {SCHEMA_REPO} at commit {SCHEMA_COMMIT} and set "
                "APF_PANDA_SCHEMA to it")
    if not (PGBIN / "initdb").exists() or not (VENV / "bin" / "gunicorn").exists():
        return (f"PostgreSQL 15 or panda-server is not installed ({PGBIN}, {VENV}): "
                "run tests/services/panda.sh")
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(argv: list[str], timeout: float = 120.0, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                            **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-2000:]}")
    return result


def openssl(*args: str, cwd: Path) -> None:
    _run(["openssl", *args], cwd=cwd, timeout=60)


def make_pki(directory: Path) -> Path:
    """A test CA (hashed into ``cadir/``), the server's certificate for 127.0.0.1, the pilot's
    and a user's client certificates, and ``proxy.pem`` (pilot certificate + key + CA, mode 0600:
    what a grid proxy file holds)."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/DC=test/CN=APF test CA", cwd=directory)
    (directory / "host.ext").write_text("subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
    (directory / "client.ext").write_text("extendedKeyUsage = clientAuth\n")
    for name, subject in (("host", "/CN=127.0.0.1"), ("pilot", PILOT_DN), ("user", USER_DN)):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subject, cwd=directory)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", "host.ext" if name == "host" else "client.ext",
                cwd=directory)
    cadir = directory / "cadir"
    cadir.mkdir(exist_ok=True)
    shutil.copy(directory / "ca.pem", cadir / "ca.pem")
    subject_hash = _run(["openssl", "x509", "-noout", "-hash", "-in", "ca.pem"], cwd=directory).stdout.strip()
    with contextlib.suppress(FileExistsError):
        os.symlink("ca.pem", cadir / f"{subject_hash}.0")
    proxy = directory / "proxy.pem"
    proxy.write_text("".join((directory / n).read_text() for n in ("pilot.pem", "pilot.key", "ca.pem")))
    proxy.chmod(0o600)
    return directory


SERVER_CFG = """\
[server]
logdir = {logs}
loggername = prod
cache_dir = {logs}/pandacache
native_python = {venv}/bin
native_python32 = {venv}/bin
home_dir_cwd = {home}
backend = postgres
dbhost = 127.0.0.1
dbport = {pgport}
dbuser = panda
dbpasswd = password
dbname = panda_db
nDBConnection = 1
usedbtimeout = True
dbtimeout = 300
dbbridgeverbose = False
dump_sql = False
cursor_dump = False
schemaPANDA = DOMA_PANDA
schemaMETA = DOMA_PANDAMETA
schemaPANDAARCH = DOMA_PANDAARCH
schemaJEDI = DOMA_PANDA
schemaDEFT = DOMA_DEFT
pserverhost = 127.0.0.1
pserverport = {port}
pserverporthttp = {port}
pserverportcache = {port}
pserveralias = 127.0.0.1
keyDir = {home}/keys
certdir = {home}/certs
emailSMTPsrv = localhost
emailSender = panda@localhost
emailLogin = panda
emailPass = unused
entryVerbose = True
nrun_interval = 5
nrun_hosts = 3
nrun_snum = 999
record_statuschange = True
useJEDI = True
adder_plugins = any:pandaserver.dataservice.adder_dummy_plugin:AdderDummyPlugin
setupper_plugins = any:pandaserver.dataservice.setupper_dummy_plugin:SetupperDummyPlugin
token_authType = None
auth_config = {home}/auth/
legacy_token_issuers = None
production_dns = {production_dns}

[daemon]
enable = False
"""

COMMON_CFG = """\
[logger]
loghost = 127.0.0.1
monport-apache = 9
method = GET
encoding = url
monurlprefix = /logger/logger/query
logdir = {logs}
nemitters = 1
migrated = True
log_level = INFO
rotating_policy = none
rotating_backup_count = 1
rotating_max_size = 1024
rotating_interval = 24
"""

# A PanDA queue as the submit API and the pilot's getJob need it (schedconfig_json.data)
SITE = {"type": "production", "status": "online", "cloud": "WORLD", "corecount": 1, "maxrss": 2000,
        "maxtime": 3600, "memory": 2000, "maxwdir": 10000, "mintime": 0, "pledgedcpu": 0,
        "transferringlimit": 0, "catchall": "", "releases": ["ANY"], "validatedreleases": "True",
        "objectstores": [], "vo_name": "wlcg", "capability": "score", "jobseed": "std", "workflow": "pull",
        "ddm": "LOCAL_DISK", "is_cvmfs": False}


class PandaServer:
    """One throwaway PanDA server with its database, in ``directory``."""

    def __init__(self, directory: Path | None = None):
        self.directory = Path(directory or tempfile.mkdtemp(prefix="apf-panda-"))
        self.directory.chmod(0o755)
        self.pgport = free_port()
        self.port = free_port()
        self.pki = self.directory / "pki"
        self.logs = self.directory / "logs"
        self.home = self.directory / "home"
        self.gunicorn: subprocess.Popen | None = None
        self.sites: set[str] = set()

    # -- addresses and credentials
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    @property
    def cadir(self) -> Path:
        return self.pki / "cadir"

    def cert(self, who: str = "pilot") -> tuple[str, str]:
        return str(self.pki / f"{who}.pem"), str(self.pki / f"{who}.key")

    @property
    def env(self) -> dict[str, str]:
        url = self.url + "/server/panda"
        return {**os.environ, "PANDA_HOME": str(self.home), "PANDA_BEHIND_REAL_LB": "1", "PANDA_URL": url,
                "PANDA_URL_SSL": url, "PANDACACHE_URL": url, "PYTHONPATH": str(HERE)}

    # -- database
    def psql(self, sql: str, database: str = "panda_db", check: bool = True) -> str:
        """Run ``sql`` as the server's database user (its search path is the PanDA schema; the superuser
        for the ``postgres`` database); the rows, ``|`` separated, one per line."""
        user = "postgres" if database == "postgres" else "panda"
        result = subprocess.run([str(PGBIN / "psql"), "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p",
                                 str(self.pgport), "-U", user, "-d", database, "-v",
                                 f"ON_ERROR_STOP={int(check)}", "-c", sql],
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise RuntimeError(f"psql {sql[:200]!r}: {result.stderr.strip()}")
        return result.stdout.strip()

    def _psql_file(self, text: str, database: str, errors: Path | None) -> None:
        result = subprocess.run([str(PGBIN / "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(self.pgport),
                                 "-U", "postgres", "-d", database],
                                input=text, capture_output=True, text=True, timeout=300)
        if errors is None and result.returncode != 0:
            raise RuntimeError(f"psql: {result.stderr.strip()[-2000:]}")
        if errors is not None and result.stderr:
            with open(errors, "a") as handle:
                handle.write(result.stderr)

    def start_database(self) -> None:
        pgdata = self.directory / "pgdata"
        for path in (pgdata, self.directory / "pgrun", self.logs):
            path.mkdir(parents=True, exist_ok=True)
            shutil.chown(path, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        _run([*as_postgres, str(PGBIN / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
              "-E", "UTF8"])
        with open(pgdata / "postgresql.conf", "a") as conf:
            conf.write(f"""
listen_addresses = '127.0.0.1'
port = {self.pgport}
unix_socket_directories = '{self.directory / 'pgrun'}'
shared_preload_libraries = 'pg_cron, pg_partman_bgw'
cron.database_name = 'postgres'
pg_partman_bgw.dbname = 'panda_db'
fsync = off
synchronous_commit = off
full_page_writes = off
""")
        _run([*as_postgres, str(PGBIN / "pg_ctl"), "-D", str(pgdata), "-l", str(self.logs / "postgresql.log"),
              "-w", "start"])

    def load_schema(self) -> None:
        sqls = schema_dir() / "sqls"
        errors = self.logs / "schema_errors.log"
        init = (sqls / "init_step.sql").read_text().replace("${PANDA_DB_PASSWORD}", "password")
        self._psql_file(init, "postgres", None)
        for name in SCHEMA_FILES:  # one known harmless error (worker_node_queue) goes to the log
            self._psql_file((sqls / f"pg_{name}.sql").read_text(), "panda_db", errors)
        # written for pg_partman 5; Debian 12 has 4.7, which calls range partitions 'native'
        partition = (sqls / "pg_PARTITION.sql").read_text().replace("p_type => 'range'", "p_type => 'native'")
        self._psql_file(partition, "panda_db", errors)
        major, minor, patch = (schema_dir() / "version").read_text().strip().split(".")
        self._psql_file("INSERT INTO doma_panda.pandadb_version (component, major, minor, patch) "
                        f"VALUES ('PanDA', '{major}', '{minor}', '{patch}')", "panda_db", None)
        self._psql_file((sqls / "post_step_panda.sql").read_text(), "panda_db", None)
        self._psql_file((sqls / "post_step_cron.sql").read_text(), "postgres", None)
        # pg_cron connects to "localhost:5432" unless told where this cluster listens
        self.psql(f"UPDATE cron.job SET nodename = '127.0.0.1', nodeport = {self.pgport}", database="postgres")

    # -- the web server
    def write_config(self) -> None:
        etc = self.home / "etc" / "panda"
        etc.mkdir(parents=True, exist_ok=True)
        values = {"logs": self.logs / "panda", "venv": VENV, "home": self.home, "pgport": self.pgport,
                  "port": self.port, "production_dns": PRODUCTION_DNS}
        (self.logs / "panda" / "pandacache").mkdir(parents=True, exist_ok=True)
        (etc / "panda_server.cfg").write_text(SERVER_CFG.format(**values))
        (etc / "panda_common.cfg").write_text(COMMON_CFG.format(**values))

    def start_server(self) -> None:
        """Start gunicorn (TLS, client certificate required) and wait until it answers."""
        log = open(self.logs / "gunicorn.log", "ab")
        self.gunicorn = subprocess.Popen(
            [str(VENV / "bin" / "gunicorn"), "--chdir", str(self.directory), "-b", f"127.0.0.1:{self.port}",
             "-w", "1", "--threads", "4", "--graceful-timeout", "2", "--timeout", "120",
             "--certfile", str(self.pki / "host.pem"), "--keyfile", str(self.pki / "host.key"),
             "--ca-certs", str(self.pki / "ca.pem"), "--cert-reqs", "2", "panda_wsgi:application"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()

        def alive() -> bool:
            if self.gunicorn.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.gunicorn.returncode}: "
                                   f"{(self.logs / 'gunicorn.log').read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                return self.get("/server/panda/isAlive").status_code == 200
            return False

        wait_for(alive, f"the PanDA server on port {self.port} (see {self.logs / 'gunicorn.log'})",
                 timeout=START_TIMEOUT, every=0.2)

    def stop_server(self) -> None:
        if self.gunicorn is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.gunicorn.pid, signal.SIGTERM)
        try:
            self.gunicorn.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.gunicorn.pid, signal.SIGKILL)
            self.gunicorn.wait(timeout=30)
        self.gunicorn = None

    def start(self) -> PandaServer:
        make_pki(self.pki)
        self.start_database()
        self.load_schema()
        self.write_config()
        self.start_server()
        return self

    def close(self) -> None:
        self.stop_server()
        pgdata = self.directory / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--", str(PGBIN / "pg_ctl"), "-D", str(pgdata), "-m",
                            "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- talking to it
    def get(self, path: str, who: str = "pilot", **kwargs) -> requests.Response:
        return requests.get(self.url + path, cert=self.cert(who), verify=str(self.pki / "ca.pem"),
                            headers={"Accept": "application/json"}, timeout=60, **kwargs)

    def post(self, path: str, body: dict, who: str = "pilot") -> dict:
        answer = requests.post(self.url + path, json=body, cert=self.cert(who), verify=str(self.pki / "ca.pem"),
                               headers={"Accept": "application/json"}, timeout=120)
        answer.raise_for_status()
        return answer.json()

    def add_site(self, site: str) -> None:
        """Make ``site`` a PanDA queue the server knows (the submit API refuses jobs for others)."""
        if site in self.sites:
            return
        data = json.dumps({**SITE, "siteid": site, "nickname": site}).replace("'", "''")
        self.psql(f"INSERT INTO doma_panda.schedconfig_json (panda_queue, data, last_update) "
                  f"VALUES ('{site}', '{data}', now()) ON CONFLICT DO NOTHING")
        self.sites.add(site)

    def submit(self, site: str, count: int, command: str = "echo hello", label: str = "managed",
               with_log: bool = True) -> list[int]:
        """Submit ``count`` jobs for ``site`` through ``/api/v1/job/submit`` with the pilot's certificate
        (a production DN); their PanDA ids."""
        self.add_site(site)
        jobs = _run([str(VENV / "bin" / "python"), str(HERE / "panda_jobs.py"), site, str(count), command,
                     label, "1" if with_log else "0", uuid.uuid4().hex], env=self.env).stdout
        answer = self.post("/api/v1/job/submit", {"jobs": json.loads(jobs)})
        if answer.get("success") is not True:
            raise RuntimeError(f"submit refused: {answer}")
        return [int(entry[0]) for entry in answer["data"]]

    def refresh_stats(self) -> None:
        """Refresh the job statistics now (pg_cron does it once a minute)."""
        self.psql("CALL doma_panda.update_jobsactive_stats()")

    def job_states(self, ids: list[int]) -> dict[int, str]:
        """{PandaID: jobStatus} from the active and the archived tables."""
        if not ids:
            return {}
        wanted = ",".join(str(int(i)) for i in ids)
        rows = []
        for table in ACTIVE_TABLES + ENDED_TABLES:
            rows += self.psql(f"SELECT pandaid, jobstatus FROM doma_panda.{table} "
                              f"WHERE pandaid IN ({wanted})").splitlines()
        return {int(pid): state for pid, state in (row.split("|") for row in rows if row)}

    def wipe_jobs(self) -> None:
        """Remove every job (an empty database) and refresh the statistics."""
        for table in ACTIVE_TABLES + ENDED_TABLES:
            self.psql(f"DELETE FROM doma_panda.{table}")
        self.refresh_stats()

    def run_adder(self, timeout: float = 120.0) -> None:
        """One pass of the server's adder daemon: jobs in ``holding`` whose pilot reported them end
        (``finished`` or ``failed``). The daemon script loops; it is stopped once no job waits."""
        process = subprocess.Popen([str(VENV / "bin" / "python"), "-m", "pandaserver.daemons.scripts.add_main",
                                    "x", "0"], env=self.env, cwd=self.directory, start_new_session=True,
                                   stdout=open(self.logs / "adder.log", "ab"), stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: not self.psql("SELECT pandaid FROM doma_panda.jobsactive4 "
                                           "WHERE jobstatus = 'holding'") or process.poll() is not None,
                     "the adder to move the jobs out of holding", timeout=timeout, every=0.5)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@contextlib.contextmanager
def running_panda_server() -> Iterator[PandaServer]:
    """A started server for the duration of the block (scripts: ``python -c`` from the repository root)."""
    server = PandaServer()
    try:
        yield server.start()
    finally:
        server.close()


try:
    import pytest
except ImportError:  # scripts without pytest
    pass
else:

    @pytest.fixture(scope="session")
    def panda_server() -> Iterator[PandaServer]:
        """The session's real PanDA server (skipped, saying why, where it cannot run)."""
        why = missing()
        if why:
            pytest.skip(why)
        server = PandaServer()
        try:
            yield server.start()
        finally:
            server.close()


# ---------------------------------------------------------------- the real PanDA pilot

PILOT_USER = os.environ.get("APF_PILOT_USER", "apfpilot")  # made by tests/services/panda.sh; never root
PILOT_DIR = PANDA_HOME / "pilot"  # the panda-pilot sdist (pilot.py is only there), served as a tarball URL
RUN_SH = '#!/bin/sh\n# the generic payload wrapper: the job parameters are the command\nexec /bin/sh -c "$*"\n'


def pilot_missing() -> str | None:
    """Why the real PanDA pilot cannot run here (None: it can)."""
    try:
        pwd.getpwnam(PILOT_USER)
    except KeyError:
        return f"no user {PILOT_USER} to run the PanDA pilot as (never root): run tests/services/panda.sh"
    if not sorted(PILOT_DIR.glob("panda-pilot-*.tar.gz")):
        return f"no panda-pilot sdist in {PILOT_DIR}: run tests/services/panda.sh"
    return None


class PilotSite:
    """What a worker node of a PanDA queue gives the real pilot, for ``server``'s queue ``queue``:
    the queue's description as files (instead of CRIC), a local storage endpoint (the log goes there
    with the ``mv`` copytool), the generic payload wrapper ``run.sh`` (instead of a download), the
    pilot's credential (the pilot certificate as proxy file, owned by the pilot user) and the pilot
    sdist served over HTTP as the tarball URL. Everything in a directory the pilot user owns."""

    def __init__(self, server: PandaServer, queue: str):
        self.server, self.queue = server, queue
        self.directory = Path(tempfile.mkdtemp(prefix="apf-pilot-site-", dir="/tmp"))
        for sub in ("trf", "se", "work", "tmp"):
            (self.directory / sub).mkdir()
        description = {
            "name": queue, "resource": queue, "site": queue, "panda_resource": queue, "nickname": queue,
            "siteid": queue, "atlas_site": queue, "state": "ACTIVE", "status": "online", "type": "production",
            "cloud": "WORLD", "copytools": {"mv": {}}, "acopytools": {"pr": ["mv"], "pw": ["mv"], "pl": ["mv"]},
            "astorages": {}, "is_cvmfs": False, "maxwdir": 10000, "maxtime": 3600, "maxrss": 2000,
            "corecount": 1, "timefloor": 0, "container_type": "", "container_options": "", "catchall": "",
            "params": {"internet_protocol_version": "IPv4"}, "vo_name": "wlcg", "pilot_manager": "",
            "direct_access_lan": False, "direct_access_wan": False}
        (self.directory / "queuedata.json").write_text(json.dumps(description))
        (self.directory / "schedconf.json").write_text(json.dumps({queue: description}))
        (self.directory / "ddmendpoints.json").write_text(json.dumps({"LOCAL_DISK": {
            "name": "LOCAL_DISK", "type": "DATADISK", "state": "ACTIVE", "site": queue, "is_deterministic": True,
            "arprotocols": {}, "rprotocols": {}, "resource": {"endpoint": str(self.directory / "se")}}}))
        (self.directory / "trf" / "run.sh").write_text(RUN_SH)
        (self.directory / "trf" / "run.sh").chmod(0o755)
        shutil.copy(server.pki / "proxy.pem", self.directory / "proxy.pem")
        _run(["chown", "-R", f"{PILOT_USER}:", str(self.directory)])
        (self.directory / "proxy.pem").chmod(0o600)
        self.directory.chmod(0o755)
        self.sdist = sorted(PILOT_DIR.glob("panda-pilot-*.tar.gz"))[-1]
        self.version = self.sdist.name[len("panda-pilot-"):-len(".tar.gz")]
        handler = functools.partial(_QuietFiles, directory=str(PILOT_DIR))
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.http.serve_forever, daemon=True, name="pilot-tarball").start()

    @property
    def pilot_url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/{self.sdist.name}"

    @property
    def proxy(self) -> str:
        return str(self.directory / "proxy.pem")

    def environment(self) -> dict[str, str]:
        """What the pilot needs from its worker node: credential, CAs, the site files, and PILOT_NOKILL=1."""
        return {"X509_USER_PROXY": self.proxy, "X509_CERT_DIR": str(self.server.cadir),
                "LOCAL_AGIS_SCHEDCONF": str(self.directory / "schedconf.json"),
                "HARVESTER_WORKDIR": str(self.directory / "trf"), "TMPDIR": str(self.directory / "tmp"),
                "PILOT_NOKILL": "1"}

    def pilot_arguments(self) -> list[str]:
        """The queue's own pilot options (pass-through arguments of the wrapper): this server, the site
        files, one job per pilot (-v 1), and no second try when the server has no job."""
        d = self.directory
        return ["--pilot-user", "generic", "--url", "https://127.0.0.1", "-p", str(self.server.port),
                "--queuedata-url", str(d / "queuedata.json"), "--storagedata-url", str(d / "ddmendpoints.json"),
                "-a", str(d / "work"), "--output-dir", str(d / "se"), "-t", "-d", "--use-rucio-traces", "False",
                "-v", "1", "--getjobfailures", "1"]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass
