"""The keys of [Factory] and of a queue section, with their types and defaults.

Keys keep their APF 2.4 names. Plugins declare their own keys (``keys`` of
each plugin class); these tables are the factory's and the queue's own.
"""

from __future__ import annotations

from autopyfactory.settings import Key

FACTORY_SECTION = "Factory"

FACTORY_KEYS: dict[str, Key] = {
    "factoryId": Key("str", required=True, help="name of this factory, unique across the grid"),
    "factoryAdminEmail": Key("str", "", help="where alarm mails go (alarms: docs/operations.md)"),
    "factorySMTPServer": Key("str", "", help="host[:port] of the SMTP server for alarm mails; empty: no mails"),
    "alarms.interval": Key("float", 3600.0, min=0, help="seconds: at most one alarm per queue and cause"),
    "alarms.credentialexpiry": Key("float", 6 * 3600.0, min=0,
                                   help="seconds: a credential with less time left raises an alarm"),
    "alarms.unknownafter": Key("float", 1800.0, min=0,
                               help="seconds a queue's WMS or batch status may stay unknown before an alarm"),
    "alarms.sender": Key("str", "", help="From: of alarm mails (default autopyfactory@<this host>)"),
    "alarms.command": Key("argv", [], help="command run for each alarm, the alarm as JSON on stdin (no shell)"),
    "alarms.commandtimeout": Key("float", 30.0, min=0.1, max=3600, help="seconds before alarms.command is killed"),
    "alarms.webhook": Key("url", "", help="http(s) URL that each alarm is POSTed to as JSON"),
    "alarms.webhooktimeout": Key("float", 10.0, min=0.1, max=300, help="seconds for each try of alarms.webhook"),
    "alarms.webhookretries": Key("int", 3, min=0, max=10, help="more tries of alarms.webhook after a failure"),
    "factoryUser": Key("str", ""),
    "enablequeues": Key("bool", True),
    "queueConf": Key("list", [], help="comma list of queue files or http(s) URLs"),
    "queueDirConf": Key("path", ""),
    "authConf": Key("path", ""),
    "monitorConf": Key("path", ""),
    "baseLogDir": Key("path", "/var/log/apf"),
    "baseLogDirUrl": Key("str", ""),
    "logserver.enabled": Key("bool", False),
    "logserver.port": Key("int", 25880, min=0, max=65535),
    "logserver.bind": Key("str", "127.0.0.1"),
    "logserver.allowrobots": Key("bool", False),
    "logserver.trustedproxy": Key("str", "", help="address of a reverse proxy in front whose X-Forwarded-For and "
                                  "X-Forwarded-Proto are believed (empty: none)"),
    "cleanlogs.keepdays": Key("int", 14, min=0),
    "cleanlogs.maxdiskpercent": Key("float", 90.0, min=0, max=100),
    "factory.sleep": Key("float", 30.0, min=0.1),
    "maxperfactory.maximum": Key("int", None, min=0),
    "maxperfactory.lastgood": Key("float", 1800.0, min=0, help="seconds a queue whose batch status is unknown "
                                  "counts for maxperfactory.maximum with its last good answer"),
    "plugindirs": Key("list", ["/etc/apf/plugins.d"]),
    "persistence.dbpath": Key("path", ""),
    "persistence.keepdays": Key("int", 14, min=1),
    "persistence.flushinterval": Key("float", 15.0, min=0.1, max=3600,
                                     help="seconds between two writes of the cycles and finished pilots (one "
                                          "transaction for every queue); a kill -9 loses at most that much of them"),
    "peers.alivecycles": Key("int", 3, min=1),
    "admin.tokenfile": Key("path", ""),
    "admin.allowremote": Key("bool", False, help="admin API also for clients not on the loopback interface"),
    "admin.sessiontimeout": Key("float", 3600.0, min=60, max=7 * 86400,
                                help="seconds a sign-in on the pages lasts (then sign in again)"),
    "config.reconfig.interval": Key("int", 0, min=0),
    # queues from CRIC (docs/cric.md)
    "config.queues.plugin": Key("str", "File", choices=("File", "CRIC"),
                                help="File: queues from queueConf only; CRIC: also from CRIC's pandaqueue JSON"),
    "config.queues.cric.url": Key("str", "", help="URL or file of CRIC's pandaqueue JSON"),
    "config.queues.cric.defaults": Key("path", "", help="file whose [DEFAULT] is every CRIC queue's template"),
    "config.queues.cric.vos": Key("list", [], help="only PanDA queues of these VOs (vo_name); empty: all"),
    "config.queues.cric.clouds": Key("list", [], help="only PanDA queues of these clouds; empty: all"),
    "config.queues.cric.sites": Key("list", [], help="only these sites (atlas_site, site or panda_resource)"),
    "config.queues.cric.activities": Key("list", [], help="only PanDA queues of these types (production, "
                                                         "analysis, unified); empty: all"),
    "config.queues.cric.pilotmanager": Key("list", ["apf"], help="only PanDA queues with this pilot_manager"),
    "config.queues.cric.jobsperpilot": Key("float", 1.0, min=0.001, help="jobs one pilot runs (scale factor)"),
    "config.queues.cric.numfactories": Key("float", 1.0, min=0.001, help="factories serving the same queues"),
    "config.remote.timeout": Key("float", 60.0, min=1, max=3600,
                                 help="seconds for a whole answer of a remote queueConf URL"),
    "config.remote.maxbytes": Key("int", 16 * 1024 * 1024, min=1024,
                                  help="bytes a remote queueConf answer may have; a bigger one is refused"),
    "config.remote.cachedir": Key("path", "", help="where the last good copy of each remote queueConf is kept "
                                  "(default: the persistence store's directory)"),
}

# [Factory] wmsstatus.<plugin>.sleep / .maxage / .breakerfailures / .breakercooldown (batchstatus alike)
STATUS_TIMING_PARAMS: dict[str, Key] = {
    "sleep": Key("float", None, min=0.1, help="seconds between two status queries"),
    "maxage": Key("float", None, min=0.1, help="status older than this is unknown"),
    "breakerfailures": Key("int", None, min=1, help="consecutive failures that open the circuit breaker"),
    "breakercooldown": Key("float", None, min=0.1, help="seconds the breaker stays open before a probe"),
}

QUEUE_KEYS: dict[str, Key] = {
    "enabled": Key("bool", True),
    "wmsqueue": Key("str", None, help="name of the queue in the WMS (default: the section name)"),
    "batchqueue": Key("str", None, help="batch-side queue / partition (default: wmsqueue)"),
    "apfqueue.sleep": Key("float", 360.0, min=0.1),
    "apfqueue.maxpercycle": Key("int", 1000, min=0, help="most pilots one cycle submits, whatever the chain says"),
    "apfqueue.maxpending": Key("int", 100, min=0, help="most pilots pending in the batch system; "
                               "no submission beyond it, whatever the chain says"),
    "apfqueue.ledger.maxage": Key("float", 6 * 3600.0, min=0, help="seconds a submitted pilot the factory has not "
                                  "seen end counts as pending or running whatever the batch status says"),
    "apfqueue.faultbackoff": Key("bool", True, help="probe pilots only while most recent pilots fault"),
    "apfqueue.faultbackoff.pilots": Key("int", 10, min=1, help="how many of the latest ended pilots are judged"),
    "apfqueue.faultbackoff.minimum": Key("int", 3, min=1, help="ended pilots needed before judging"),
    "apfqueue.faultbackoff.fraction": Key("float", 0.5, min=0, max=1,
                                          help="fault backoff when more than this fraction of them faulted"),
    "apfqueue.faultbackoff.leavefraction": Key("float", 0.2, min=0, max=1, help="in fault backoff until this "
                                               "fraction of them or less faulted (below .fraction: no flapping)"),
    "wmsstatusplugin": Key("str", required=True),
    "batchstatusplugin": Key("str", required=True),
    "batchsubmitplugin": Key("str", required=True),
    "schedplugin": Key("list", ["Ready"]),
    "monitorsection": Key("list", []),
    "executable": Key("path", ""),
    "executable.arguments": Key("str", ""),
    "executable.defaultarguments": Key("str", "", help="APF 2.4: arguments shared by queues, written into "
                                       "executable.arguments as %(executable.defaultarguments)s"),
    "override": Key("bool", True, help="APF 2.4: this file's values win over schedconfig/AGIS; "
                    "queues.conf is the only source here, so its values always win"),
    "cleanlogs.keepdays": Key("int", None, min=0),
    "vo": Key("str", ""),
    "cloud": Key("str", ""),
    "grid": Key("str", ""),
}
