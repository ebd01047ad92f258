"""HTCondor submit plugins: descriptions checked with htcondor2.Submit, submission against a schedd double.

No schedd can be installed here, so the submit descriptions are parsed by the
bindings' own parser (htcondor2.Submit) and the schedd behind the real
htcondor2.Schedd is tests/condordouble.py, at the network boundary.
"""

from __future__ import annotations

import textwrap
import threading

import classad2
import htcondor2
import pytest

from autopyfactory.commands import CallTimeout
from autopyfactory.config import ConfigError
from autopyfactory.context import FactoryContext
from autopyfactory.credentials import CredentialService
from autopyfactory.plugins.batchsubmit.condor import CondorBase
from tests.condordouble import CondorPool, ScheddDouble, job_ad
from tests.conftest import ConfDir

PROXY_PLUGIN = """\
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin
from autopyfactory.config import Key

class FakeProxy(AuthPlugin):
    '''A proxy file that is always fine (tests only). Keys: fakeproxy.path.'''
    name = "FakeProxy"
    credential_type = "x509"
    keys = {"path": Key("str", "")}
    def check(self):
        return CredentialStatus(self.section.name, True, 86400.0, "ok", self.options.get("path", ""))
"""


def local_schedd(pool: CondorPool, double: ScheddDouble) -> ScheddDouble:
    """``double`` as the local schedd: what htcondor2.Schedd() finds through COLLECTOR_HOST."""
    pool.local_collector = "cm.example.org:9618"
    pool.add_schedd(double, "<192.0.2.10:9618>", collector=pool.local_collector)
    return double


def build(confdir: ConfDir, plugin: str, auth: str = "", queue: str = "Q1", **keys: str):
    values = {"wmsqueue": "PANDA_SITE", "wmsstatusplugin": "Local", "wmsstatus.local.spooldir": confdir.spool,
              "batchstatusplugin": "Condor", "batchsubmitplugin": plugin,
              "executable.arguments":
                  "--wrappervo=ATLAS --wrapperwmsqueue='PANDA SITE' --wrappermode=$HOME 'say \"hi\"'",
              **keys}
    lines = [f"[{queue}]", *[f"{k} = {v}" for k, v in values.items()]]
    confdir.dropin("fakeproxy.py", PROXY_PLUGIN)
    confdir.write("\n".join(lines) + "\n", factory="factoryAdminEmail = admin@example.org\n", auth=auth)
    config = confdir.load()
    context = FactoryContext(config)
    context.credentials = CredentialService(context)
    context.credentials.check_all()
    return context.registry.get("batchsubmit", plugin)(config.queues[queue], context)


def parsed(submitter: CondorBase, confdir: ConfDir) -> htcondor2.Submit:
    """The description as the bindings parse it (from its text form, as saved beside the logs)."""
    logdir = confdir.logs / "x"
    logdir.mkdir(parents=True, exist_ok=True)
    text = str(submitter.submit_object(str(logdir)))
    return htcondor2.Submit(text)


def attr(sub: htcondor2.Submit, name: str):
    """Value of a +Attr as the job ad gets it (macros expanded by the bindings), with pilot 7.3."""
    assert f"MY.{name}" in sub, f"{name} missing from {dict(sub)}"
    job = htcondor2.Submit({**dict(sub), "Cluster": "7", "Process": "3"})
    return classad2.ExprTree(job.expand(f"MY.{name}")).eval()


def test_condorlocal_description(confdir: ConfDir):
    sub = parsed(build(confdir, "CondorLocal"), confdir)
    assert sub["universe"] == "vanilla" and "grid_resource" not in sub
    assert sub["executable"].endswith("apf-wrapper.sh")
    assert attr(sub, "MATCH_APF_QUEUE") == "Q1" and attr(sub, "APF_QUEUE") == "Q1"
    assert attr(sub, "APF_WMSQUEUE") == "PANDA_SITE" and attr(sub, "APF_FACTORY") == "test-factory"
    assert attr(sub, "FACTORY_JOBID") == "test-factory#7.3"
    assert attr(sub, "APF_OUTURL").endswith("/x/7.3.out") and attr(sub, "APF_LOGURL").endswith("/x/7.log")
    env = sub.expand("environment")
    for expected in ("PANDA_JSID=test-factory", "APFFID=test-factory", "APFCID=$(Cluster).$(Process)",
                     "FACTORYQUEUE=Q1", "APF_WRAPPER_DIR="):
        assert expected in sub["environment"] or expected in env
    assert "GTAG=" in env and ".out" in env
    # config values are not expanded as macros: $HOME stays literal
    assert sub.expand("arguments") == (
        '"--wrappervo=ATLAS \'--wrapperwmsqueue=PANDA SITE\' --wrappermode=$HOME \'say ""hi""\'"')
    assert sub["output"].endswith("/x/$(Cluster).$(Process).out")


@pytest.mark.parametrize("plugin, keys, universe, resource", [
    ("CondorCE", {"batchsubmit.condorce.gridresource": "ce.example.org"},
     "grid", "condor ce.example.org ce.example.org:9619"),
    ("CondorCE", {"batchsubmit.condorce.gridresource": "ce.example.org:9620"},
     "grid", "condor ce.example.org ce.example.org:9620"),
    ("CondorARC", {"batchsubmit.condorarc.gridresource": "arc.example.org"},
     "grid", "arc https://arc.example.org:443/arex"),
    ("CondorSSH", {"batchsubmit.condorssh.batch": "pbs", "batchsubmit.condorssh.user": "apf",
                   "batchsubmit.condorssh.host": "login.example.org"},
     "grid", "batch pbs apf@login.example.org"),
])
def test_grid_flavours(confdir: ConfDir, plugin, keys, universe, resource):
    sub = parsed(build(confdir, plugin, **keys), confdir)
    assert sub["universe"] == universe
    assert sub["grid_resource"] == resource


def test_ce_without_gridresource_is_a_config_error(confdir: ConfDir):
    with pytest.raises(ConfigError, match="gridresource"):
        build(confdir, "CondorCE")


def test_condor_attributes_environ_and_proxy(confdir: ConfDir, tmp_path):
    proxy = tmp_path / "x509up"
    proxy.write_text("proxy")
    auth = textwrap.dedent(f"""\
        [atlas-prod]
        plugin = FakeProxy
        fakeproxy.path = {proxy}
        """)
    submitter = build(
        confdir, "CondorCE", auth=auth,
        **{"batchsubmit.condorce.gridresource": "ce.example.org",
           "batchsubmit.condorce.condor_attributes": r'request_memory = 2000, +Note = "a\, b", +maxWallTime = 2880',
           "batchsubmit.condorce.condor_attributes.+ProjectName": '"atlas"',
           "batchsubmit.condorce.condor_attributes.request_cpus": "8",
           "batchsubmit.condorce.environ": "VO=atlas SITE_NAME='My Site'",
           "batchsubmit.condorce.proxy": "atlas-prod"})
    sub = parsed(submitter, confdir)
    assert sub["request_memory"] == "2000" and sub["request_cpus"] == "8"
    assert attr(sub, "Note") == "a, b" and attr(sub, "maxWallTime") == 2880
    assert attr(sub, "ProjectName") == "atlas"
    env = sub.expand("environment")
    assert "VO=atlas" in env and "SITE_NAME='My Site'" in env
    assert sub["x509userproxy"] == str(proxy)


def test_bad_condor_attribute_is_a_failed_submission(confdir: ConfDir, condor_pool: CondorPool):
    double = local_schedd(condor_pool, ScheddDouble())
    submitter = build(confdir, "CondorLocal",
                      **{"batchsubmit.condorlocal.condor_attributes": "no equals sign here"})
    result = submitter.submit(3)
    assert result.count == 0 and "condor_attributes" in result.error
    assert double.count("submit") == 0


def test_one_transaction_for_200_pilots_and_description_saved(confdir: ConfDir, condor_pool: CondorPool):
    double = local_schedd(condor_pool, ScheddDouble())
    submitter = build(confdir, "CondorLocal")
    result = submitter.submit(200)
    assert result.error is None and result.count == 200
    assert double.count("submit") == 1 and double.calls[0][1]["count"] == 200
    assert result.ids[0] == "1000.0" and result.ids[-1] == "1000.199"
    # the schedd double made the job ads from the real Submit: the pilots carry their tags
    assert len(double.jobs) == 200
    assert {ad["FACTORY_JOBID"] for ad in double.jobs[:2]} == {"test-factory#1000.0", "test-factory#1000.1"}
    saved = next(confdir.logs.glob("*/Q1/1000.jdl")).read_text()
    assert saved.rstrip().endswith("queue 200")
    reparsed = htcondor2.Submit(saved.rsplit("queue", 1)[0])
    assert reparsed["universe"] == "vanilla" and "MY.MATCH_APF_QUEUE" in reparsed


def test_schedd_failure_and_timeout_are_failed_submissions(confdir: ConfDir, condor_pool: CondorPool):
    double = local_schedd(condor_pool, ScheddDouble())
    double.fail = htcondor2.HTCondorException("Failed to connect to schedd")
    submitter = build(confdir, "CondorLocal", **{"batchsubmit.condorlocal.timeout": "1"})
    result = submitter.submit(5)
    assert result.count == 0 and "Failed to connect" in result.error

    double.fail = None
    double.hanging = True
    try:
        result = submitter.submit(5)
        assert result.count == 0 and "timed out" in result.error
    finally:
        double.hang.set()


def test_remove_takes_only_idle_pilots_newest_first(confdir: ConfDir, condor_pool: CondorPool):
    fid_attrs = {"APF_FACTORY": "test-factory", "APF_QUEUE": "Q1", "MATCH_APF_QUEUE": "Q1"}
    jobs = [job_ad(5, p, 1, QDate=1000 + p, **fid_attrs) for p in range(4)]  # idle
    jobs += [job_ad(5, 4, 2, JobStartDate=1500, **fid_attrs)]  # running
    jobs += [job_ad(6, 0, 1, APF_FACTORY="other-factory", APF_QUEUE="Q1")]  # not ours
    jobs += [job_ad(7, 0, 1, APF_FACTORY="test-factory", APF_QUEUE="Q2")]  # another queue
    double = local_schedd(condor_pool, ScheddDouble(jobs))
    submitter = build(confdir, "CondorLocal")
    result = submitter.remove(2)
    assert result.error is None and result.count == 2
    assert sorted(result.ids) == ["5.2", "5.3"]
    status = {(ad["ClusterId"], ad["ProcId"]): ad["JobStatus"] for ad in double.jobs}
    assert status[(5, 2)] == status[(5, 3)] == 3
    assert status[(5, 0)] == status[(5, 1)] == 1 and status[(5, 4)] == 2
    assert status[(6, 0)] == 1 and status[(7, 0)] == 1
    # the removal itself re-checks that the pilots are still idle
    assert "JobStatus == 1" in [kw for name, kw in double.calls if name == "act"][0]["job_spec"]

    result = submitter.remove(10)
    assert result.count == 2 and status[(5, 4)] == 2
    assert next(ad for ad in double.jobs if ad["ProcId"] == 4 and ad["ClusterId"] == 5)["JobStatus"] == 2


def test_call_timeout_helper_does_not_wait_for_a_hung_call():
    from autopyfactory.commands import call

    release = threading.Event()
    try:
        with pytest.raises(CallTimeout):
            call(release.wait, 30, timeout=0.5, what="hung bindings call")
    finally:
        release.set()
    with pytest.raises(ZeroDivisionError):
        call(lambda: 1 / 0, timeout=5)
    assert call(lambda x: x + 1, 1, timeout=5) == 2


# ---------------------------------------------------------------- config values are literal text

HOSTILE = {  # every config value that reaches a description, each with a macro HTCondor would expand
    "executable": "/opt/$ENV(APF_TEST_SECRET)/pilot",
    "executable.arguments": "--wrappermode=$ENV(APF_TEST_SECRET) '$RANDOM_INTEGER(1,9)' $(Cluster)x",
    "wmsqueue": "W$ENV(APF_TEST_SECRET)",
}
FLAVOURS = [
    ("CondorLocal", {}),
    ("CondorCE", {"gridresource": "ce$ENV(APF_TEST_SECRET).example.org"}),
    ("CondorARC", {"gridresource": "https://arc.example.org/$ENV(APF_TEST_SECRET)"}),
    ("CondorSSH", {"user": "u$ENV(APF_TEST_SECRET)", "host": "login$INT(36).example.org"}),
]


@pytest.mark.parametrize("plugin, flavour", FLAVOURS, ids=[f for f, _ in FLAVOURS])
def test_no_config_value_expands_as_a_macro(confdir: ConfDir, condor_pool: CondorPool, monkeypatch, plugin, flavour):
    monkeypatch.setenv("APF_TEST_SECRET", "EXPANDED")
    confdir.logs = confdir.root / "logs$ENV(APF_TEST_SECRET)"
    prefix = f"batchsubmit.{plugin.lower()}."
    keys = {**HOSTILE, **{prefix + k: v for k, v in flavour.items()},
            prefix + "environ": "NOTE=$ENV(APF_TEST_SECRET)",
            prefix + "condor_attributes.+Note": '"$ENV(APF_TEST_SECRET)"'}
    submitter = build(confdir, plugin, queue="Q$ENV(APF_TEST_SECRET)", **keys)  # a section name too

    logdir = submitter.context.logdir(submitter.queue.name)
    sub = htcondor2.Submit(str(submitter.submit_object(logdir)))  # read back as the schedd's client does
    job = htcondor2.Submit({**dict(sub), "Cluster": "7", "Process": "3"})
    expanded = {command: job.expand(command) for command in sub}
    assert not [c for c, v in expanded.items() if "EXPANDED" in v], expanded
    assert expanded["executable"] == "/opt/$ENV(APF_TEST_SECRET)/pilot"
    for command in ("output", "error", "log"):
        assert "/logs$ENV(APF_TEST_SECRET)/" in expanded[command] and "/Q$ENV(APF_TEST_SECRET)/" in expanded[command]
    assert expanded["output"].endswith("/7.3.out") and expanded["log"].endswith("/7.log")
    assert "--wrappermode=$ENV(APF_TEST_SECRET) $RANDOM_INTEGER(1,9) $(Cluster)x" in expanded["arguments"]
    assert "NOTE=$ENV(APF_TEST_SECRET)" in expanded["environment"] and "APFCID=7.3" in expanded["environment"]
    assert attr(sub, "APF_QUEUE") == "Q$ENV(APF_TEST_SECRET)" and attr(sub, "APF_WMSQUEUE") == "W$ENV(APF_TEST_SECRET)"
    assert attr(sub, "Note") == "$ENV(APF_TEST_SECRET)" and attr(sub, "FACTORY_JOBID") == "test-factory#7.3"
    if flavour:
        assert "$ENV(APF_TEST_SECRET)" in expanded["grid_resource"] or "$INT(36)" in expanded["grid_resource"]

    # what the schedd receives through the real htcondor2.Schedd.submit (which re-reads the text)
    double = local_schedd(condor_pool, ScheddDouble())
    result = submitter.submit(2)
    assert result.error is None and result.count == 2
    ad = double.jobs[1]
    assert ad["Cmd"] == "/opt/$ENV(APF_TEST_SECRET)/pilot" and ad["APF_QUEUE"] == "Q$ENV(APF_TEST_SECRET)"
    assert ad["FACTORY_JOBID"] == f"test-factory#{result.ids[1]}"
    assert "EXPANDED" not in repr(ad)


@pytest.mark.parametrize("key, value, why", [
    ("executable", "/opt/$$(OpSys)/pilot", "'$$'"),  # expanded when the pilot is matched
    ("executable", "/opt/$(DOLLAR)/pilot", "'$(DOLLAR)'"),  # the escape itself cannot be written literally
    ("batchsubmit.condorlocal.condor_attributes.+Site", '"$$([TARGET.Name])"', "'$$'"),
    ("batchsubmit.condorlocal.condor_attributes.+A$(X)", "1", "not a submit command name"),
])
def test_value_that_cannot_be_literal_is_refused_with_its_command(confdir: ConfDir, condor_pool: CondorPool,
                                                                  key, value, why):
    double = local_schedd(condor_pool, ScheddDouble())
    result = build(confdir, "CondorLocal", **{key: value}).submit(3)
    assert result.count == 0 and why in result.error and double.count("submit") == 0


def test_submit_value_round_trips_through_the_real_parser():
    """Random hostile text: refused, or read back by htcondor2.Submit exactly as it was."""
    import random

    from autopyfactory.plugins.batchsubmit.condor import SubmitDescriptionError, submit_value

    tokens = ["$", "$$", "(", ")", "[", "]", "DOLLAR", "dollar", "ENV", "INT", "RANDOM_CHOICE", "Cluster", "x",
              ",", ":", '"', "'", " ", "\\", "#", "=", "%c", "36"]
    rng = random.Random(8)
    refused = kept = 0
    for _ in range(3000):
        text = "".join(rng.choice(tokens) for _ in range(rng.randint(1, 10)))
        try:
            written = submit_value("v", text)
        except SubmitDescriptionError:
            refused += 1
            continue
        kept += 1
        assert htcondor2.Submit(f"v = {written}\n").expand("v") == text, (text, written)
    assert kept > 1000 and refused > 100


# ---------------------------------------------------------------- credentials reach pilots in their own form


def token_file(directory) -> str:
    import base64
    import json
    import time

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    path = directory / "pilot.token"
    path.write_text(f"{part({'alg': 'none'})}.{part({'sub': 'pilot', 'exp': int(time.time()) + 86400})}.c2ln\n")
    return str(path)


@pytest.mark.parametrize("plugin, flavour, authenticates", [
    ("CondorLocal", {}, False),
    ("CondorCE", {"gridresource": "ce.example.org"}, True),
    ("CondorARC", {"gridresource": "arc.example.org"}, True),
    ("CondorSSH", {"user": "apf", "host": "login.example.org"}, False),
])
def test_token_profile_reaches_pilots_as_a_bearer_token(confdir: ConfDir, tmp_path, plugin, flavour, authenticates):
    token = token_file(tmp_path)
    prefix = f"batchsubmit.{plugin.lower()}."
    submitter = build(confdir, plugin, auth=f"[tok]\nplugin = Token\ntoken.tokenfile = {token}\ntoken.minlife = 0\n",
                      **{prefix + "proxy": "tok", **{prefix + k: v for k, v in flavour.items()}})
    sub = parsed(submitter, confdir)
    env = sub.expand("environment")
    assert "x509userproxy" not in sub and "X509_USER_PROXY" not in env
    assert "BEARER_TOKEN_FILE=pilot.token" in env  # the sandbox copy, in the pilot's starting directory
    assert [f.strip() for f in sub["transfer_input_files"].split(",")] == [token]
    assert (sub.get("scitokens_file") == token) is authenticates
    assert ("scitokens_file" in sub) is authenticates


def test_x509_profile_reaches_pilots_as_a_proxy_and_ssh_never(confdir: ConfDir, tmp_path):
    proxy, key = tmp_path / "x509up", tmp_path / "id_ed25519"
    proxy.write_text("proxy")
    key.write_text("key")
    key.chmod(0o600)
    auth = (f"[prod]\nplugin = FakeProxy\nfakeproxy.path = {proxy}\n\n"
            f"[login]\nplugin = SSH\nssh.privatekey = {key}\n")
    x509 = parsed(build(confdir, "CondorCE", auth=auth, **{"batchsubmit.condorce.gridresource": "ce.example.org",
                                                           "batchsubmit.condorce.proxy": "prod"}), confdir)
    assert x509["x509userproxy"] == str(proxy)
    assert "scitokens_file" not in x509 and "BEARER_TOKEN_FILE" not in x509.expand("environment")
    ssh = parsed(build(confdir, "CondorSSH", auth=auth, **{"batchsubmit.condorssh.user": "apf",
                                                           "batchsubmit.condorssh.host": "login.example.org",
                                                           "batchsubmit.condorssh.proxy": "login"}), confdir)
    assert not {"x509userproxy", "scitokens_file", "transfer_input_files"} & set(ssh)
    assert str(key) not in str(ssh)


def test_operator_transfer_input_files_keep_the_token(confdir: ConfDir, tmp_path):
    token = token_file(tmp_path)
    sub = parsed(build(confdir, "CondorLocal", auth=f"[tok]\nplugin = Token\ntoken.tokenfile = {token}\n"
                                                    "token.minlife = 0\n",
                       **{"batchsubmit.condorlocal.proxy": "tok",
                          "batchsubmit.condorlocal.condor_attributes.transfer_input_files": "/data/a.tgz"}), confdir)
    assert [f.strip() for f in sub["transfer_input_files"].split(",")] == ["/data/a.tgz", token]
