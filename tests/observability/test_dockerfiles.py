"""hadolint on both images (no Docker engine here to build them), and the properties the chart and
the operator rely on: pinned bases and versions, a numeric non-root user, and the versions CI installs
(requirements/ci.lock)."""

from __future__ import annotations

import re

import pytest

from tests.helm.tools import REPO_ROOT, run, tool

DOCKERFILES = {"operator": REPO_ROOT / "Dockerfile", "trainer": REPO_ROOT / "trainer_image" / "Dockerfile"}


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_clean(name: str) -> None:
    run([tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILES[name])])


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_pinned_base_and_numeric_non_root_user(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    (base,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "USER must be numeric for runAsNonRoot"
    assert int(uid) != 0


def _locked(name: str) -> str:
    (version,) = re.findall(rf"^{name}==(\S+)$", (REPO_ROOT / "requirements" / "ci.lock").read_text(), re.M)
    return version


def test_images_install_from_the_ci_lock() -> None:
    operator = DOCKERFILES["operator"].read_text()
    assert 'pip install -c requirements/ci.lock "./[operator]"' in operator
    assert "COPY requirements/ci.lock requirements/ci.lock" in operator
    assert "torch" not in operator.lower().replace("without torch", "")
    trainer = DOCKERFILES["trainer"].read_text()
    assert 'pip install -c requirements/ci.lock "./[trainer]"' in trainer
    assert "COPY requirements/ci.lock requirements/ci.lock" in trainer
    # The torch build is picked per variant before the lock applies: it must be the locked version.
    (torch_version,) = re.findall(r"^ARG TORCH_VERSION=(\S+)$", trainer, re.M)
    assert torch_version == _locked("torch")
    (ray_version,) = re.findall(r"^ARG RAY_VERSION=(\S+)$", trainer, re.M)
    assert ray_version == _locked("ray")
    assert "download.pytorch.org/whl/${TORCH_VARIANT}" in trainer
    assert 'ENTRYPOINT ["kuberl"]' in trainer


def test_dockerignore_keeps_what_the_images_copy() -> None:
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}  # fmt: skip
    for path in ("pyproject.toml", "requirements", "trainer_image", "operator", "examples"):
        assert path not in ignored
