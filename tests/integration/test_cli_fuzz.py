"""Generated job files through the CLI's entry point (`kuberl.cli.main`, what the `kuberl` script calls):
whatever the file says, the user gets exit 0 or one error message with exit 2 — never a traceback —
and a refused `kuberl run` writes nothing."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kuberl.cli import main

BASE: dict[str, Any] = {
    "apiVersion": "kuberl.io/v1alpha1",
    "kind": "RLTrainingJob",
    "metadata": {"name": "fuzz"},
    "spec": {
        "algorithm": "PPO",
        "env": "CartPole-v1",
        "config": {"train_batch_size": 64, "minibatch_size": 32, "num_epochs": 1},
        "stop": {"iterations": 1},
        "resources": {"envRunners": 0, "envsPerRunner": 1},
        "metrics": {"port": 0},
    },
}
# Fields whose values do not change what one training iteration costs: `kuberl run` may train them.
CHEAP = [
    "metadata.name", "metadata.namespace", "spec.algorithm", "spec.env", "spec.envConfig", "spec.seed",
    "spec.stop.episodeReturnMean", "spec.stop.timeSeconds", "spec.checkpoint.uri", "spec.checkpoint.keep",
    "spec.checkpoint.everyIterations", "spec.resume", "spec.config.lr", "spec.config.gamma",
    "spec.config.model.customModel", "spec.config.model.fcnetActivation", "spec.metrics.enabled",
    "spec.resources.gpusPerLearner", "spec.resources.learners", "spec.config.observationFilter",
    "spec.evaluation", "spec.external", "spec.output", "spec.input", "spec.multiAgent", "spec.tune",
    "spec.nope", "kind", "apiVersion",
]  # fmt: skip
# Fields rendered only (a valid value may mean a long iteration).
COSTLY = [
    "spec.config.trainBatchSize", "spec.config.model.fcnetHiddens", "spec.resources.envsPerRunner",
    "spec.resources.envRunners", "spec.config.numEpochs", "spec.config.minibatchSize", "spec.cluster",
    "spec.stop.iterations", "spec.config", "spec",
]  # fmt: skip
TEXT = st.text(alphabet="ab:/.[]-_ é\\s3x", max_size=12) | st.sampled_from(["[/x]", "[red]a", "s3://b[/p]"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.sampled_from(["auto", "never", "s3://", "s3://b[/p]", "CartPole-v1", "tests.envs:make_chain", "DQN"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[last] = value


def cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(list(argv))
    return rc, err.getvalue()


def write(tmp: Path, edits: dict[str, Any], n: int) -> Path:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in edits.items():
        set_path(doc, path, value)
    job = tmp / f"job{n}.yaml"
    job.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return job


COUNTER = iter(range(10**9))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=st.dictionaries(st.sampled_from(COSTLY + CHEAP), VALUES, min_size=1, max_size=3))
def test_render_never_shows_a_traceback(tmp_path: Path, edits: dict[str, Any]) -> None:
    rc, err = cli("render", str(write(tmp_path, edits, next(COUNTER))))
    assert rc in (0, 2), err
    assert "Traceback" not in err
    if rc == 2:
        assert err.startswith("error:"), err


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=st.dictionaries(st.sampled_from(CHEAP), VALUES, min_size=1, max_size=2))
def test_run_never_shows_a_traceback_and_a_refusal_writes_nothing(
    tmp_path: Path, edits: dict[str, Any], monkeypatch: Any
) -> None:
    n = next(COUNTER)
    work = tmp_path / f"w{n}"
    work.mkdir()
    monkeypatch.chdir(work)
    job = write(work, edits, n)
    stop = edits.get("spec.stop.timeSeconds")
    if isinstance(stop, float) and math.isfinite(stop) and stop > 60:
        return  # a long, valid run: not this test's business
    rc, err = cli("run", str(job), "--no-progress", "--set", "stop.iterations=1", "--set", "external=null")
    assert rc in (0, 2), err
    assert "Traceback" not in err
    if rc == 2:
        assert err.startswith("error:"), err
        assert sorted(p.name for p in work.iterdir()) == [job.name], err
