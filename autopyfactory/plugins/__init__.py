"""Plugins: hook specifications, discovery, and the built-in plugins (one sub-package per kind)."""
