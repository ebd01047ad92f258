"""HTCondor submit plugins: descriptions checked with htcondor2.Submit, submission against a schedd double.

No schedd can be installed here, so the submit descriptions are parsed by the
bindings' own parser (htcondor2.Submit) and the schedd is tests/condordouble.py.
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
from tests.condordouble import ScheddDouble, job_ad
from tests.conftest import ConfDir

PROXY_PLUGIN = """\
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin
from autopyfactory.config import Key

class FakeProxy(AuthPlugin):
    '''A proxy file that is always fine (tests only). Keys: fakeproxy.path.'''
    name = "FakeProxy"
    keys = {"path": Key("str", "")}
    def check(self):
        return CredentialStatus(self.section.name, True, 86400.0, "ok", self.options.get("path", ""))
"""


def build(confdir: ConfDir, plugin: str, double: ScheddDouble | None = None, auth: str = "", **keys: str):
    lines = ["[Q1]", "wmsqueue = PANDA_SITE", "wmsstatusplugin = Local", f"wmsstatus.local.spooldir = {confdir.spool}",
             "batchstatusplugin = Condor", f"batchsubmitplugin = {plugin}",
             "executable.arguments = --wrappervo=ATLAS --wrapperwmsqueue='PANDA SITE' --wrappermode=$HOME 'say \"hi\"'",
             *[f"{k} = {v}" for k, v in keys.items()]]
    confdir.dropin("fakeproxy.py", PROXY_PLUGIN)
    confdir.write("\n".join(lines) + "\n", factory="factoryAdminEmail = admin@example.org\n", auth=auth)
    config = confdir.load()
    context = FactoryContext(config)
    context.credentials = CredentialService(context)
    context.credentials.check_all()
    submitter = context.registry.get("batchsubmit", plugin)(config.queues["Q1"], context)
    if double is not None:
        submitter.connect = lambda options: double
    return submitter


def parsed(submitter: CondorBase, confdir: ConfDir) -> htcondor2.Submit:
    """The description as the bindings parse it (from its text form, as saved beside the logs)."""
    logdir = confdir.logs / "x"
    logdir.mkdir(parents=True, exist_ok=True)
    text = str(submitter.submit_object(str(logdir)))
    return htcondor2.Submit(text)


def attr(sub: htcondor2.Submit, name: str):
    """Value of a +Attr as a ClassAd expression evaluates it, with $(Cluster).$(Process) = 7.3."""
    raw = sub.get(f"MY.{name}") or sub.get(f"+{name}")
    assert raw is not None, f"{name} missing from {dict(sub)}"
    return classad2.ExprTree(raw.replace("$(Cluster)", "7").replace("$(Process)", "3")).eval()


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


def test_bad_condor_attribute_is_a_failed_submission(confdir: ConfDir):
    double = ScheddDouble()
    submitter = build(confdir, "CondorLocal", double,
                      **{"batchsubmit.condorlocal.condor_attributes": "no equals sign here"})
    result = submitter.submit(3)
    assert result.count == 0 and "condor_attributes" in result.error
    assert double.count("submit") == 0


def test_one_transaction_for_200_pilots_and_description_saved(confdir: ConfDir):
    double = ScheddDouble()
    submitter = build(confdir, "CondorLocal", double)
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


def test_schedd_failure_and_timeout_are_failed_submissions(confdir: ConfDir):
    double = ScheddDouble()
    double.fail = htcondor2.HTCondorException("Failed to connect to schedd")
    submitter = build(confdir, "CondorLocal", double, **{"batchsubmit.condorlocal.timeout": "1"})
    result = submitter.submit(5)
    assert result.count == 0 and "Failed to connect" in result.error

    double.fail = None
    double.hanging = True
    try:
        result = submitter.submit(5)
        assert result.count == 0 and "timed out" in result.error
    finally:
        double.hang.set()


def test_remove_takes_only_idle_pilots_newest_first(confdir: ConfDir):
    fid_attrs = {"APF_FACTORY": "test-factory", "APF_QUEUE": "Q1", "MATCH_APF_QUEUE": "Q1"}
    jobs = [job_ad(5, p, 1, QDate=1000 + p, **fid_attrs) for p in range(4)]  # idle
    jobs += [job_ad(5, 4, 2, JobStartDate=1500, **fid_attrs)]  # running
    jobs += [job_ad(6, 0, 1, APF_FACTORY="other-factory", APF_QUEUE="Q1")]  # not ours
    jobs += [job_ad(7, 0, 1, APF_FACTORY="test-factory", APF_QUEUE="Q2")]  # another queue
    double = ScheddDouble(jobs)
    submitter = build(confdir, "CondorLocal", double)
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
