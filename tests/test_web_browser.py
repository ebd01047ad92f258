"""The status page and a queue page in a real browser: headless chromium through selenium.

Three queues, as an operator meets them: PANDAQ, whose WMS (a PanDA double on
127.0.0.1) is down and fails with urllib3's long exception; FAULTQ, whose
pilots fail; LOCALQ, healthy. At 1280 px the status page must not scroll
sideways, problems come first, a queue name leads to the queue's page and a
faulted pilot's log link leads to its log.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests

from autopyfactory.health import LEVELS
from autopyfactory.web.app import REASON_CHARS
from tests.conftest import wait_for
from tests.web_support import start_factory

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
REPO = Path(__file__).resolve().parent.parent
# APF_SCREENSHOTS=docs refreshes the pictures the README shows
SCREENSHOTS = REPO / os.environ.get("APF_SCREENSHOTS", "var/test-screenshots")
WIDTH = 1280

FAULTING_PILOT = """#!/bin/sh
echo "pilot $APFCID of $FACTORYQUEUE: starting"
echo "pilot $APFCID: no payload, giving up" >&2
exit 3
"""

PANDA_FAST = """\
wmsstatus.panda.sleep = 0.3
wmsstatus.panda.maxage = 2
wmsstatus.panda.breakerfailures = 100
"""


def panda_section(name: str, url: str) -> str:
    keys = {"wmsqueue": "TEST_SITE_A", "wmsstatusplugin": "Panda", "wmsstatus.panda.url": url,
            "wmsstatus.panda.timeout": 1, "batchstatusplugin": "Local", "batchsubmitplugin": "Local",
            "executable": "/bin/true", "apfqueue.sleep": 0.3, "schedplugin": "Ready"}
    return f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (tests/services/chromium.sh installs them)")
    os.environ["SE_OFFLINE"] = "true"  # never let selenium fetch a driver from the network
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage", f"--window-size={WIDTH},1000", "--hide-scrollbars",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def three_queues(confdir, panda):
    panda.down()  # refused from the first query on: urllib3's long "Max retries exceeded ..." error
    faulting = confdir.root / "faulting-pilot.sh"
    faulting.write_text(FAULTING_PILOT)
    faulting.chmod(0o755)
    run = start_factory(confdir, {"LOCALQ": 1, "FAULTQ": 4}, executables={"FAULTQ": str(faulting)},
                        sections=panda_section("PANDAQ", panda.url), factory_extra=PANDA_FAST)
    queues = run.factory.queues
    try:
        wait_for(lambda: getattr(queues["LOCALQ"].batch_status()[0], "running", 0) >= 1, what="LOCALQ running a pilot")
        wait_for(lambda: (queues["FAULTQ"].finished_counts(0) or {}).get("fault", 0) >= 2, what="FAULTQ faults")
        wait_for(lambda: queues["PANDAQ"].health().level == "critical"
                 and "Connection refused" in (queues["PANDAQ"].wms_poller.health()["last_error"] or ""),
                 what="PANDAQ critical, PanDA refusing")
        wait_for(lambda: queues["LOCALQ"].health().level == "ok", what="LOCALQ ok")
        yield run
    finally:
        run.stop()


def no_sideways_scroll(browser) -> bool:
    return browser.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_status_page_problems_first_and_drill_down_to_a_faulted_pilot_log(three_queues, browser):
    from selenium.webdriver.common.by import By

    run = three_queues
    browser.get(run.url + "/")
    assert browser.execute_script("return document.documentElement.clientWidth") == WIDTH
    assert no_sideways_scroll(browser), browser.execute_script("return document.documentElement.scrollWidth")
    table = browser.find_element(By.ID, "queues")
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    order = [row.get_attribute("data-queue") for row in rows]
    health = {row.get_attribute("data-queue"): row.get_attribute("data-health") for row in rows}
    assert sorted(order) == ["FAULTQ", "LOCALQ", "PANDAQ"]
    # problems first: the levels never get better further down the table
    ranks = [LEVELS.index(health[name]) for name in order]
    assert ranks == sorted(ranks) and health["PANDAQ"] == "critical" and health["LOCALQ"] == "ok"
    assert health["FAULTQ"] in ("critical", "warning") and order[-1] == "LOCALQ"
    by_name = dict(zip(order, rows, strict=True))

    panda_row = by_name["PANDAQ"]
    assert panda_row.find_element(By.CSS_SELECTOR, ".badge").text == "✖ critical"  # a symbol too: not colour alone
    reason = panda_row.find_element(By.CSS_SELECTOR, ".reason").text
    assert "WMS status unknown" in reason and len(reason) <= REASON_CHARS
    # the long urllib3 error is one line, its full text a click away, and the row stays short
    assert panda_row.size["height"] < 120, panda_row.size
    assert panda_row.find_element(By.CSS_SELECTOR, "td.wms-ready").text == "?"  # unknown, never 0
    endpoints = browser.find_element(By.ID, "endpoints")
    refused = [d for d in endpoints.find_elements(By.TAG_NAME, "details") if "PandaError" in d.text]
    assert refused, endpoints.text
    summary = refused[0].find_element(By.TAG_NAME, "summary")
    assert not refused[0].find_element(By.TAG_NAME, "pre").is_displayed()
    summary.click()
    full = refused[0].find_element(By.TAG_NAME, "pre")
    assert full.is_displayed() and "Connection refused" in full.text
    assert no_sideways_scroll(browser)  # the full text wraps
    summary.click()

    # the WMS's own counts beside the batch numbers: the Local WMS has the work items
    local_row = by_name["LOCALQ"]
    assert int(local_row.find_element(By.CSS_SELECTOR, "td.wms-ready").text) >= 0
    assert local_row.find_element(By.CSS_SELECTOR, "td.running").text == "1"
    api = requests.get(run.url + "/api/v1/queues/LOCALQ", timeout=30).json()
    assert api["health"] == "ok"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "status-page.png"))

    # drill down: the queue name opens the queue's page
    by_name["FAULTQ"].find_element(By.CSS_SELECTOR, "td.name a").click()
    wait_for(lambda: browser.find_element(By.ID, "queue-name").text == "FAULTQ", what="the FAULTQ page")
    assert no_sideways_scroll(browser)
    chart = browser.find_element(By.CSS_SELECTOR, "svg.chart")
    assert chart.size["width"] >= 600 and chart.find_elements(By.CSS_SELECTOR, "text.xtick")
    sizes = browser.execute_script(
        "return [...document.querySelectorAll('svg.chart text')].map(t => parseFloat(getComputedStyle(t).fontSize))")
    assert sizes and min(sizes) >= 11
    assert browser.find_elements(By.CSS_SELECTOR, "table.chain tbody tr")  # the chain steps of the latest cycles
    assert len(browser.find_elements(By.CSS_SELECTOR, "#cycles tbody tr")) >= 2
    keys = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#config tbody tr td:first-child")]
    assert "executable" in keys and "batchsubmitplugin" in keys
    faulted = browser.find_elements(By.CSS_SELECTOR, "#faulted tbody tr")
    assert faulted
    pilot = faulted[0].get_attribute("data-pilot")
    links = {a.text: a for a in faulted[0].find_elements(By.CSS_SELECTOR, "td.logs a")}
    assert set(links) == {f"{pilot}.out", f"{pilot}.err"}, links
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOTS / "queue-page.png"))

    # the faulted pilot's stderr: the log text itself
    links[f"{pilot}.err"].click()
    wait_for(lambda: "no payload, giving up" in browser.find_element(By.TAG_NAME, "body").text,
             what="the pilot's .err")
    assert browser.find_element(By.TAG_NAME, "body").text.strip() == f"pilot {pilot}: no payload, giving up"


def test_sign_in_pause_resume_and_sign_out_from_the_pages(confdir, browser):
    """An operator in a browser: signs in with the admin token, pauses a queue with a reason, sees it paused,
    resumes it, signs out; a form posted without the CSRF token (as another page would) is refused."""
    from selenium.webdriver.common.by import By

    from tests.test_console import fill_history
    from tests.web_support import TOKEN

    run = start_factory(confdir, {"ANALY_X": 2, "ANALY_Y": 0})
    try:
        fill_history(run.factory.store, "ANALY_X", __import__("time").time(), days=14, every=300)
        browser.get(run.url + "/queues/ANALY_X")
        assert not browser.find_elements(By.TAG_NAME, "form")  # read-only until signed in
        browser.find_element(By.ID, "signin").click()
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "signin-button").click()
        wait_for(lambda: browser.find_elements(By.ID, "pause-form"), what="the signed-in queue page")
        assert browser.current_url.endswith("/queues/ANALY_X")
        cookie = next(c for c in browser.get_cookies() if c["name"] == "apf_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert browser.execute_script("return document.cookie") == ""  # no script can read the session
        browser.find_element(By.ID, "reason").send_keys("CE downtime")
        browser.find_element(By.ID, "until").send_keys("+2h")
        browser.find_element(By.ID, "pause").click()
        wait_for(lambda: browser.find_elements(By.ID, "resume-form"), what="the queue page, paused")
        health = browser.find_element(By.ID, "health").text
        assert "paused" in health and "CE downtime" in health, health
        assert run.factory.queues["ANALY_X"].paused
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(SCREENSHOTS / "admin-page.png"))

        # another page's forged form: same browser, same cookie, no CSRF token
        browser.execute_script("""
            const form = document.createElement('form');
            form.method = 'post'; form.action = '/api/v1/admin/queues/ANALY_Y/pause';
            document.body.appendChild(form); form.submit();""")
        wait_for(lambda: "CSRF" in browser.find_element(By.TAG_NAME, "body").text, what="the refusal")
        assert not run.factory.queues["ANALY_Y"].paused

        browser.get(run.url + "/queues/ANALY_X")
        browser.find_element(By.ID, "resume").click()
        wait_for(lambda: browser.find_elements(By.ID, "pause-form"), what="the queue page, resumed")
        assert not run.factory.queues["ANALY_X"].paused
        actions = [(a.action, a.target, a.result) for a in run.factory.store.admin_actions(20)]
        assert ("pause", "ANALY_X", "ok") in actions and ("resume", "ANALY_X", "ok") in actions
        assert ("pause", "ANALY_Y", "refused") in actions and ("signin", None, "ok") in actions

        # the history, 7 days, and the pilots by state: what the docs show
        browser.get(run.url + "/queues/ANALY_X?span=7d")
        section = browser.find_element(By.ID, "history-pilots")
        browser.execute_script("arguments[0].scrollIntoView()", browser.find_element(By.ID, "history-spans"))
        assert section.find_elements(By.CSS_SELECTOR, "text.xtick")
        assert browser.save_screenshot(str(SCREENSHOTS / "history.png"))
        browser.get(run.url + "/queues/ANALY_X/pilots?state=running")
        wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#pilots tbody tr")) == 2
                 or browser.refresh(), what="2 running pilots listed")
        assert browser.save_screenshot(str(SCREENSHOTS / "pilots.png"))

        browser.get(run.url + "/queues/ANALY_X")
        browser.find_element(By.ID, "signout").click()
        wait_for(lambda: browser.find_elements(By.ID, "signin"), what="signed out")
        browser.get(run.url + "/queues/ANALY_X")
        assert not browser.find_elements(By.TAG_NAME, "form")
    finally:
        run.stop()
