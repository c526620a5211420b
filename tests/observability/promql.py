"""Every PromQL expression the chart ships: dashboard panels, dashboard variables and alerts."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tests.helm.tools import CHART_DIR

DASHBOARDS = sorted((CHART_DIR / "dashboards").glob("*.json"))

# Grafana's built-in interval variables, replaced by what a 1 s-scrape test Prometheus can answer.
GRAFANA_INTERVALS = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "15s"}

# Panels whose series come from something a CPU-only test run cannot produce.
NEEDS_GPU = {"GPU utilization (Ray)"}

_COMPARISON = re.compile(r"^(?P<base>.*?)\s*(?:==|!=|>=|<=|>|<)\s*(?P<threshold>[0-9.eE+-]+)\s*$", re.DOTALL)
_LABEL_VALUES = re.compile(r"^label_values\((?P<expr>.+),\s*(?P<label>\w+)\)$", re.DOTALL)


@dataclass(frozen=True)
class Query:
    where: str  # "dashboard / panel / refId" or "alert NAME"
    expr: str
    panel: str = ""
    dashboard: str = ""


def load_dashboard(path: Any) -> dict[str, Any]:
    return json.loads(path.read_text())


def panel_queries() -> list[Query]:
    out = []
    for path in DASHBOARDS:
        dash = load_dashboard(path)
        for panel in dash["panels"]:
            for target in panel["targets"]:
                out.append(Query(f"{dash['title']} / {panel['title']} / {target['refId']}", target["expr"],
                                 panel["title"], dash["title"]))  # fmt: skip
    return out


def variable_queries() -> list[tuple[str, str, str, str]]:
    """(dashboard, variable, PromQL selector, label) of each ``label_values`` variable."""
    out = []
    for path in DASHBOARDS:
        dash = load_dashboard(path)
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = _LABEL_VALUES.match(var["query"]["query"])
            assert m, f"{dash['title']}: variable {var['name']} is not a label_values() query"
            out.append((dash["title"], var["name"], m["expr"], m["label"]))
    return out


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana variables the way Grafana would before sending the query."""
    for name, value in {**GRAFANA_INTERVALS, **{f"${k}": v for k, v in variables.items()}}.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unresolved variable in {expr!r}"
    return expr


def alert_rules(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (rule,) = [d for d in rendered if d["kind"] == "PrometheusRule"]
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def alert_base(expr: str) -> str:
    """An alert's expression without its final threshold: the series it compares. On a healthy run
    the alert itself is rightly empty, but its base must exist, or the alert can never fire."""
    m = _COMPARISON.match(expr.strip())
    assert m, f"alert expression does not end in a comparison with a number: {expr!r}"
    return m["base"]
