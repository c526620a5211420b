"""Fixtures for the chart tests: a renderable copy of the chart and a ``render`` helper."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.tools import CHART_DIR, run, tool


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


@pytest.fixture(scope="session")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the chart exactly as the repository has it (it has no dependencies to fetch: KubeRay is
    a prerequisite, docs/install.md), so a test can never write into the repository's chart."""
    dest = tmp_path_factory.mktemp("chart") / "kuberl"
    shutil.copytree(CHART_DIR, dest)
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
