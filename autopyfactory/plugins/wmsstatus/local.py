"""The Local WMS: pending work is a spool directory of JSON files."""

from __future__ import annotations

import os
from collections.abc import Collection

from autopyfactory.config import FactoryConfig, Key
from autopyfactory.info import WMSQueueInfo
from autopyfactory.interfaces import WMSStatusPlugin


def spooldir(options: dict, config: FactoryConfig) -> str:
    """``wmsstatus.local.spooldir``, default ``spool`` beside baseLogDir."""
    return options.get("spooldir") or config.spool_default


def count_items(directory: str) -> int:
    try:
        with os.scandir(directory) as entries:
            return sum(1 for e in entries if e.name.endswith(".json") and e.is_file())
    except FileNotFoundError:
        return 0


class Local(WMSStatusPlugin):
    """Work items waiting in ``<spooldir>/<wmsqueue>/*.json`` (one file = one job).

    Keys: ``wmsstatus.local.spooldir`` (default: ``spool`` beside baseLogDir).
    Returns per WMS queue: ready = files directly in the directory; running =
    items claimed by pilots (``claimed/``); done = items finished (``done/``).
    A missing directory is created and holds zero items. A pilot claims an
    item by renaming it out of the directory.
    """

    name = "Local"
    keys = {"spooldir": Key("path", "", help="directory holding one sub-directory per WMS queue")}
    endpoint_keys = ("spooldir",)
    default_sleep = 10.0
    default_maxage = 120.0

    def poll(self, queues: Collection[str]) -> dict[str, WMSQueueInfo]:
        root = spooldir(self.options, self.context.config)
        result = {}
        for wmsqueue in queues:
            directory = os.path.join(root, wmsqueue)
            os.makedirs(directory, exist_ok=True)
            result[wmsqueue] = WMSQueueInfo(
                ready=count_items(directory),
                running=count_items(os.path.join(directory, "claimed")),
                done=count_items(os.path.join(directory, "done")),
            )
        return result
