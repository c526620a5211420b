"""DQN on data-parallel learners (resources.learners > 1): real Ray actors, a real gloo process group, DDP.

Each replayed minibatch is split over the ranks; DDP averages their gradients, so N ranks must take the
step one learner takes on the whole minibatch, return its |TD errors| (the replay priorities) in the
minibatch's order, and keep their online and target networks identical (each rank copies its own
online network into its target). The learning test is tests/learning/test_dqn_learning.py.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import ray
import torch

from kuberl.algorithms.families.q_learning import QLearner, build_q_network, head_options
from kuberl.build import build_algorithm
from kuberl.core.learner_group import LearnerGroup
from kuberl.core.replay import WEIGHTS
from kuberl.core.returns import DISCOUNTS
from kuberl.core.sample_batch import Columns
from kuberl.spec import parse_job
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.dqn import DQNConfig
from kuberl.spec.common import ResourcesSpec
from kuberl.spec.errors import SpecError

OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT = gym.spaces.Discrete(3)
# Half a CPU each: two learners fit in the 2-CPU Ray of ray_session.
TWO = ResourcesSpec(learners=2, cpus_per_learner=0.5)
JOB_SEED = 7  # not torch's default seed, which an unseeded rank's generator would start from


def q_learner(**config: Any) -> QLearner:
    torch.manual_seed(0)
    cfg = DQNConfig(lr=3e-3, grad_clip=10.0, model=ModelConfig(fcnet_hiddens=[32, 32]), **config)
    module = build_q_network(OBS, ACT, cfg.model, **head_options(cfg))
    return QLearner(module, cfg, torch.device("cpu"))


def replay_minibatch(n: int, seed: int) -> dict[str, np.ndarray]:
    """A replayed n-step minibatch as the buffer yields it (without its indices), importance weights
    that differ per sample, and some terminal transitions."""
    rng = np.random.default_rng(seed)
    return {
        Columns.OBS: rng.uniform(-1, 1, (n, 4)).astype(np.float32),
        Columns.NEXT_OBS: rng.uniform(-1, 1, (n, 4)).astype(np.float32),
        Columns.ACTIONS: rng.integers(0, 3, n),
        Columns.REWARDS: rng.normal(size=n).astype(np.float32),
        Columns.TERMINATEDS: rng.random(n) < 0.2,
        DISCOUNTS: np.full(n, 0.99**3, np.float32),
        WEIGHTS: rng.uniform(0.3, 1.0, n).astype(np.float32),
    }


def rank_states(group: LearnerGroup) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = ray.get([a.get_state.remote() for a in group.actors])
    return states


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize(
    "head",
    [{}, {"num_atoms": 11, "v_min": -5.0, "v_max": 5.0}, {"noisy": True}],
    ids=["scalar", "c51", "noisy"],
)
def test_two_ddp_q_learners_step_exactly_like_one_and_stay_identical(head: dict[str, Any]) -> None:
    """Noisy nets draw new noise for the online and target networks before every update from torch's
    global generator: the group seeds it alike on every rank from the job's seed, so with the one
    learner's generator seeded the same, all of them draw the same noise and take the same step."""
    single = q_learner(**head)
    initial = copy.deepcopy(single.module.state_dict())
    group = LearnerGroup(copy.deepcopy(single), resources=TWO, seed=JOB_SEED)
    torch.manual_seed(JOB_SEED)  # the one learner's noise (the driver's global generator)
    try:
        for step in range(4):
            batch = replay_minibatch(64, seed=step)
            stats, td_abs = group.update(batch)
            ref_terms, ref_td = single.update(batch)
            # The priorities of the whole minibatch, in its order (rank 0's half, then rank 1's).
            np.testing.assert_allclose(td_abs, ref_td, rtol=1e-4, atol=1e-5)
            assert stats["total_loss"] == pytest.approx(float(ref_terms["total_loss"]), rel=1e-4)
            assert stats["grad_norm"] == pytest.approx(float(ref_terms["grad_norm"]), rel=1e-4)
            if step == 1:  # the target update DQN makes between iterations
                group.update_target()
                single.update_target()
        states = rank_states(group)
    finally:
        group.shutdown()

    for name, ref in single.module.state_dict().items():
        # Every rank took the same averaged step: bit-identical networks, and the one learner's weights.
        torch.testing.assert_close(states[1]["module"][name], states[0]["module"][name], rtol=0, atol=0)
        torch.testing.assert_close(states[0]["module"][name], ref, rtol=1e-4, atol=1e-5)
    assert max(float((single.module.state_dict()[k] - v).abs().max()) for k, v in initial.items()) > 1e-3
    for name, ref in single.target.state_dict().items():
        torch.testing.assert_close(states[1]["target"][name], states[0]["target"][name], rtol=0, atol=0)
        torch.testing.assert_close(states[0]["target"][name], ref, rtol=1e-4, atol=1e-5)
    # The target is the online network of after step 1, not the initial one nor the last one.
    changed = [not torch.equal(states[0]["target"][k], v) for k, v in initial.items()]
    assert any(changed)


def dqn_job(tmp_path: Path, learners: int, **config: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "dqn-ddp"},
        "spec": {
            "algorithm": "DQN",
            "env": "CartPole-v1",
            "seed": 5,
            "runDir": str(tmp_path),
            "config": {
                "trainBatchSize": 32,
                "rolloutFragmentLength": 16,
                "numStepsSampledBeforeLearningStarts": 64,
                "targetNetworkUpdateFreq": 64,
                "prioritizedReplay": True,
                "lrSchedule": [[0, 1e-3], [1000, 1e-4]],
                "model": {"fcnetHiddens": [32, 32]},
                **config,
            },
            "resources": {"envRunners": 0, "envsPerRunner": 4, "learners": learners, "cpusPerLearner": 0.5},
        },
    }


@pytest.mark.usefixtures("ray_session")
def test_dqn_job_on_two_learners_trains_and_checkpoints_like_one(tmp_path: Path) -> None:
    """Through build_algorithm as `kuberl run` builds it: prioritized replay gets each step's priorities,
    the lr schedule and the target updates reach every rank, and the checkpoint has a single learner's
    keys and restores into one learner."""
    two = build_algorithm(dqn_job(tmp_path / "a", learners=2))
    try:
        for _ in range(4):
            result = two.train()
        stats = result["learner"]["default_policy"]
        assert stats["num_target_updates"] >= 2
        assert stats["num_updates_lifetime"] > 0
        assert stats["lr"] < 1e-3  # the schedule moved, on the ranks (reported by rank 0) too
        states = rank_states(two.learner)  # type: ignore[arg-type]
        for key in ("module", "target"):
            for name, w in states[0][key].items():
                torch.testing.assert_close(states[1][key][name], w, rtol=0, atol=0)
        for name, w in two.learner.module.state_dict().items():  # the driver's copy acts for the runners
            torch.testing.assert_close(states[0]["module"][name], w, rtol=0, atol=0)
        uri = two.save(str(tmp_path / "ckpt"))
        saved = {k: np.array(v) for k, v in two.get_weights().items()}
        assert set(two.get_state()["algo"]["learner"]) == {"module", "optimizer", "lr", "target"}
    finally:
        two.stop()
    one = build_algorithm(dqn_job(tmp_path / "b", learners=1))
    try:
        one.restore(uri)
        for k, v in one.get_weights().items():
            np.testing.assert_array_equal(np.array(v), saved[k])
        assert one.train()["training_iteration"] == 5
    finally:
        one.stop()


def test_dqn_train_batch_must_split_evenly_over_learners(tmp_path: Path) -> None:
    with pytest.raises(
        SpecError, match=r"spec.config.trainBatchSize: 33 is not a multiple of resources.learners"
    ):
        parse_job(dqn_job(tmp_path, learners=2, trainBatchSize=33))
    assert parse_job(dqn_job(tmp_path, learners=2)).spec.resources.learners == 2
