"""Offline RL learns from recorded data: an expert PPO policy's CartPole experience recorded to Parquet
(locally and on a moto S3 server) → BC from the S3 copy reaches 450; expert + untrained-policy data →
MARWIL beats BC; everything a short SAC run on Pendulum sampled → CQL reaches −400. Seeds checked and
the budgets they needed are in docs/algorithms/{bc,marwil,cql}.md."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch

from kuberl.build import build_algorithm
from kuberl.record import record_checkpoint
from tests.fixtures.s3 import DUMMY_CREDENTIALS
from tests.learning.common import SEED, example, train_until_evaluation

pytestmark = pytest.mark.learning

RECORD_ROWS = 20_000  # per dataset: ~40 expert episodes, or ~2,000 of the left-biased random policy


@pytest.fixture(scope="module")
def s3_prefix(moto_server: str) -> Iterator[str]:
    """A bucket on the session's moto server, with boto3 (and so the reader) pointed at it for the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", moto_server)
        for key, value in DUMMY_CREDENTIALS.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(key, raising=False)
        bucket = f"kuberl-offline-{uuid.uuid4().hex[:10]}"
        boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
        yield f"s3://{bucket}/offline"


def record_random(doc: dict[str, Any], *, rows: int, push_left: float) -> int:
    """Sample `rows` env steps with `doc`'s untrained policy turned into a random one that pushes the
    cart left with probability `push_left`; the job's `output` writes them. Returns the rows written."""
    algo = build_algorithm(doc)
    try:
        # The untrained policy head is near zero (orthogonal init, gain 0.01): its bias sets the odds.
        logit = 0.5 * math.log(push_left / (1.0 - push_left))
        with torch.no_grad():
            algo.learner.module.pi[-1].bias.copy_(torch.tensor([logit, -logit]))
        algo.sync_weights()
        start = algo.timesteps
        while algo.timesteps - start < rows:
            algo.sample()
    finally:
        algo.stop()
    assert algo.writer is not None
    return int(algo.writer.rows_written)


@pytest.fixture(scope="module")
def cartpole_data(tmp_path_factory: pytest.TempPathFactory, s3_prefix: str) -> dict[str, str]:
    root = tmp_path_factory.mktemp("offline-cartpole")
    # The expert: the PPO example trained to a training mean of 475.
    algo = build_algorithm(example("ppo-job.yaml", root / "ppo", "resources.envRunners=0"))
    try:
        while algo.timesteps < 300_000:
            result = algo.train()
            if (result["episode_return_mean"] or 0.0) >= 475:
                break
        assert (result["episode_return_mean"] or 0.0) >= 475, "the PPO expert did not train"
        checkpoint = algo.save(str(root / "checkpoints"))
    finally:
        algo.stop()

    def recording(uri: str) -> dict[str, Any]:
        return example(
            "ppo-job.yaml",
            root / "record",
            "resources.envRunners=0",
            "resources.envsPerRunner=4",
            f"output.uri={uri}",
        )

    data = {
        "expert": str(root / "expert"),
        "expert_s3": f"{s3_prefix}/cartpole-expert",
        "random": str(root / "random"),
    }
    # `kuberl record`: the expert's behaviour (sampling, as trained), without further training.
    for uri in (data["expert"], data["expert_s3"]):
        assert record_checkpoint(checkpoint, output=uri, steps=RECORD_ROWS, envs=4)["rows"] >= RECORD_ROWS
    assert record_random(recording(data["random"]), rows=RECORD_ROWS, push_left=0.9) >= RECORD_ROWS
    return data


def offline_job(name: str, tmp_path: Path, uris: list[str], *overrides: str) -> dict[str, Any]:
    doc = example(name, tmp_path, "evaluation.interval=0", *overrides)  # the helpers evaluate
    doc["spec"]["input"]["uris"] = uris
    return doc


def test_bc_from_s3_expert_data(tmp_path: Path, cartpole_data: dict[str, str]) -> None:
    doc = offline_job("bc-cartpole.yaml", tmp_path, [cartpole_data["expert_s3"]])
    out = train_until_evaluation(doc, threshold=450, budget=150_000, every=12_800)
    print(f"BC seed {SEED}: {out.describe()}")
    assert out.best >= 450, out.describe()


def test_marwil_beats_bc_on_mixed_data(tmp_path: Path, cartpole_data: dict[str, str]) -> None:
    """Expert data plus as many rows of a random policy biased to push left (p = 0.9, ~2,000 episodes of
    ~10 steps). Near the start states the random rows outnumber the expert's, so BC copies their majority
    action; MARWIL weights each action by its advantage and recovers the expert."""
    uris = [cartpole_data["expert"], cartpole_data["random"]]
    marwil = train_until_evaluation(
        offline_job("marwil-cartpole.yaml", tmp_path / "marwil", uris),
        threshold=400,
        budget=256_000,
        every=32_000,
    )
    bc = train_until_evaluation(
        offline_job("bc-cartpole.yaml", tmp_path / "bc", uris), threshold=400, budget=128_000, every=32_000
    )
    print(f"mixed data seed {SEED}: MARWIL {marwil.describe()}; BC {bc.describe()}")
    assert marwil.best >= 400, marwil.describe()
    assert marwil.best >= bc.best + 200, f"MARWIL {marwil.describe()}; BC {bc.describe()}"


def test_cql_on_logged_pendulum(tmp_path: Path) -> None:
    data = str(tmp_path / "pendulum-sac")
    # Everything a short SAC run samples (1,000 random warm-up steps, then a policy that improves from
    # about −1,300 to about −200): data of mixed quality, as a replay buffer holds.
    sac = build_algorithm(
        example(
            "sac-pendulum.yaml",
            tmp_path / "sac",
            "resources.envRunners=0",
            f"output.uri={data}",
            "evaluation.interval=0",
        )
    )
    try:
        while sac.timesteps < 10_000:
            sac.train()
    finally:
        sac.stop()
    doc = offline_job("cql-pendulum.yaml", tmp_path / "cql", [data])
    out = train_until_evaluation(doc, threshold=-400, budget=1_536_000, every=128_000)
    print(f"CQL seed {SEED}: {out.describe()}")
    assert out.best >= -400, out.describe()
