"""The one redaction (autopyfactory/redact.py): a table of the forms secrets take, and what must stay."""

from __future__ import annotations

import logging

import pytest

from autopyfactory.redact import REDACTED, RedactFilter, redact, redact_data, redact_setting

S = "S3cr3tV4lue"  # the planted secret in every form below

SECRET_FORMS = [
    # URL userinfo
    f"https://user:{S}@panda.example.org:25443/server/panda",
    f"http://{S}@host/queues.conf",
    f"endpoint https://u:{S}@pandaserver.cern.ch/server failed: 503",
    f"ftp://anon:{S}@[::1]:2121/file",
    # secret-looking query parameters
    f"https://panda.example.org/server?token={S}",
    f"https://panda.example.org/server?site=X&apikey={S}&x=1",
    f"https://host/q.conf?access_token={S}",
    f"https://bucket.s3/x?X-Amz-Signature={S}&X-Amz-Date=1",
    f"https://host/x?sig={S}",
    f"https://host/x?password={S}#frag",
    f"https://host/x?api_key={S}",
    f"https://host/x?credential={S}",
    # Authorization / bearer
    f"Authorization: Bearer {S}",
    f"authorization: Basic {S}",
    f"-H 'Authorization: Bearer {S}'",
    f"{{'Authorization': 'Bearer {S}'}}",
    f"Authorization={S}",
    f"got a bearer {S} from the server",
    # options
    f"-p {S}",
    f"--pass {S}",
    f"--password={S}",
    f"--passwd '{S}'",
    f"--apikey={S}",
    f"--api-key {S}",
    f"--key {S}",
    f"--sig={S}",
    f"--signature {S}",
    f"--token {S}",
    f"--access-token={S}",
    f"--client-secret \"{S}\"",
    f"-s SITE -p {S} -q QUEUE",
    # environment assignments
    f"X_API_KEY={S}",
    f"AWS_SECRET_ACCESS_KEY={S}",
    f"PANDA_AUTH_TOKEN={S} pilot.sh",
    f"DB_PASSWORD={S}",
    f"MYPASS={S}",
    f"export GITHUB_TOKEN={S}",
    f"env PANDA_KEY='{S}' ./pilot",
    # name=value and name: value anywhere
    f"password={S}",
    f"passwd: {S}",
    f'{{"secret": "{S}"}}',
    f"token: {S}",
    f"client_secret={S};",
]


@pytest.mark.parametrize("text", SECRET_FORMS)
def test_every_form_of_secret_is_redacted(text):
    shown = redact(text)
    assert S not in shown, shown
    assert REDACTED in shown


def test_the_table_has_at_least_thirty_forms():
    assert len(SECRET_FORMS) >= 30


KEPT = [
    "queue ANALY_X: submitted 5 pilots (ready 12, pending 0)",
    "https://panda.example.org:25443/server/panda/getJobStatisticsPerSite?computingsite=X",
    "2026-12-02T06:00:00Z",
    "--queue ANALY_X --pilot-type PR -s SITE",
    "sbatch --array=0-4 --job-name=apf-Q",
    "paused until 2026-12-02T06:00:00Z: site downtime",
    "admin.tokenfile /etc/apf/token has mode 0644",
    "[Factory] admin.tokenfile: cannot open /etc/apf/token",
    "file:///etc/apf/queues.conf",
    "user@example.org",  # a mail address is no URL userinfo
    "signal=15 keepalive=3",
]


@pytest.mark.parametrize("text", KEPT)
def test_plain_text_stays_as_it_is(text):
    assert redact(text) == text


def test_the_name_before_a_secret_stays_readable():
    assert redact(f"--apikey={S} --queue Q") == f"--apikey={REDACTED} --queue Q"
    assert redact(f"https://u:{S}@host/p?token={S}&site=X") == f"https://{REDACTED}@host/p?token={REDACTED}&site=X"
    assert redact(f"Authorization: Bearer {S}") == f"Authorization: Bearer {REDACTED}"


def test_redaction_is_idempotent():
    for text in SECRET_FORMS:
        once = redact(text)
        assert redact(once) == once


def test_structures_and_settings():
    data = {"a": [f"--token {S}", 3, None, {"b": f"https://x:{S}@h/"}], "n": 1.5}
    shown = redact_data(data)
    assert S not in repr(shown)
    assert shown["n"] == 1.5 and shown["a"][1] == 3
    assert redact_setting("admin.tokenfile", "/etc/apf/token") == REDACTED
    assert redact_setting("executable.arguments", f"-q Q --pass {S}") == f"-q Q --pass {REDACTED}"


def test_log_filter_redacts_message_arguments_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "cannot fetch %s: %s",
                               (f"https://u:{S}@h/q.conf", "boom"), None)
    try:
        raise RuntimeError(f"GET https://h/?token={S} failed")
    except RuntimeError:
        import sys
        record.exc_info = sys.exc_info()
    assert RedactFilter().filter(record)
    text = logging.Formatter().format(record)
    assert S not in text
    assert "cannot fetch https://<redacted>@h/q.conf: boom" in text


def test_a_url_cut_short_before_its_at_sign_is_still_redacted():
    from autopyfactory.health import one_line

    assert S[:6] not in redact(f"cannot reach https://user:{S[:6]}…")
    assert S not in one_line(f"cannot reach https://user:{S}@panda.example.org/server", 30)
    assert redact("web: serving on http://127.0.0.1:25880") == "web: serving on http://127.0.0.1:25880"


def test_a_placeholder_in_angle_brackets_is_no_secret():
    text = "missing bearer token (Authorization: Bearer <token from admin.tokenfile>)"
    assert redact(text) == text


def test_settings_named_for_a_secret_are_hidden_whole():
    assert redact_setting("batchsubmit.condorce.condor_attributes.x509userproxy", "/tmp/x509up_u1234") == REDACTED
    assert redact_setting("x509.myproxypassfile", "/etc/pass") == REDACTED
    assert redact_setting("admin.tokenfile", "") == ""  # nothing to hide
    assert redact_setting("queueconf", ["https://u:p@h/q.conf", "local.conf"]) == [f"https://{REDACTED}@h/q.conf",
                                                                            "local.conf"]
    assert redact_setting("batchsubmit.slurm.extraargs", "--comment=x SECRET: abc token=xyz,y") == (
        f"--comment=x SECRET: {REDACTED} token={REDACTED},y")
    assert redact_setting("apfqueue.sleep", 360.0) == 360.0
    assert redact_setting("wmsqueue", "ANALY_X") == "ANALY_X"


def test_an_argv_list_hides_the_value_after_a_secret_option():
    argv = ["/bin/pilot", "-p", S, "--pass", S, "--queue", "Q", "--apikey", S, "-H", f"Authorization: Bearer {S}",
            "--token", "--verbose", f"X_API_KEY={S}"]
    shown = redact_data(argv)
    assert S not in repr(shown)
    assert shown[:7] == ["/bin/pilot", "-p", REDACTED, "--pass", REDACTED, "--queue", "Q"]
    assert shown[11:13] == ["--token", "--verbose"]  # a flag after it is no value


def test_code_in_a_traceback_stays_readable():
    line = "return sorted(pilots, key=lambda p: -p.end)"
    assert redact(line) == line
    assert redact("get(token=None, key=True)") == "get(token=None, key=True)"
