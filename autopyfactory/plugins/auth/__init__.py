"""Credential plugins: proxies, tokens and keys that submissions need."""
