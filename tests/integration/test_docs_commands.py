"""Every command in a ```sh/```bash block of README.md and docs/**/*.md is accounted for: the `kuberl`
commands run here (with a tiny budget, in a fresh directory), `kuberl run examples/…` is the examples
test's (tests/integration/test_examples.py runs each file the same way), and the few that need a
cluster, Docker, the network or an hour are listed in NOT_RUN_HERE with the reason. A new command in the
docs fails this test until it is one of those."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```(?:sh|bash|shell)\n(.*?)```", re.S)

# Commands (by their first words) that cannot run in CI here, with the reason.
NOT_RUN_HERE = {
    "kubectl": "runs against the test control plane in tests/kube (kubectl apply of crds/ and examples/, "
    "kubectl get crd) and tests/integration/test_operator.py",
    "helm install kuberl": "tests/kube/test_chart_install.py runs it against the test control plane",
    "helm upgrade kuberl charts/kuberl -n kuberl-system --reuse-values --set 'watch": "tests/kube/"
    "test_chart_install.py runs it against the test control plane",
    "helm uninstall kuberl": "tests/kube/test_chart_install.py runs it against the test control plane",
    # (first match wins: the upgrade above is run; any other upgrade enables the monitors)
    "helm upgrade": "enables the monitors, which needs prometheus-operator's CRDs (kube-prometheus-stack); "
    "tests/helm renders those values",
    "helm repo add kuberay": "downloads KubeRay's chart from the network (the test control plane installs "
    "KubeRay's CRDs from ../shared/kuberay-crds instead)",
    "helm install kuberay-operator": "see helm repo add kuberay",
    "bash scripts/install-tools.sh": "CI runs it before the tests",
    "docker build": "no Docker engine here (tests/observability/test_dockerfiles.py lints them)",
    "bash .ci/run": "is CI itself",
    "pip install": "installs into the environment running the tests (CI runs the same install)",
    "python -m pytest": "is the test suite itself",
    "scripts/install-tools.sh": "CI runs it before the tests",
    "scripts/sync-chart-crds.sh": "writes into the chart; tests/helm checks the chart's CRDs equal crds/",
    "python bench/": "a benchmark, minutes long (bench/ is not part of CI)",
    "python -m ruff": "CI runs it (.ci/run) before the tests",
    "python -m mypy": "CI runs it (.ci/run) before the tests",
    "lint-imports": "tests/integration/test_placement.py runs it (and CI, in .ci/run)",
    "python scripts/fingerprint.py": "tests/integration/test_placement.py runs it on a few examples and with --restore "
    "(all examples take minutes)",
    "bash scripts/lock.sh": "resolves the ranges against the package index (network)",
    "export KUBERL_POLICY_SERVER_TOKEN": "the policy-server walkthrough: test_examples runs ppo-external.yaml "
    "with kuberl serve and examples/external_cartpole_client.py",
    "python examples/external_cartpole_client.py": "see export KUBERL_POLICY_SERVER_TOKEN",
    "kuberl serve --checkpoint": "a server that runs until stopped: tests/integration/test_serve_checkpoint.py "
    "runs it as a subprocess and sends it requests",
    "kuberl serve": "see export KUBERL_POLICY_SERVER_TOKEN",
    "kuberl convert": "tests/integration/test_rllib_cli.py runs docs/rllib.md's convert command",
    "kuberl rollout": "tests/integration/test_rllib_cli.py runs it on the run docs/rllib.md's train command makes",
}
# The budget every training command gets here, so the docs' commands run in seconds.
TRAIN_BUDGET = ["--stop-iters", "1", "--no-progress", "--set", "resources.envRunners=0"]


def commands() -> list[tuple[str, str]]:
    """(doc, command) for every command line; `\\` continuations joined, comments dropped."""
    found = []
    for doc in DOCS:
        for block in BLOCK.findall(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    found.append((str(doc.relative_to(ROOT)), line.rstrip("&").strip()))
    return found


def skip_reason(cmd: str) -> str | None:
    for prefix, reason in NOT_RUN_HERE.items():
        if cmd.startswith(prefix) or f"&& {prefix}" in cmd:
            return reason
    return None


ALL = commands()


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join((str(ROOT / "trainer_image"), str(ROOT / "operator"), str(ROOT)))
    return subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
    )


def test_every_documented_command_is_run_or_has_a_reason() -> None:
    handled = (
        "kuberl run examples/",
        "kuberl train ",
        "kuberl record ",
        "kuberl export ",
        "python -m kuberl.spec.",
    )
    loose = [(d, c) for d, c in ALL if not c.startswith(handled) and skip_reason(c) is None]
    assert not loose, f"commands in the docs that no test runs: {loose}"
    for doc, cmd in ALL:
        if cmd.startswith("kuberl run examples/"):
            example = ROOT / shlex.split(cmd)[2]
            assert example.is_file(), f"{doc}: {cmd}: no such example"


TRAIN = [(d, c) for d, c in ALL if c.startswith("kuberl train ")]


@pytest.mark.parametrize(("doc", "cmd"), TRAIN, ids=[c for _, c in TRAIN])
def test_documented_train_command(doc: str, cmd: str, tmp_path: Path) -> None:
    argv = shlex.split(cmd)
    res = run([sys.executable, "-m", "kuberl.cli", *argv[1:], *TRAIN_BUDGET], cwd=tmp_path)
    assert res.returncode == 0, f"{doc}: {cmd}\n{res.stderr}"
    assert list((tmp_path / "runs").glob("*/checkpoints/checkpoint_000001/manifest.json")), res.stdout


def test_documented_record_command(tmp_path: Path, s3_bucket: str) -> None:
    """docs/offline.md: train, then record the checkpoint's policy into S3 (a local moto server)."""
    [(doc, cmd)] = [(d, c) for d, c in ALL if c.startswith("kuberl record ")]
    argv = shlex.split(cmd)
    train = [(d, c) for d, c in ALL if d == doc and c.startswith("kuberl run examples/")]
    assert train, f"{doc} records a checkpoint it never trains"
    job = shlex.split(train[0][1])[2]
    budget = ["--set", "stop.timesteps=1", "--set", "resources.envRunners=0", "--set", "metrics.port=0"]
    res = run(
        [sys.executable, "-m", "kuberl.cli", "run", str(ROOT / job), "--no-progress", *budget], cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    bucket = s3_bucket.split("/")[2]
    argv = [a.replace("s3://my-bucket", f"s3://{bucket}") for a in argv]
    argv[argv.index("--steps") + 1] = "300"
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    rec = run([sys.executable, "-m", "kuberl.cli", *argv[1:]], cwd=tmp_path, env=env)
    assert rec.returncode == 0, rec.stderr
    assert f"s3://{bucket}/data/cartpole-expert" in rec.stdout


def test_documented_export_command(tmp_path: Path) -> None:
    """docs/export.md: train the example it names, export its checkpoint as the page says (each format),
    load each file."""
    exports = [(d, c) for d, c in ALL if c.startswith("kuberl export ")]
    docs = {d for d, _ in exports}
    assert len(docs) == 1, f"export commands in several pages: {docs}"
    doc = docs.pop()
    train = [c for d, c in ALL if d == doc and c.startswith("kuberl run examples/")]
    assert train, f"{doc} exports a checkpoint it never trains"
    budget = ["--set", "stop.timesteps=1", "--set", "resources.envRunners=0", "--set", "metrics.port=0"]
    res = run(
        [
            sys.executable,
            "-m",
            "kuberl.cli",
            "run",
            str(ROOT / shlex.split(train[0])[2]),
            "--no-progress",
            *budget,
        ],
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    for _, cmd in exports:
        out = run([sys.executable, "-m", "kuberl.cli", *shlex.split(cmd)[1:]], cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    import numpy as np
    import onnxruntime
    import torch

    policy = torch.jit.load(str(tmp_path / "policy.pt"))
    assert policy(torch.zeros(3, 4)).shape == (3,)  # CartPole: 4 numbers in, an action each out
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"))
    (actions,) = session.run(["actions"], {"obs": np.zeros((3, 4), np.float32)})
    assert actions.shape == (3,)


def test_documented_generators_are_fresh(tmp_path: Path) -> None:
    """README's `python -m kuberl.spec.crd > crds/…` and `… reference > docs/spec.md` reproduce the files."""
    for doc, cmd in ALL:
        if not cmd.startswith("python -m kuberl.spec."):
            continue
        first = cmd.split("&&")[0].strip()
        module, target = (s.strip() for s in first.split(">"))
        res = run([sys.executable, *shlex.split(module)[1:]], cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert res.stdout == (ROOT / target).read_text(), f"{doc}: {first} does not reproduce {target}"
