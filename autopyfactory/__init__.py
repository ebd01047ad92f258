"""AutoPyFactory: a pilot factory for grid and HPC sites."""

__version__ = "3.0.0"
