"""Pilot plugin ``exec``: runs the pilot command as given (an argv, no shell).

The command is what follows ``--``, else ``$APF_PILOT`` (split like a shell
would, never run by one); the wrapper's pass-through arguments (everything
that is not a --wrapper* option, APF 2.4's ``-s SITE -w generic -u managed``)
are appended unchanged. For sites whose real pilot is a script of their own, e.g.
``executable.arguments = --wrapperplugin=exec --wrapperwmsqueue=%(wmsqueue)s -- /opt/pilot/run.sh -q %(wmsqueue)s``;
also what a --wrappervo no plugin claims gets. The --wrapper* values are
exported to the pilot as APF_WRAPPER_<NAME> (APF_WRAPPER_VO,
APF_WRAPPER_WMSQUEUE, ...). The pilot's exit code is the wrapper's.
"""

import os
import shlex

NAME = "exec"


def run(ctx):
    command = list(ctx.args) or shlex.split(os.environ.get("APF_PILOT", ""))
    if not command:
        ctx.log.error("no pilot command: give it after -- in executable.arguments, or set APF_PILOT in the "
                      "pilot environment (batchsubmit.<plugin>.environ), or name a pilot plugin with --wrapperplugin")
        return "badoptions", 66
    for key, value in vars(ctx.options).items():
        if isinstance(value, str):
            os.environ["APF_WRAPPER_" + key.upper()] = value
    argv = command + list(ctx.passthrough)
    try:
        code = ctx.run_payload(argv)
    except OSError as exc:
        ctx.log.error("cannot run %s: %s", argv[0], exc)
        return "cannotrun", 68
    return ("ok" if code == 0 else "pilotfailed"), code
