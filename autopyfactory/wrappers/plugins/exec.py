"""Pilot plugin ``exec``: runs the pilot given after ``--`` (an argv, no shell).

For sites whose real pilot is a script of its own, e.g.
``executable.arguments = --wrapperplugin=exec --wrapperwmsqueue=%(wmsqueue)s -- /opt/pilot/run.sh -q %(wmsqueue)s``.
The --wrapper* values are exported to the pilot as APF_WRAPPER_<NAME>
(APF_WRAPPER_VO, APF_WRAPPER_WMSQUEUE, ...). The pilot's exit code is the
wrapper's.
"""

import os

NAME = "exec"


def run(ctx):
    if not ctx.args:
        ctx.log.error("the exec pilot needs the pilot command after --")
        return "badoptions", 66
    for key, value in vars(ctx.options).items():
        if isinstance(value, str):
            os.environ["APF_WRAPPER_" + key.upper()] = value
    try:
        code = ctx.run_payload(list(ctx.args))
    except OSError as exc:
        ctx.log.error("cannot run %s: %s", ctx.args[0], exc)
        return "cannotrun", 68
    return ("ok" if code == 0 else "pilotfailed"), code
