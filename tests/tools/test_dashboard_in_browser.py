"""The live dashboard in a real headless Chromium: while a dataflow writes, the charts
show what SQL over the same tables says, a later refresh shows newer data, and the
page loads nothing from the internet. Also the static report."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bytewax.testing import run_main
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import dataflows.user_clickstream
from config import Settings
from infra.server import free_port
from tests.processes import ROOT, clean_env
from tools.query import connect
from tools.replay_gen import generate

METRICS_PORT = free_port()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Debian's chromium and chromium-driver (scripts/setup_browser.sh installs them)."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, (
        "chromium and chromium-driver are missing: run scripts/setup_browser.sh"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1500,1900")
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        yield chrome
    finally:
        chrome.quit()


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


@pytest.fixture
def live_output(tmp_path: Path) -> Iterator[Path]:
    """user_clickstream's tables from a replay (sessions that closed, users on several
    IPs), and clickstream written live from datagen while the test runs."""
    out = tmp_path / "out"
    dump = tmp_path / "dump"
    generate(
        dump,
        events=6_000,
        rate=20,
        partitions=2,
        jitter_ms=20_000,
        seed=3,
        pause_every=500,
        pause_ms=90_000,
    )
    run_main(
        dataflows.user_clickstream.build(
            Settings(source="replay", replay_path=dump, output=str(out))
        )
    )
    env = clean_env(
        CLICKSTREAM_OUTPUT=str(out),
        CLICKSTREAM_DATAGEN_RATE="300",
        CLICKSTREAM_FLUSH_INTERVAL="1",
        CLICKSTREAM_METRICS_PORT=str(METRICS_PORT),
    )
    proc = _start(["-m", "bytewax.run", "dataflows.clickstream:flow"], env, tmp_path / "flow.log")
    try:
        yield out
    finally:
        proc.kill()
        proc.wait()


def _plot_data(driver: webdriver.Chrome, graph_id: str) -> list[dict]:
    return driver.execute_script(
        "const p = document.querySelector(arguments[0] + ' .js-plotly-plot');"
        "return p && p.data ? p.data.map(t => ({name: t.name, x: t.x || [], y: t.y || []})) : [];",
        f"#{graph_id}",
    )


def _wait(what: str, check, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def test_dashboard_in_a_real_browser_matches_sql_and_refreshes(live_output, browser, tmp_path):
    port = free_port()
    dashboard = _start(
        [
            "-m",
            "tools.dashboard",
            "--output",
            str(live_output),
            "--port",
            str(port),
            "--refresh",
            "2",
            "--metrics",
            f"http://127.0.0.1:{METRICS_PORT}/metrics",
        ],
        clean_env(),
        tmp_path / "dashboard.log",
    )
    driver = browser
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait("the dashboard", lambda: _get(driver, url), 60)
        # nothing from the internet: every script is served by the dashboard itself
        sources = driver.execute_script(
            "return [...document.scripts].map(s => s.src).filter(s => s)"
        )
        assert sources and all(s.startswith(url) for s in sources), sources

        # the live table needs its first windows closed: 60 s delay after the first events
        _wait("pages per user", lambda: any(t["x"] for t in _plot_data(driver, "pages-chart")), 180)
        _wait("alerts listed", lambda: _table_rows(driver, "alerts"), 60)

        con = connect(str(live_output))
        sessions = _plot_data(driver, "sessions-chart")
        [(want_sessions,)] = con.execute(
            "select count(*) from click_user_sessions where event_end >= "
            "(select max(event_end) from click_user_sessions) - interval 1 hour"
        ).fetchall()
        assert want_sessions > 0
        assert len(sessions[0]["y"]) == min(want_sessions, 300)

        ip_users = _plot_data(driver, "ip-chart")[0]["x"]
        want_users = [
            r[0]
            for r in con.execute(
                """
                select coalesce(username, '(no user)') as u from user_ip_activity
                where event_start >=
                    (select max(event_start) from user_ip_activity) - interval 1 hour
                group by username, event_start
                having count(distinct ip) > 1 or count(distinct city) > 1
                """
            ).fetchall()
        ]
        assert ip_users and set(ip_users) == set(want_users)
        # minutes are whole numbers: no tick like 1.5 on the count axis
        ticks = driver.execute_script(
            "return [...document.querySelectorAll('#ip-chart .ytick text')].map(t => t.textContent)"
        )
        assert ticks and all(t.replace(",", "").isdigit() for t in ticks), ticks

        # every listed alert is an alerting window of the table, newest first
        alerts = _table_rows(driver, "alerts")
        for status, start, _end, errors in alerts:
            n = con.execute(
                "select errors from errors_per_min_alert where status = ? and "
                "event_start = cast(? as timestamptz)",
                [int(status), start],
            ).fetchall()
            assert n == [(int(errors),)] and int(errors) > 5, (status, start, errors)
        assert [a[1] for a in alerts] == sorted((a[1] for a in alerts), reverse=True)

        health = driver.find_element("id", "health-panel").text
        assert "pages_per_min" in health and "dead_letters" in health
        # the replayed tables are years behind the clock: said in days and hours
        behind = [row[3] for row in _table_rows(driver, "health") if row[3]]
        assert any(re.fullmatch(r"[\d,]+ d \d+ h", b) for b in behind), behind
        assert not any(re.fullmatch(r"[\d,]{6,} s", b) for b in behind), behind
        # the live dataflow's own figures, from its /metrics
        _wait("metrics", lambda: "clickstream_records_read_total" in _text(driver, "metrics"), 30)

        driver.save_screenshot(str(tmp_path / "dashboard.png"))
        first = driver.find_element("id", "newest").text
        assert first and first != "none yet"
        # a later refresh shows newer windows of the live table
        _wait("newer data", lambda: driver.find_element("id", "newest").text > first, 60)
    finally:
        dashboard.kill()
        dashboard.wait()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000


def test_dashboard_panels_say_when_they_are_empty(browser, tmp_path):
    """An output with no tables yet, and no --metrics: the panels say so, not blank."""
    port = free_port()
    dashboard = _start(
        ["-m", "tools.dashboard", "--output", str(tmp_path / "empty"), "--port", str(port)],
        clean_env(),
        tmp_path / "dashboard.log",
    )
    try:
        _wait("the dashboard", lambda: _get(browser, f"http://127.0.0.1:{port}/"), 60)
        _wait("the reasons panel", lambda: _text(browser, "reasons-empty"), 30)
        assert _text(browser, "reasons-empty").startswith("None: every record so far")
        assert _text(browser, "metrics-empty").startswith("None: start the dashboard with")
        assert not _table_rows(browser, "reasons") and not _table_rows(browser, "metrics")
    finally:
        dashboard.kill()
        dashboard.wait()


def _text(driver: webdriver.Chrome, element_id: str) -> str:
    return str(driver.find_element("id", element_id).text)


def _get(driver: webdriver.Chrome, url: str) -> bool:
    try:
        driver.get(url)
    except Exception:  # not listening yet
        return False
    return bool(driver.find_elements("id", "pages-chart"))


def _table_rows(driver: webdriver.Chrome, table_id: str) -> list[list[str]]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#' + arguments[0] + ' tbody tr')]"
        ".map(r => [...r.querySelectorAll('td')].map(c => c.innerText))"
        ".filter(cells => cells.length > 0);",
        table_id,
    )


def test_report_is_one_self_contained_file(live_output, tmp_path):
    target = tmp_path / "report.html"
    subprocess.run(
        [sys.executable, "-m", "tools.report", str(live_output), str(target)],
        cwd=ROOT,
        env=clean_env(),
        check=True,
        capture_output=True,
    )
    text = target.read_text()
    assert "<script src=" not in text  # plotly.js is inlined
    assert text.count("Plotly.newPlot") == 4
    assert "Pipeline health" in text and "click_user_sessions" in text
