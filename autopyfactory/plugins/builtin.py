"""Registers the built-in plugins through the same hook third-party plugins use."""

from __future__ import annotations

import importlib
import inspect

from autopyfactory.interfaces import Plugin
from autopyfactory.plugins.hookspecs import hookimpl

# one module per plugin (or per family); each module's Plugin subclasses are registered
BUILTIN_MODULES = [
    "autopyfactory.plugins.sched.builtin",
    "autopyfactory.plugins.wmsstatus.local",
    "autopyfactory.plugins.batchstatus.local",
    "autopyfactory.plugins.batchsubmit.local",
    "autopyfactory.plugins.monitor.log",
]


def plugin_classes(module) -> list[type[Plugin]]:
    """Concrete plugin classes defined in ``module`` (not imported into it)."""
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Plugin)
        and obj.__module__ == module.__name__
        and obj.name
        and not inspect.isabstract(obj)
    ]


@hookimpl
def apf_plugins() -> list[type]:
    classes: list[type] = []
    for name in BUILTIN_MODULES:
        classes.extend(plugin_classes(importlib.import_module(name)))
    return classes
