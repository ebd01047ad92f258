"""The Local WMS: pending work is a spool directory of JSON files."""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from autopyfactory.config import FactoryConfig, Key
from autopyfactory.info import WMSQueueInfo
from autopyfactory.interfaces import WMSStatusPlugin
from autopyfactory.status import Unknown


def spooldir(options: dict, config: FactoryConfig) -> str:
    """``wmsstatus.local.spooldir``, default ``spool`` beside baseLogDir."""
    return options.get("spooldir") or config.spool_default


def count_items(directory: str, missing_ok: bool = True) -> int:
    """``*.json`` files directly in ``directory``; a directory that cannot be read raises OSError."""
    try:
        with os.scandir(directory) as entries:
            return sum(1 for e in entries if e.name.endswith(".json") and e.is_file())
    except FileNotFoundError:
        if missing_ok:
            return 0
        raise


class Local(WMSStatusPlugin):
    """Work items waiting in ``<spooldir>/<wmsqueue>/*.json`` (one file = one job).

    Keys: ``wmsstatus.local.spooldir`` (default: ``spool`` beside baseLogDir).
    Returns per WMS queue: ready = files directly in the directory; running =
    items claimed by pilots (``claimed/``); done = items finished (``done/``).
    A missing directory is created and holds zero items. A pilot claims an
    item by renaming it out of the directory. A directory that cannot be
    created or read makes its queue *unknown* (``Unknown`` in the answer);
    when no queue's directory can be read the whole poll fails.
    """

    name = "Local"
    keys = {"spooldir": Key("path", "", help="directory holding one sub-directory per WMS queue")}
    endpoint_keys = ("spooldir",)
    name_keys = ("spooldir",)
    default_sleep = 10.0
    default_maxage = 120.0

    @classmethod
    def pilot_environment(cls, options: dict[str, Any], config: FactoryConfig) -> dict[str, str]:
        """The pilot wrapper claims work items from ``APF_WMS_SPOOLDIR``."""
        return {"APF_WMS_SPOOLDIR": spooldir(options, config)}

    def poll(self, queues: Collection[str]) -> dict[str, WMSQueueInfo | Unknown]:
        root = spooldir(self.options, self.context.config)
        result: dict[str, WMSQueueInfo | Unknown] = {}
        errors = []
        for wmsqueue in queues:
            directory = os.path.join(root, wmsqueue)
            try:
                os.makedirs(directory, exist_ok=True)
                result[wmsqueue] = WMSQueueInfo(
                    ready=count_items(directory, missing_ok=False),
                    running=count_items(os.path.join(directory, "claimed")),
                    done=count_items(os.path.join(directory, "done")),
                )
            except OSError as exc:
                # an unreadable spool is unknown, never zero
                reason = f"cannot read spool directory {exc.filename or directory}: {exc.strerror or exc}"
                result[wmsqueue] = Unknown(reason)
                errors.append(reason)
        if queues and len(errors) == len(queues):
            raise OSError(errors[0] + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        return result
