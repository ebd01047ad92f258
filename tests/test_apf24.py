"""An APF 2.4 site's own files load and run: aliases, None, override, merged sources (tests/data/apf24)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autopyfactory.config import ConfigError
from autopyfactory.plugins.wmsstatus.panda import Panda
from tests.conftest import local_queue

APF24 = Path(__file__).resolve().parent / "data" / "apf24"
APF = str(Path(sys.executable).with_name("apf"))


def load_text(confdir, queues: str, monitor: str = "", factory: str = ""):
    confdir.write(queues, monitor=monitor, factory=factory)
    return confdir.load()


def warnings(config) -> list[str]:
    return [str(w) for w in config.warnings]


# ---------------------------------------------------------------- the shipped-shape files


def test_check_config_on_apf24_files_exits_0_with_warnings_only():
    done = subprocess.run([APF, "check-config", "--conf", str(APF24 / "factory.conf")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("warning: ") for line in lines)
    # one warning per key kind, not one per queue
    assert sum("globusrsl.*" in line for line in lines) == 1


def test_apf24_files_mean_what_they_meant():
    from autopyfactory.config import load

    config = load(str(APF24 / "factory.conf"))
    prod, analy, lrz, local = (config.queues[n] for n in
                               ("BNL_PROD-gridgk01", "ANALY_BNL_SHORT-gridgk02", "ANALY_LRZ", "BNL_LOCAL-condor"))
    assert prod.values["batchsubmitplugin"] == "CondorCE"
    assert prod.values["batchsubmit.condorce.gridresource"] == "gridgk01.racf.bnl.gov"
    assert analy.values["batchsubmit.condorce.port"] == 9620
    assert prod.values["sched.maxpending.maximum"] == 20  # queues-site.conf, the later source, wins
    assert prod.source.endswith("queues-site.conf")
    assert lrz.values["batchsubmitplugin"] == "CondorARC"
    assert lrz.values["schedplugin"] == ["Ready", "MaxPerCycle", "MaxPending"]
    assert lrz.values["sched.maxpercycle.maximum"] == 20
    assert local.values["batchsubmit.condorlocal.proxy"] == ""  # None: unset
    assert config.monitor["apfmon-lancaster"].values["monitorplugin"] == "APFMon"
    assert config.queues["BNL_TEST-gridgk03"].enabled is False
    assert prod.plugin_options(Panda)["url"] == "https://pandaserver.cern.ch:25443/api/v1"
    assert "-w generic -u managed" in prod.values["executable.arguments"]


# ---------------------------------------------------------------- one case each


@pytest.mark.parametrize("selector, old, new, where", [
    ("batchsubmitplugin", "CondorOSGCE", "CondorCE", "queues"),
    ("batchsubmitplugin", "CondorNordugrid", "CondorARC", "queues"),
    ("schedplugin", "Activated", "Ready", "queues"),
    ("monitorplugin", "APF", "APFMon", "monitor"),
])
def test_alias_loads_with_one_warning_naming_the_new_name(confdir, selector, old, new, where):
    extra = {"batchsubmit.condorce.gridresource": "ce.example.org",
             "batchsubmit.condorarc.gridresource": "arc.example.org"}
    if where == "queues":
        queues = local_queue("A", confdir.spool, **{selector: old}, **extra) + \
            local_queue("B", confdir.spool, **{selector: old}, **extra)
        config = load_text(confdir, queues)
        assert {q.values[selector] if selector != "schedplugin" else q.values[selector][0]
                for q in config.queues.values()} == {new}
    else:
        config = load_text(confdir, local_queue("A", confdir.spool, monitorsection="m"),
                           monitor=f"[m]\nmonitorplugin = {old}\nmonitorURL = http://127.0.0.1:9/api\n")
        assert config.monitor["m"].values["monitorplugin"] == new
    lines = [w for w in warnings(config) if f"{old} is APF 2.4's name" in w or f"{old} is APF 2.4" in w]
    assert len(lines) == 1 and new in lines[0]


def test_condorosgce_keys_become_condorce_keys(confdir):
    config = load_text(confdir, local_queue("A", confdir.spool, batchsubmitplugin="CondorOSGCE", **{
        "batchsubmit.condorosgce.gridresource": "gk.example.org", "batchsubmit.condorosgce.port": "9620"}))
    values = config.queues["A"].values
    assert values["batchsubmit.condorce.gridresource"] == "gk.example.org"
    assert values["batchsubmit.condorce.port"] == 9620


def test_nordugridrsl_becomes_condorarc_submit_commands(confdir):
    config = load_text(confdir, local_queue("A", confdir.spool, batchsubmitplugin="CondorNordugrid", **{
        "batchsubmit.condornordugrid.gridresource": "arc.example.org", "nordugridrsl.queue": "lcg",
        "nordugridrsl.nordugridrsladd": "(runtimeenvironment = APPS/HEP/ATLAS)(runtimeenvironment = ENV/PROXY)",
        "nordugridrsl.addenv.RUCIO_ACCOUNT": "pilot"}))
    values = config.queues["A"].values
    assert values["batchsubmit.condorarc.condor_attributes.arc_resources"] == "<QueueName>lcg</QueueName>"
    assert values["batchsubmit.condorarc.condor_attributes.arc_rte"] == "APPS/HEP/ATLAS,ENV/PROXY"
    assert values["batchsubmit.condorarc.environ"] == "RUCIO_ACCOUNT=pilot"


def test_activated_keys_become_chain_steps(confdir):
    config = load_text(confdir, local_queue("A", confdir.spool, schedplugin="Activated", **{
        "sched.activated.max_pilots_per_cycle": "7", "sched.activated.max_jobs_torun": "None",
        "sched.activated.testmode.pilots": "2"}))
    values = config.queues["A"].values
    assert values["schedplugin"] == ["Ready", "StatusTest", "MaxPerCycle"]
    assert values["sched.maxpercycle.maximum"] == 7 and values["sched.statustest.pilots"] == 2


@pytest.mark.parametrize("plugin", ["CondorGT2", "CondorGRAM", "CondorCREAM"])
def test_gone_plugin_is_an_error_saying_what_to_use(confdir, plugin):
    confdir.write(local_queue("A", confdir.spool, batchsubmitplugin=plugin))
    with pytest.raises(ConfigError) as info:
        confdir.load()
    [line] = [str(p) for p in info.value.problems]
    assert f"{plugin} no longer exists" in line and "use CondorCE" in line


def test_gone_plugin_in_a_disabled_queue_is_a_warning(confdir):
    config = load_text(confdir, local_queue("A", confdir.spool) +
                       local_queue("OLD", confdir.spool, enabled="False", batchsubmitplugin="CondorGT2"))
    assert any("CondorGT2 no longer exists" in w and "disabled" in w for w in warnings(config))
    assert list(config.enabled_queues) == ["A"]


def test_unknown_plugin_name_gets_did_you_mean(confdir):
    confdir.write(local_queue("A", confdir.spool, schedplugin="Ready, MaxPerCyle"))
    with pytest.raises(ConfigError) as info:
        confdir.load()
    assert any("got 'MaxPerCyle'); did you mean MaxPerCycle?" in str(p) for p in info.value.problems)


def test_none_means_unset(confdir):
    config = load_text(confdir, local_queue("A", confdir.spool, **{"batchsubmit.local.proxy": "None",
                                                                   "batchsubmit.local.maxrunning": "None"}),
                       factory="queueDirConf = None\n")
    assert config.queues["A"].values["batchsubmit.local.maxrunning"] == 4  # the default
    assert config.factory.values["queuedirconf"] == ""


@pytest.mark.parametrize("value, warned", [("True", False), ("False", True)])
def test_override_is_accepted_and_the_file_wins(confdir, value, warned):
    config = load_text(confdir, local_queue("A", confdir.spool, override=value, **{"sched.ready.offset": "3"}))
    assert config.queues["A"].values["sched.ready.offset"] == 3
    assert any("override = False" in w for w in warnings(config)) is warned


def test_section_in_two_sources_is_merged_key_by_key_later_winning(confdir):
    confdir.write(local_queue("A", confdir.spool, **{"sched.ready.offset": "1", "apfqueue.sleep": "7"}),
                  factory="queueConf = queues.conf, more.conf\n")
    (confdir.root / "more.conf").write_text("[DEFAULT]\napfqueue.sleep = 99\n\n[A]\nsched.ready.offset = 2\n"
                                            "cloud = %(wmsqueue)s-cloud\n")
    # factory.conf sets queueConf twice: the appended line is the one in force
    text = (confdir.root / "factory.conf").read_text().replace("queueConf = queues.conf\n", "", 1)
    (confdir.root / "factory.conf").write_text(text)
    values = confdir.load().queues["A"].values
    assert values["sched.ready.offset"] == 2  # the later source's own key wins
    assert values["apfqueue.sleep"] == 7  # its [DEFAULT] does not override a key already set
    assert values["cloud"] == "A-cloud"  # %(...)s resolved across the merged section


def test_warnings_are_printed_beside_errors(confdir):
    confdir.write(local_queue("A", confdir.spool, batchsubmitplugin="Nope", **{"sched.ready.offsett": "1"}))
    done = subprocess.run([APF, "check-config", "--conf", str(confdir.root / "factory.conf")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "unknown batch submit plugin" in done.stdout
    assert "warning:" in done.stderr and "sched.ready.offsett" in done.stderr


# ---------------------------------------------------------------- a factory from them, against doubles


def test_factory_from_apf24_files_runs_cycles(tmp_path, panda, condor_pool):
    from autopyfactory.config import load
    from autopyfactory.factory import Factory
    from tests.condordouble import ScheddDouble
    from tests.conftest import wait_for

    conf = tmp_path / "apf24"
    shutil.copytree(APF24, conf)
    (conf / "monitor.conf").write_text((conf / "monitor.conf").read_text().replace(
        "http://apfmon.lancs.ac.uk/api", "http://127.0.0.1:9/api"))
    # a third source merged into the site's queues: the test's PanDA, short cycles
    (conf / "queues-test.conf").write_text("".join(
        f"[{name}]\nwmsstatus.panda.url = {panda.url}\napfqueue.sleep = 0.3\n\n"
        for name in ("BNL_PROD-gridgk01", "ANALY_BNL_SHORT-gridgk02", "ANALY_LRZ", "BNL_LOCAL-condor")))
    factory_conf = conf / "factory.conf"
    factory_conf.write_text(factory_conf.read_text()
                            .replace("file://queues-site.conf", "file://queues-site.conf, queues-test.conf")
                            .replace("wmsstatus.panda.sleep = 150", "wmsstatus.panda.sleep = 0.2")
                            .replace("batchstatus.condor.sleep = 150", "batchstatus.condor.sleep = 0.2"))
    for site in ("BNL_PROD", "ANALY_BNL_SHORT", "ANALY_LRZ", "BNL_LOCAL"):
        panda.set_site(site, activated=3)
    schedd = ScheddDouble()
    condor_pool.local_collector = "cm.example.org:9618"
    condor_pool.add_schedd(schedd, "<192.0.2.10:9618>", collector=condor_pool.local_collector)
    factory = Factory(load(str(factory_conf)))
    records: dict[str, list] = {}
    factory.listeners.append(lambda queue, record: records.setdefault(queue.name, []).append(record))
    factory.start()
    try:
        wait_for(lambda: all(any(r.submitted for r in records.get(q, []))
                             for q in ("ANALY_LRZ", "BNL_LOCAL-condor")), what="submissions of the ARC and local queues")
        # the CE queues hold for their X.509 profile (no voms-proxy-info here) and say why
        wait_for(lambda: records.get("BNL_PROD-gridgk01"), what="a cycle of the CE queue")
        assert not any(r.submitted for r in records["BNL_PROD-gridgk01"])
    finally:
        factory.stop(timeout=10)
    ads = {ad["APF_QUEUE"]: ad for ad in schedd.jobs}
    assert ads["ANALY_LRZ"]["GridResource"] == "arc https://lcg-lrz-ce2.grid.lrz.de:443/arex"
    # the submit description as sent (saved beside the pilots' logs)
    [jdl] = sorted((conf / "logs").glob("*/ANALY_LRZ/*.jdl"))[:1]
    text = jdl.read_text()
    assert "-w generic -u user" in text
    assert "APPS/HEP/ATLAS-SITE-LCG,ENV/PROXY" in text and "<QueueName>lcg</QueueName>" in text
    assert "RUCIO_ACCOUNT=pilot" in ads["ANALY_LRZ"]["Environment"]
    assert "BNL_TEST-gridgk03" not in records


def test_min_email_repeat_seconds_is_the_alarm_interval(confdir):
    confdir.write(local_queue("Q", confdir.spool), factory="factoryMinEmailRepeatSeconds = 600\n")
    config = confdir.load()
    assert config.get("alarms.interval") == 600.0
    assert any(p.key == "factoryMinEmailRepeatSeconds" and "alarms.interval" in p.message for p in config.warnings)


# ---------------------------------------------------------------- APF 2.4's remaining key names


def test_apf24_auth_monitor_and_ssh_names_work_or_say_what_to_write():
    from autopyfactory.config import load

    done = subprocess.run([APF, "check-config", "--conf", str(APF24 / "factory.conf")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "unknown key" not in done.stderr, [line for line in done.stderr.splitlines() if "unknown key" in line]
    config = load(str(APF24 / "factory.conf"))
    myproxy, ssh = config.auth["atlas-myproxy"].values, config.auth["ssh-bnl-login"].values
    assert (myproxy["x509.myproxyhost"], myproxy["x509.myproxyuser"]) == ("myproxy.example.org", "apfpilot")
    assert ssh["ssh.privatekey"] == str(APF24 / "sshkeys" / "id_rsa")
    assert ssh["ssh.passwordfile"] == str(APF24 / "sshkeys" / "id_rsa.pass")
    said = warnings(config)
    assert any("x509.myproxy_hostname" in w and "read as x509.myproxyhost" in w for w in said)
    assert any("x509.myproxy_passphrase" in w and "x509.myproxypassfile" in w for w in said)
    assert "not-kept-here" not in str(config.auth["atlas-myproxy"].values)
    assert config.monitor["dummy-monitor"].values["monitorplugin"] == "Dummy"
    slurm = config.queues["BNL_SLURM_OSG"].values
    assert slurm["batchsubmit.condorssh.port"] == 2222
    assert slurm["schedplugin"] == ["NQueue"] and slurm["sched.nqueue.nqueue"] == 10
    assert slurm["sched.nqueue.depthboost"] == 3
    assert any("SimpleNQueue is APF 2.4's name of the NQueue plugin" in w for w in said)
    assert any("sched.nqueue.pilotlimit" in w and "MaxToRun" in w for w in said)


def test_condorssh_port_and_authprofile_reach_the_grid_resource(tmp_path):
    import htcondor2

    from autopyfactory.config import load
    from autopyfactory.context import FactoryContext

    conf = tmp_path / "apf24"
    shutil.copytree(APF24, conf)
    config = load(str(conf / "factory.conf"))
    queue = config.queues["BNL_SLURM_OSG"]
    submitter = config.registry.get("batchsubmit", "CondorSSH")(queue, FactoryContext(config))
    (tmp_path / "logs").mkdir()
    description = htcondor2.Submit(str(submitter.submit_object(str(tmp_path / "logs"))))
    key, password = conf / "sshkeys" / "id_rsa", conf / "sshkeys" / "id_rsa.pass"
    assert description["grid_resource"] == (f"batch slurm apfpilot@griddev03.racf.bnl.gov:2222 "
                                            f"--rgahp-key {key} --rgahp-pass {password}")


def test_condorssh_authprofile_must_name_an_ssh_profile(confdir):
    queue = local_queue("A", confdir.spool) + local_queue("B", confdir.spool, **{
        "batchsubmitplugin": "CondorSSH", "batchstatusplugin": "Condor", "batchsubmit.condorssh.user": "u",
        "batchsubmit.condorssh.host": "login.example.org", "batchsubmit.condorssh.authprofile": "prod"})
    confdir.write(queue, auth="[prod]\nplugin = Token\ntoken.tokenfile = /nonexistent\n")
    with pytest.raises(ConfigError) as info:
        confdir.load()
    [line] = [str(p) for p in info.value.problems]
    assert "[B] batchsubmit.condorssh.authprofile: no SSH profile [prod]" in line and "plugin = Token" in line


def test_a_profile_inheriting_another_plugin_from_default_says_which_to_write(confdir):
    confdir.write(local_queue("A", confdir.spool), auth="[DEFAULT]\nplugin = X509\nx509.lifetime = 604800\n\n"
                  "[login]\nssh.privatekeyfile = /keys/id_rsa\n")
    with pytest.raises(ConfigError) as info:
        confdir.load()
    assert any("[login] plugin: plugin = X509 comes from [DEFAULT]" in str(p) and "write plugin = SSH" in str(p)
               for p in info.value.problems)


def test_dummy_monitor_does_nothing_and_queues_can_name_it(confdir, started_factory):
    confdir.write(local_queue("A", confdir.spool, monitorsection="quiet"),
                  monitor="[quiet]\nmonitorplugin = Dummy\n")
    config = confdir.load()
    assert not [w for w in warnings(config) if "monitor" in w.lower()]
    factory = started_factory(confdir)
    from tests.conftest import wait_for

    wait_for(lambda: factory.queues["A"].cycles >= 2, what="two cycles with the Dummy monitor")
    assert factory.queues["A"].health().level != "critical"


@pytest.mark.parametrize("reconfig, interval", [("False", 0), ("True", 600)])
def test_config_reconfig_false_turns_the_periodic_reread_off(confdir, reconfig, interval):
    confdir.write(local_queue("Q", confdir.spool),
                  factory=f"config.reconfig = {reconfig}\nconfig.reconfig.interval = 600\n")
    config = confdir.load()
    assert config.get("config.reconfig.interval") == interval
    assert any(p.key == "config.reconfig" and "APF 2.4 key" in p.message for p in config.warnings)
