"""The one redaction: secrets never leave the process.

Everything that leaves the factory passes through ``redact`` first: the status
and queue pages (every ``{{ … }}`` of the templates), every JSON answer of the
API, metric label values, alarm mails, the admin audit trail, the admin
config dump and reload view, and every log line (``RedactFilter`` on each log
handler). What it removes (docs/web.md, "Secrets"):

- URL userinfo: ``https://user:pass@host`` -> ``https://<redacted>@host``;
- secret-looking parameters ``name=value`` / ``name: value``, in a URL query or
  anywhere (``?token=…``, ``&apikey=…``, ``password: …``, ``"secret": "…"``):
  a name holding pass, secret, token, key or credential (but not ending in file, path
  or dir: those name where a secret is), or a name that is sig / signature (alone or
  as its last part);
- ``Authorization`` header values and ``Bearer``/``Basic`` credentials;
- the value of secret-looking options: ``-p``, ``--pass*``, ``--*key*``,
  ``--sig*``, ``--*token*``, ``--*secret*``, ``--*cred*`` (``--opt value`` and ``--opt=value``);
- environment assignments ``*_KEY=``, ``*TOKEN*=``, ``*PASS*=``, ``*SECRET*=``
  (any case): covered by the parameters rule above.

A redacted value becomes ``<redacted>``; the name before it stays, so a
reader still sees which setting was there.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "<redacted>"

# a value: quoted (up to its closing quote) or a run of characters that cannot end a URL parameter or word
_VALUE = r"""(?:"[^"\n]*"|'[^'\n]*'|[^\s"'&,;<>)\]}]+)"""

# user:password@ (or its start, cut short by "…" before it was redacted)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s\"'<>…]+(@|…)")
_AUTHORIZATION = re.compile(
    r"(?i)(\bauthorization[\"']?\s*[:=]\s*+[\"']?+)(?!(?:bearer|basic|token|digest|negotiate)\s+<)(?:(bearer|basic|token|digest|negotiate)\s+)?"
    r"(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s\"',;<>]+)")
_SCHEME_CREDENTIAL = re.compile(r"(?i)\b(bearer|basic)(\s+)(?!<redacted>)[A-Za-z0-9._~+/=-]{6,}")
# --opt value / --opt=value / -p value
_OPTION_NAME = r"(?:-p|--(?:[a-z0-9]+[-_])*(?:[a-z0-9]*(?:pass|key|token|secret|cred)[a-z0-9_-]*|sig[a-z0-9_-]*))"
_OPTION = re.compile(r"(?i)(?<![\w-])(" + _OPTION_NAME + r")(=|\s+)(?!-)" + _VALUE)
_OPTION_ALONE = re.compile(r"(?i)" + _OPTION_NAME)  # an argv element whose next element is its value
# name=value, name: value, "name": "value"; the name as one word of letters, digits, _ . -
_SETTING = re.compile(
    r"(?i)(?<![\w.-])((?:[\w.-]*(?:pass|secret|token|key|credential)[\w.-]*(?<!file)(?<!path)(?<!dir)"
    r"|(?:[\w.-]*[_.-])?sig(?:nature)?)[\"']?\s*(?:=|:(?!//))\s*)(?!<redacted>)"
    r"(?!(?:lambda|None|True|False)\b)" + _VALUE)  # not code in a traceback: sorted(…, key=lambda …)
# every rule above needs one of these: most text is passed through after this one search
_CANDIDATES = ("@", "…", "pass", "secret", "token", "key", "cred", "sig", "auth", "bearer", "basic", "-p")
_CANDIDATE = re.compile("|".join(re.escape(word) for word in _CANDIDATES))  # searched in the lower-cased text


def redact(text: str) -> str:
    """``text`` with every secret of the list above replaced by ``<redacted>``."""
    if not text:
        return text
    if not _CANDIDATE.search(text.lower()):  # one scan: every log line comes here (a cycle's: 1.7 µs, not 6.5)
        return text
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}", text)
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2) + ' ' if m.group(2) else ''}{REDACTED}", text)
    text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _OPTION.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _SETTING.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_data(data: Any) -> Any:
    """Every string of a JSON-like structure (dicts, lists, tuples) redacted; keys stay. A list is
    read as an argv too: the element after a secret option alone (``["-p", "X"]``) is hidden."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {key: redact_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        shown, hide = [], False
        for value in data:
            if hide and isinstance(value, str) and not value.startswith("-"):
                shown.append(REDACTED)
                hide = False
                continue
            hide = isinstance(value, str) and bool(_OPTION_ALONE.fullmatch(value))
            shown.append(redact_data(value))
        return shown
    return data


# a config key whose name says it holds a secret or the path of one: its whole value is hidden
SECRET_KEY = re.compile(r"pass|secret|token|key|cert|credential|proxyfile|baseproxy|x509|renewcommand", re.I)


def redact_setting(key: str, value: Any) -> Any:
    """A configuration value as shown (admin config dump, queue page): whole when the key names a secret."""
    if SECRET_KEY.search(key):
        return REDACTED if value not in (None, "", []) else value
    return redact_data(value)


class RedactFilter(logging.Filter):
    """Redacts a log record's message, thread name and exception text before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself
            return True
        record.msg, record.args = redact(message), ()
        record.threadName = redact(record.threadName or "")  # a poller's thread is named after its endpoint
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def redact_handler(handler: logging.Handler) -> logging.Handler:
    """``handler`` with the redaction filter (once)."""
    if not any(isinstance(f, RedactFilter) for f in handler.filters):
        handler.addFilter(RedactFilter())
    return handler
