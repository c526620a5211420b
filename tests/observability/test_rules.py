"""PromQL syntax of every dashboard panel and alert (promtool check rules), and promtool unit tests
proving each alert fires on a synthetic series and stays quiet on a healthy one."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.helm.conftest import Render
from tests.helm.tools import run, tool
from tests.observability.promql import alert_base, alert_rules, panel_queries, substitute, variable_queries

HERE = Path(__file__).parent
SAMPLE_VARS = {"namespace": "ml", "job": "ppo-cartpole", "custom_metric": "steps_counted"}
# KuberlOperatorDown needs the operator scraped, so it comes with the ServiceMonitor.
RULES_ON = {"metrics": {"prometheusRule": {"enabled": True}, "serviceMonitor": {"enabled": True}}}
ALERTS = 9


def rendered_groups(render: Render) -> list[dict[str, Any]]:
    (rule,) = [d for d in render(RULES_ON) if d["kind"] == "PrometheusRule"]
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def test_every_panel_and_alert_parses(render: Render, tmp_path: Path) -> None:
    records = [
        {"record": f"kuberl:check:{i}", "expr": substitute(q.expr, SAMPLE_VARS)}
        for i, q in enumerate(panel_queries())
    ]
    records += [
        {"record": f"kuberl:check:var:{i}", "expr": substitute(expr, SAMPLE_VARS)}
        for i, (_, _, expr, _) in enumerate(variable_queries())
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "dashboards", "rules": records}, *rendered_groups(render)]})
    )
    out = run([tool("promtool"), "check", "rules", str(path)])
    assert re.search(rf"SUCCESS: {len(records) + ALERTS} rules found", out.stdout), out.stdout


def test_alerts_compare_a_base_expression(render: Render) -> None:
    alerts = alert_rules(render(RULES_ON))
    assert len(alerts) == ALERTS
    without_operator_scrape = alert_rules(render({"metrics": {"prometheusRule": {"enabled": True}}}))
    assert "KuberlOperatorDown" not in {a["alert"] for a in without_operator_scrape}
    for alert in alerts:
        assert alert_base(alert["expr"])
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description"} <= alert["annotations"].keys()


def test_alert_unit_tests(render: Render, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rendered_groups(render)}))
    shutil.copy(HERE / "alerts_test.yaml", tmp_path)
    tested = {t["alertname"] for case in yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
              for t in case["alert_rule_test"]}  # fmt: skip
    assert tested == {a["alert"] for a in alert_rules(render(RULES_ON))}
    run([tool("promtool"), "test", "rules", "alerts_test.yaml"], cwd=tmp_path)
