"""Write the man pages of ``autopyfactory`` and ``apf`` from their argparse parsers (run at RPM build).

    python rpm/manpage.py OUTDIR        -> OUTDIR/autopyfactory.1, OUTDIR/apf.1

The package must be importable (the spec puts the buildroot's site-packages and bundled libraries
on PYTHONPATH). Options and sub-commands come from the parsers themselves, so the pages cannot drift
from the commands; the prose sections point to the documentation shipped with the RPM.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from autopyfactory import __version__
from autopyfactory.cli.apf import build_parser
from autopyfactory.cli.daemon import parser as daemon_parser

DOCS = "/usr/share/doc/autopyfactory"
SEE_ALSO = {
    "autopyfactory": ("apf(1), systemctl(1), journalctl(1)",
                      f"{DOCS}/docs/operations.md (running it as a service), {DOCS}/README.md"),
    "apf": ("autopyfactory(1)", f"{DOCS}/README.md (commands), {DOCS}/docs/web.md (status, control)"),
}


def roff(text: str) -> str:
    """Plain text made safe for roff: backslashes, leading dots and quotes, hyphens."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.splitlines())


def described(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help as --help prints it (%(default)s and the like expanded)."""
    return roff(parser._get_formatter()._expand_help(action)) if action.help else ""


def options(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or not action.option_strings:
            continue
        if action.help == argparse.SUPPRESS:
            continue
        metavar = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
        names = ", ".join(f"\\fB{roff(name)}\\fR{roff(metavar)}" for name in action.option_strings)
        lines += [".TP", names, described(parser, action)]
    return lines


def positionals(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        lines += [".TP", f"\\fI{roff(action.metavar or action.dest)}\\fR", described(parser, action)]
    return lines


def page(name: str, parser: argparse.ArgumentParser, date: str) -> str:
    usage = parser.format_usage().removeprefix("usage: ").strip()
    lines = [
        f'.TH {name.upper()} 1 "{date}" "autopyfactory {__version__}" "AutoPyFactory"',
        ".SH NAME", f"{name} \\- {roff(parser.description or '')}",
        ".SH SYNOPSIS", ".nf", roff(" ".join(usage.split())), ".fi",
        ".SH OPTIONS", *options(parser),
    ]
    commands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if commands:
        lines.append(".SH COMMANDS")
        helps = {choice.dest: choice.help for choice in commands[0]._choices_actions}
        for command, sub in commands[0].choices.items():
            sub_usage = " ".join(sub.format_usage().removeprefix("usage: ").split())
            lines += [".SS " + roff(command), roff(helps.get(command) or sub.description or ""), ".PP",
                      ".nf", roff(sub_usage), ".fi", *positionals(sub), *options(sub)]
    related, docs = SEE_ALSO[name]
    lines += [".SH SEE ALSO", roff(related), ".PP", roff(docs)]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    outdir = argv[0]
    os.makedirs(outdir, exist_ok=True)
    # reproducible builds: the date of SOURCE_DATE_EPOCH when rpmbuild sets it
    date = time.strftime("%Y-%m-%d", time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))))
    for name, parser in (("autopyfactory", daemon_parser()), ("apf", build_parser())):
        parser.prog = name
        with open(os.path.join(outdir, f"{name}.1"), "w") as handle:
            handle.write(page(name, parser, date))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
