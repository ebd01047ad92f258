"""Every hook of AutoPyFactory, in one place.

Plugins reach the factory through pluggy. The built-in plugins are
registered through these same hooks (see ``builtin.py``), so they prove the
interface a third-party package or a drop-in file uses.
"""

from __future__ import annotations

import pluggy

PROJECT = "autopyfactory"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def apf_plugins() -> list[type]:
    """Return the plugin classes this module provides.

    Each class subclasses one base of ``autopyfactory.interfaces``
    (SchedulerPlugin, WMSStatusPlugin, BatchStatusPlugin, BatchSubmitPlugin,
    MonitorPlugin, AuthPlugin) and sets ``name``. Called once at start-up
    and on every reload; results of all implementations are merged.
    A drop-in ``*.py`` file in ``plugindirs`` need not implement this hook:
    its plugin classes are found by their base class.
    """
