"""Fixtures for the chart tests: a renderable copy of the chart and a ``render`` helper."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.tools import CHART_DIR, run, tool

# The kuberay-operator dependency cannot be fetched offline, and helm refuses to lint or render a
# chart whose declared dependency is missing from charts/, whatever its condition says. The tests
# therefore render a copy with a stand-in subchart of the same name and version; it renders one
# marker object, so the tests can also prove that the condition switches the dependency on and off.
# Real installs run `helm dependency update charts/kuberl` (docs/install.md).
STUB_MARKER = "kuberay-operator-stand-in"


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("chart") / "kuberl"
    shutil.copytree(CHART_DIR, dest)
    meta = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    (dep,) = [d for d in meta["dependencies"] if d["name"] == "kuberay-operator"]
    stub = dest / "charts" / "kuberay-operator"
    (stub / "templates").mkdir(parents=True)
    (stub / "Chart.yaml").write_text(
        yaml.safe_dump({"apiVersion": "v2", "name": "kuberay-operator", "version": dep["version"]})
    )
    (stub / "templates" / "marker.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {STUB_MARKER}\ndata: {{}}\n"
    )
    return dest


Render = Callable[..., list[dict[str, Any]]]


def write_values(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture
def render(helm: str, chart: Path, tmp_path: Path) -> Render:
    """Render the chart with the given values; returns the parsed documents."""

    def _render(
        values: dict[str, Any] | None = None, *, namespace: str = "kuberl-system"
    ) -> list[dict[str, Any]]:
        out = run(
            [
                helm,
                "template",
                "rel",
                str(chart),
                "--namespace",
                namespace,
                "--include-crds",
                "-f",
                str(write_values(tmp_path, values or {})),
            ],
            timeout=60,
        ).stdout
        return [d for d in yaml.safe_load_all(out) if d]

    return _render
