"""The alert rules in `dashboards/alerts/`, through Prometheus' own `promtool`.

Covers: `spec.groups` of the PrometheusRule is a valid rules file (`promtool check rules`); the unit
tests in `tests.yml` pass (`promtool test rules`), and they show every alert both firing in the
situation it names and staying silent in a nearby one; every alert has a severity, a summary and a
description; the kustomization deploys the PrometheusRule and nothing else.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.grafana import ALERTS_DIR, alert_rules, rule_groups
from tests.promserver import require_binaries

RULES_FILE = "prometheusrule.rules.yml"


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    require_binaries()
    path = tmp_path / RULES_FILE
    path.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    return path


def unit_tests() -> dict[str, object]:
    document = yaml.safe_load((ALERTS_DIR / "tests.yml").read_text())
    assert isinstance(document, dict)
    return document


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, check=False)


def test_rules_pass_promtool_check(rules_file: Path) -> None:
    done = promtool("check", "rules", str(rules_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout


def test_rules_pass_their_promtool_unit_tests(rules_file: Path, tmp_path: Path) -> None:
    document = unit_tests()
    assert document["rule_files"] == [RULES_FILE]
    document["rule_files"] = [str(rules_file)]
    tests = tmp_path / "tests.yml"
    tests.write_text(yaml.safe_dump(document, sort_keys=False))
    done = promtool("test", "rules", str(tests))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_shown_firing_and_silent() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    cases = unit_tests()["tests"]
    assert isinstance(cases, list)
    for case in cases:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule.name for rule in alert_rules()}
    assert names == {
        "PredictiveAutoscalerDown",
        "PredictiveAutoscalerNoLeader",
        "PredictiveAutoscalerShardUnheld",
        "PredictiveAutoscalerFallbackTooLong",
        "PredictiveAutoscalerForecastErrorHigh",
        "PredictiveAutoscalerActuationErrors",
    }
    assert fires == names, f"never shown firing: {names - fires}"
    assert silent == names, f"never shown silent: {names - silent}"


def test_every_alert_says_how_bad_and_what_happened() -> None:
    for group in rule_groups():
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            assert rule["annotations"]["description"], rule["alert"]


def test_kustomization_deploys_the_rule() -> None:
    kustomization = yaml.safe_load((ALERTS_DIR / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["resources"] == ["prometheusrule.yaml"]
