"""``apf queues-from-cric``: write a queues.conf built from CRIC's pandaqueue JSON, once (docs/cric.md)."""

from __future__ import annotations

import argparse
import os
import sys

from autopyfactory.config import cric, remote
from autopyfactory.redact import redact
from autopyfactory.settings import split_list


def add_parser(sub) -> None:
    p = sub.add_parser("queues-from-cric", help="write a queues.conf built from CRIC's pandaqueue JSON")
    p.add_argument("--cric", required=True, metavar="URL|FILE", help="CRIC's pandaqueue JSON (a URL or a file)")
    p.add_argument("--defaults", metavar="FILE", help="a file whose [DEFAULT] is every section's template "
                                                      "(copied at the top of the output)")
    p.add_argument("--vo", default="", help="only these VOs (vo_name), comma list")
    p.add_argument("--cloud", default="", help="only these clouds, comma list")
    p.add_argument("--site", default="", help="only these sites (atlas_site, site or panda_resource), comma list")
    p.add_argument("--activity", default="", help="only these PanDA queue types (production, analysis, unified)")
    p.add_argument("--pilot-manager", default="apf", help="only PanDA queues with this pilot_manager (apf)")
    p.add_argument("--jobs-per-pilot", type=float, default=1.0, help="jobs one pilot runs (1)")
    p.add_argument("--factories", type=float, default=1.0, help="factories serving the same queues (1)")
    p.add_argument("--timeout", type=float, default=remote.DEFAULT_DEADLINE, help="seconds for the whole answer")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write (default: standard output)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.jobs_per_pilot <= 0 or args.factories <= 0:
        print("apf queues-from-cric: --jobs-per-pilot and --factories must be more than 0", file=sys.stderr)
        return 2
    try:
        if cric.is_url(args.cric):
            text = remote.fetch(args.cric, args.timeout, check=cric.parse).text
        else:
            text = cric.read_file(cric.local_path(args.cric, os.getcwd()))
        queues = cric.parse(text)
        defaults = cric.read_file(args.defaults) if args.defaults else ""
    except (remote.FetchError, OSError, ValueError) as exc:
        print(f"apf queues-from-cric: cannot read {redact(args.cric)}: {redact(str(exc))}", file=sys.stderr)
        return 2
    selection = cric.Selection(split_list(args.vo), split_list(args.cloud), split_list(args.site),
                               split_list(args.activity), split_list(args.pilot_manager), args.jobs_per_pilot,
                               args.factories)
    built = cric.build(queues, selection)
    for note in built.notes:
        print(f"warning: {note}", file=sys.stderr)
    text = cric.render(built, defaults, redact(args.cric))
    if args.output:
        tmp = f"{args.output}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, args.output)
        print(f"{len(built.sections)} queue section(s) written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
