"""Admin from the pages: sign in with the admin token, a session cookie, a CSRF token on every form; read-only
without it. Every action goes through the admin API and its audit trail. (The browser test is in
tests/test_web_browser.py.)"""

from __future__ import annotations

import re

import pytest
import requests

from autopyfactory.web.server import WebServer
from tests.web_support import TOKEN, start_factory


@pytest.fixture
def site(confdir):
    run = start_factory(confdir, {"Q": 0})
    yield run
    run.stop()


def sign_in(run, token: str = TOKEN, **headers) -> requests.Session:
    browser = requests.Session()
    answer = browser.post(f"{run.url}/signin", data={"token": token, "next": "/queues/Q"}, headers=headers,
                          allow_redirects=False, timeout=30)
    browser.answer = answer
    return browser


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def audit(run) -> list[tuple[str, str, int]]:
    return [(a.action, a.result, a.status) for a in run.factory.store.admin_actions(50)]


def test_without_signing_in_the_pages_have_no_forms(site):
    for path in ("/", "/queues/Q", "/history", "/queues/Q/pilots?state=done"):
        page = requests.get(site.url + path, timeout=30).text
        assert "<form" not in page, path
    assert 'href="/signin?next=/queues/Q"' in requests.get(site.url + "/queues/Q", timeout=30).text
    assert "<form" in requests.get(site.url + "/signin", timeout=30).text  # the sign-in form alone


def test_sign_in_sets_a_strict_cookie_and_shows_the_forms(site):
    browser = sign_in(site)
    assert browser.answer.status_code == 303 and browser.answer.headers["Location"] == "/queues/Q"
    cookie = browser.answer.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"):
        assert attribute in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP here, and nobody's X-Forwarded-Proto is believed
    assert "Secure" not in sign_in(site, **{"X-Forwarded-Proto": "https"}).answer.headers["Set-Cookie"]
    page = browser.get(f"{site.url}/queues/Q", timeout=30).text
    assert 'id="pause-form"' in page and 'id="signout"' in page and len(csrf_of(page)) >= 32
    assert 'id="reload-form"' in browser.get(site.url + "/", timeout=30).text
    assert ("signin", "ok", 303) in audit(site)


def test_a_wrong_token_signs_nobody_in(site):
    browser = sign_in(site, token="x" * 32)
    assert browser.answer.status_code == 401 and "Set-Cookie" not in browser.answer.headers
    assert "wrong token" in browser.answer.text
    assert "<form" not in browser.get(f"{site.url}/queues/Q", timeout=30).text.split("</h1>", 1)[1]
    assert ("signin", "refused", 401) in audit(site)


def test_pause_and_resume_from_the_page_go_through_the_audit_trail(site):
    browser = sign_in(site)
    queue = site.factory.queues["Q"]
    csrf = csrf_of(browser.get(f"{site.url}/queues/Q", timeout=30).text)
    answer = browser.post(f"{site.url}/api/v1/admin/queues/Q/pause", allow_redirects=False, timeout=30,
                          data={"csrf": csrf, "next": "/queues/Q", "reason": "CE downtime", "until": "+2h"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/queues/Q"
    assert queue.paused and queue.pause.reason == "CE downtime" and queue.pause.until is not None
    page = browser.get(f"{site.url}/queues/Q", timeout=30).text
    assert 'id="resume-form"' in page and "CE downtime" in page
    answer = browser.post(f"{site.url}/api/v1/admin/queues/Q/resume", data={"csrf": csrf, "next": "/queues/Q"},
                          allow_redirects=False, timeout=30)
    assert answer.status_code == 303 and not queue.paused
    bad = browser.post(f"{site.url}/api/v1/admin/queues/Q/pause", data={"csrf": csrf, "until": "whenever"},
                       allow_redirects=False, timeout=30)
    assert bad.status_code == 400 and "not a time" in bad.text and not queue.paused  # the error in words
    assert [a for a in audit(site) if a[0] in ("pause", "resume")][:3] == [
        ("pause", "failed", 400), ("resume", "ok", 200), ("pause", "ok", 200)]


@pytest.mark.parametrize("forgery", ["no csrf", "another csrf", "another site", "no session"])
def test_forged_form_posts_are_refused_and_change_nothing(site, forgery):
    browser = sign_in(site)
    csrf = csrf_of(browser.get(f"{site.url}/queues/Q", timeout=30).text)
    data, headers = {"csrf": csrf, "reason": "forged"}, {}
    if forgery == "no csrf":
        del data["csrf"]
    elif forgery == "another csrf":
        data["csrf"] = "A" * len(csrf)
    elif forgery == "another site":
        headers["Origin"] = "https://evil.example.org"
    else:
        browser.cookies.clear()
    answer = browser.post(f"{site.url}/api/v1/admin/queues/Q/pause", data=data, headers=headers,
                          allow_redirects=False, timeout=30)
    assert answer.status_code in (401, 403) and not site.factory.queues["Q"].paused, (forgery, answer.text)
    if forgery != "no session":
        assert "CSRF" in answer.text or "another site" in answer.text
    assert ("pause", "refused", answer.status_code) in audit(site)


def test_sign_out_expiry_and_a_rotated_token_end_the_session(site):
    browser = sign_in(site)
    csrf = csrf_of(browser.get(f"{site.url}/queues/Q", timeout=30).text)
    assert browser.post(f"{site.url}/signout", data={}, allow_redirects=False, timeout=30).status_code == 403
    answer = browser.post(f"{site.url}/signout", data={"csrf": csrf}, allow_redirects=False, timeout=30)
    assert answer.status_code == 303 and "Max-Age=0" in answer.headers["Set-Cookie"]
    assert "<form" not in browser.get(f"{site.url}/queues/Q", timeout=30).text
    # the old cookie, kept by a forger, is worth nothing
    again = requests.post(f"{site.url}/api/v1/admin/queues/Q/pause", data={"csrf": csrf}, timeout=30,
                          cookies={"apf_session": answer.request.headers["Cookie"].split("=", 1)[1]})
    assert again.status_code == 401 and not site.factory.queues["Q"].paused

    browser = sign_in(site)
    server = next(s for s in site.factory.services if isinstance(s, WebServer))
    assert browser.get(f"{site.url}/queues/Q", timeout=30).text.count('id="pause-form"') == 1
    for session in list(server.app.admin_api.sessions._sessions.values()):
        session.expires = 0  # its time is over
    assert 'id="pause-form"' not in browser.get(f"{site.url}/queues/Q", timeout=30).text
    browser = sign_in(site)
    site.token_file.write_text("a-brand-new-token-of-32-characters\n")  # rotated: everybody signs in again
    assert 'id="pause-form"' not in browser.get(f"{site.url}/queues/Q", timeout=30).text


def test_behind_a_trusted_tls_proxy_the_cookie_is_secure_and_remote_clients_are_told_apart(confdir):
    run = start_factory(confdir, {"Q": 0}, factory_extra="logserver.trustedproxy = 127.0.0.1\n")
    try:
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1"}
        assert "; Secure" in sign_in(run, **proxied).answer.headers["Set-Cookie"]
        # a client the proxy says is elsewhere: the admin API's loopback rule holds for it too
        remote = sign_in(run, **{"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        assert remote.answer.status_code == 403 and "Set-Cookie" not in remote.answer.headers
        assert "loopback" in remote.answer.text
    finally:
        run.stop()
