"""The pipeline's own alerting rules (monitoring/alerts.yml), checked and unit-tested by
Prometheus' own `promtool`: every rule fires on the series it is about and stays quiet on
look-alikes (monitoring/alerts_test.yml); its metrics exist, and its runbook section too."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.monitoring import binary
from tests.monitoring.test_grafana_dashboard import exported_names

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "alerts.yml"
RULE_TESTS = ROOT / "monitoring" / "alerts_test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"

pytestmark = pytest.mark.monitoring


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, cwd=RULES.parent
    )


def test_promtool_checks_the_rules():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass():
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_rule_has_a_test_that_fires_it_and_series_that_must_not():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")
    }
    assert fired == {r["alert"] for r in rules()}
    for t in tests:
        instances = {
            m[1] for s in t["input_series"] if (m := re.search(r'instance="([^"]+)"', s["series"]))
        }
        fired_on = {
            a["exp_labels"]["instance"]
            for case in t["alert_rule_test"]
            for a in case.get("exp_alerts") or []
        }
        assert instances - fired_on, f"{t['name']}: no series that must stay quiet"


def test_every_rule_has_a_runbook_section_and_uses_exported_metrics():
    anchors = {
        re.sub(r"[^a-z0-9 _-]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    exported = exported_names() | {"up"}
    for rule in rules():
        runbook = rule["annotations"]["runbook"]
        assert runbook.startswith("docs/operations.md#"), rule["alert"]
        assert runbook.split("#", 1)[1] in anchors, f"{rule['alert']}: no section {runbook}"
        assert rule["annotations"]["summary"], rule["alert"]
        used = set(re.findall(r"\b((?:clickstream_[a-z_]+)|up)\b", rule["expr"]))
        assert used and used <= exported, f"{rule['alert']}: {used - exported}"
