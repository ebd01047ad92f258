"""The status page in a real browser: headless chromium through selenium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.web_support import start_factory

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "test-screenshots"


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
                 "--disable-dev-shm-usage", "--window-size=1500,900", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_status_page_in_chromium(confdir, browser):
    from selenium.webdriver.common.by import By

    run = start_factory(confdir, {"ALPHA": 3, "BETA": 0, "GAMMA": 1})
    try:
        for name in ("ALPHA", "GAMMA"):
            wait_for(lambda n=name: run.factory.queues[n].cycles >= 6
                     and run.factory.queues[n].batch_status()[0].running >= 1, what=f"{name} running pilots")
        run.factory.queues["BETA"].paused = True
        wait_for(lambda: run.factory.queues["BETA"].cycles >= 3, what="BETA cycles")

        browser.get(run.url + "/")
        assert browser.find_element(By.ID, "factory-id").text == "test-factory"
        table = browser.find_element(By.ID, "queues")
        headers = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
        assert headers[:6] == ["queue", "created / pending", "running", "exiting", "done (1 h)", "fault (1 h)"]
        rows = {row.get_attribute("data-queue"): row for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
        assert sorted(rows) == ["ALPHA", "BETA", "GAMMA"]
        api = {q["name"]: q for q in __import__("requests").get(run.url + "/api/v1/queues", timeout=30).json()["queues"]}
        for name, row in rows.items():
            cell = {key: row.find_element(By.CSS_SELECTOR, f"td.{key}").text
                    for key in ("name", "pending", "running", "state")}
            assert cell["name"] == name
            # the page and the API were read a moment apart: compare with the batch system's own numbers
            assert int(cell["running"]) == api[name]["running"], name
            assert int(cell["pending"]) >= 0
        assert rows["ALPHA"].find_element(By.CSS_SELECTOR, "td.running").text == "2"
        assert rows["GAMMA"].find_element(By.CSS_SELECTOR, "td.running").text == "1"
        assert rows["BETA"].find_element(By.CSS_SELECTOR, "td.state").text == "paused"
        assert rows["ALPHA"].find_element(By.CSS_SELECTOR, "td.state").text == "active"
        # the plot is drawn by the server and has a visible size in the browser
        plot = rows["ALPHA"].find_element(By.CSS_SELECTOR, "td.plot svg")
        assert plot.size["width"] >= 100 and plot.size["height"] >= 30
        assert rows["ALPHA"].find_elements(By.CSS_SELECTOR, "td.plot svg polyline")
        # the link to today's logs leads to a listing with the pilots' files
        rows["ALPHA"].find_element(By.CSS_SELECTOR, "td.logs a").click()
        wait_for(lambda: "Pilot logs" in browser.find_element(By.TAG_NAME, "h1").text, what="the log listing")
        names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#listing a")]
        assert any(n.endswith(".out") for n in names) and any(n.endswith(".jdl") for n in names)
        browser.back()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        wait_for(lambda: browser.find_element(By.ID, "queues"), what="the status page again")
        assert browser.save_screenshot(str(SCREENSHOTS / "status-page.png"))
    finally:
        run.stop()
