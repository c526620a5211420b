"""Data-parallel learners (kuberl.core.learner_group): real Ray actors, a real gloo process group, DDP.

The equivalence test is the proof that DDP averages correctly: one PPO update by 2 learners, each on
half of every minibatch, must leave the same weights as one learner on the whole minibatches.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import ray
import torch

from kuberl.algorithms.families.actor_critic import ActorCriticLearner
from kuberl.algorithms.ppo import PPOLearner
from kuberl.build import build_algorithm
from kuberl.core.distributions import Categorical
from kuberl.core.learner_group import (
    LearnerDiedError,
    LearnerGroup,
    LearnerUpdateError,
    rank_seeds,
    shard_bounds,
    split_batch,
)
from kuberl.core.models import build_model
from kuberl.core.recurrent import RecurrentColumns
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec import parse_job
from kuberl.spec.algorithms import PPOConfig
from kuberl.spec.algorithms.base import ModelConfig
from kuberl.spec.common import ResourcesSpec
from kuberl.spec.errors import SpecError

OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT = gym.spaces.Discrete(2)
# Half a CPU each: two learners fit beside the tests' env runners in the 2-CPU Ray of ray_session.
TWO = ResourcesSpec(learners=2, cpus_per_learner=0.5)


def ppo_learner(cls: type[PPOLearner] = PPOLearner, **config: Any) -> PPOLearner:
    torch.manual_seed(0)
    cfg = PPOConfig(train_batch_size=512, **config)
    return cls(build_model(OBS, ACT, ModelConfig()), Categorical(), cfg, torch.device("cpu"))


def flat_batch(learner: PPOLearner, n: int, seed: int = 1) -> SampleBatch:
    """A PPO training batch whose old log-probs and distribution inputs come from the learner's own
    policy, as sampled ones would."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    actions = rng.integers(0, 2, n)
    with torch.no_grad():
        logits, values = learner.module(torch.as_tensor(obs))
        logp = torch.log_softmax(logits, -1)[torch.arange(n), torch.as_tensor(actions)]
    return SampleBatch(
        {
            Columns.OBS: obs,
            Columns.ACTIONS: actions,
            Columns.REWARDS: rng.normal(size=n).astype(np.float32),
            Columns.ACTION_LOGP: logp.numpy(),
            Columns.ACTION_DIST_INPUTS: logits.numpy(),
            Columns.VF_PREDS: values.numpy(),
            Columns.ADVANTAGES: rng.normal(size=n).astype(np.float32),
            Columns.VALUE_TARGETS: rng.normal(size=n).astype(np.float32),
        }
    )


def global_order(n: int, local_minibatch: int, seeds: list[int]) -> torch.Tensor:
    """The sample order of one epoch as the ranks see it: global minibatch k is rank 0's minibatch k
    followed by rank 1's (each rank shuffles its contiguous shard with its own seed)."""
    shards = shard_bounds(n, len(seeds))
    perms = [
        start + torch.randperm(end - start, generator=torch.Generator().manual_seed(seed))
        for (start, end), seed in zip(shards, seeds, strict=True)
    ]
    per_rank = shards[0][1] - shards[0][0]
    blocks = [p[k : k + local_minibatch] for k in range(0, per_rank, local_minibatch) for p in perms]
    return torch.cat(blocks)


def arranged_for(generator: torch.Generator, n: int, order: torch.Tensor) -> torch.Tensor:
    """Indices that lay a batch out so a single learner's own shuffle (randperm from `generator`) visits
    it in `order`."""
    perm = torch.randperm(n, generator=generator)
    index = torch.empty(n, dtype=torch.long)
    index[perm] = order
    return index


def update_on_two_ranks(
    single: Any, batch: SampleBatch, *, shard_axis: int = 0
) -> tuple[dict[str, float], dict[str, Any], list[int]]:
    """One update of a 2-rank group built from a copy of `single` (driver generator seeded 7): its stats,
    rank 0's state and the per-rank shuffle seeds it drew."""
    group = LearnerGroup(copy.deepcopy(single), resources=TWO)
    assert group.shard_axis == shard_axis
    try:
        stats = group.update(batch, timesteps=0, generator=torch.Generator().manual_seed(7))
        return stats, group.get_state(), rank_seeds(torch.Generator().manual_seed(7), 2)
    finally:
        group.shutdown()


@pytest.mark.usefixtures("ray_session")
def test_two_ddp_learners_update_exactly_like_one() -> None:
    single = ppo_learner(minibatch_size=128, num_epochs=1, lr=3e-3, kl_coeff=0.2)
    batch = flat_batch(single, 512)
    stats, ddp_state, seeds = update_on_two_ranks(single, batch)

    # The single learner on the same global minibatches, in the same order.
    ref_gen = torch.Generator().manual_seed(123)
    index = arranged_for(torch.Generator().manual_seed(123), 512, global_order(512, 64, seeds)).numpy()
    before = copy.deepcopy(single.module.state_dict())
    ref_stats = single.update(
        SampleBatch({k: v[index] for k, v in batch.items()}), timesteps=0, generator=ref_gen
    )

    assert ref_stats["epochs"] == 1.0
    moved = 0.0
    for name, ref in single.module.state_dict().items():
        torch.testing.assert_close(ddp_state["module"][name], ref, rtol=1e-5, atol=1e-6)
        moved = max(moved, float((ref - before[name]).abs().max()))
    assert moved > 1e-3  # 4 Adam steps at lr 3e-3 really moved the weights
    for term in ("total_loss", "policy_loss", "vf_loss", "kl", "grad_norm"):
        assert stats[term] == pytest.approx(ref_stats[term], rel=1e-4, abs=1e-6), term
    assert ddp_state["kl_coeff"] == single.kl_coeff  # the adaptive KL weight decided on the global KL
    # Adam's moments too: a checkpoint of the group continues exactly like the single learner.
    for key, ref in single.optimizer.state_dict()["state"].items():
        torch.testing.assert_close(
            ddp_state["optimizer"]["state"][key]["exp_avg"], ref["exp_avg"], rtol=1e-4, atol=1e-7
        )


LSTM = ModelConfig(use_lstm=True, fcnet_hiddens=[16], lstm_cell_size=16, max_seq_len=8)


def lstm_learner(**config: Any) -> PPOLearner:
    torch.manual_seed(0)
    cfg = PPOConfig(train_batch_size=512, model=LSTM, **config)
    return PPOLearner(build_model(OBS, ACT, LSTM), Categorical(), cfg, torch.device("cpu"))


def sequence_batch(learner: PPOLearner, seq_len: int, sequences: int, seed: int = 1) -> SampleBatch:
    """A recurrent PPO training batch of time-major sequences [L, S]: recorded initial LSTM states,
    previous actions and rewards, episode starts inside sequences, and old log-probs / distribution inputs /
    values from the learner's own network unrolled over them, as a runner's would be."""
    rng = np.random.default_rng(seed)
    shape = (seq_len, sequences)
    cell = LSTM.lstm_cell_size
    resets = rng.random(shape) < 0.1
    resets[0] = False
    prev_actions = rng.integers(-1, 2, shape)
    seq: dict[str, np.ndarray] = {
        Columns.OBS: rng.uniform(-1, 1, (*shape, 4)).astype(np.float32),
        Columns.ACTIONS: rng.integers(0, 2, shape),
        Columns.REWARDS: rng.normal(size=shape).astype(np.float32),
        RecurrentColumns.STATE_H: rng.normal(0, 0.5, (*shape, cell)).astype(np.float32),
        RecurrentColumns.STATE_C: rng.normal(0, 0.5, (*shape, cell)).astype(np.float32),
        RecurrentColumns.PREV_ACTIONS: prev_actions,
        RecurrentColumns.PREV_REWARDS: np.where(prev_actions < 0, 0.0, rng.normal(size=shape)).astype(
            np.float32
        ),
        RecurrentColumns.RESETS: resets,
    }
    with torch.no_grad():
        # The learner's training pass (SequenceForward): unrolled from each sequence's recorded state.
        dist_in, values = learner.train_module({k: torch.as_tensor(v) for k, v in seq.items()})
        logp = torch.log_softmax(dist_in, -1).gather(-1, torch.as_tensor(seq[Columns.ACTIONS]).unsqueeze(-1))
    return SampleBatch(
        {
            **seq,
            Columns.ACTION_LOGP: logp.squeeze(-1).numpy(),
            Columns.ACTION_DIST_INPUTS: dist_in.numpy(),
            Columns.VF_PREDS: values.numpy(),
            Columns.ADVANTAGES: rng.normal(size=shape).astype(np.float32),
            Columns.VALUE_TARGETS: rng.normal(size=shape).astype(np.float32),
        }
    )


@pytest.mark.usefixtures("ray_session")
def test_two_ddp_learners_update_a_recurrent_policy_exactly_like_one() -> None:
    """Recurrent PPO: the ranks split the batch by whole sequences and unroll the LSTM through
    SequenceForward inside DDP, so backward() averages the gradients. 2 ranks × 4 sequences per step must
    leave the weights one learner leaves with 8 sequences per step on the same minibatches."""
    seq_len, sequences = 8, 64
    single = lstm_learner(minibatch_size=64, num_epochs=1, lr=3e-3, kl_coeff=0.2)  # 8 sequences per step
    batch = sequence_batch(single, seq_len, sequences)
    stats, ddp_state, seeds = update_on_two_ranks(single, batch, shard_axis=1)

    # The single learner on the same global minibatches (rank 0's 4 sequences, then rank 1's), in order.
    ref_gen = torch.Generator().manual_seed(123)
    index = arranged_for(
        torch.Generator().manual_seed(123), sequences, global_order(sequences, 4, seeds)
    ).numpy()
    before = copy.deepcopy(single.module.state_dict())
    ref_stats = single.update(
        SampleBatch({k: v[:, index] for k, v in batch.items()}), timesteps=0, generator=ref_gen
    )

    moved = 0.0
    for name, ref in single.module.state_dict().items():
        torch.testing.assert_close(ddp_state["module"][name], ref, rtol=1e-5, atol=1e-6)
        moved = max(moved, float((ref - before[name]).abs().max()))
    assert moved > 1e-3  # 8 Adam steps at lr 3e-3 really moved the LSTM's weights
    for term in ("total_loss", "policy_loss", "vf_loss", "kl", "grad_norm"):
        assert stats[term] == pytest.approx(ref_stats[term], rel=1e-4, abs=1e-6), term
    assert ddp_state["kl_coeff"] == single.kl_coeff
    for key, ref in single.optimizer.state_dict()["state"].items():
        torch.testing.assert_close(
            ddp_state["optimizer"]["state"][key]["exp_avg"], ref["exp_avg"], rtol=1e-4, atol=1e-7
        )


@pytest.mark.usefixtures("ray_session")
def test_actor_critic_learner_runs_data_parallel() -> None:
    """A2C/PG's learner through the group: a full-batch step matches one learner's, with each rank
    accumulating its half over two microbatches (DDP all-reduces only after the last, under no_sync).
    Advantages are not normalised here: a microbatch is normalised on its own, so splitting it differently
    changes that normalisation."""
    torch.manual_seed(0)
    single = ActorCriticLearner(
        build_model(OBS, ACT, ModelConfig()),
        Categorical(),
        lr=1e-2,
        lr_schedule=None,
        grad_clip=0.5,
        device=torch.device("cpu"),
        optimizer="rmsprop",
        optimizer_eps=1e-5,
        rmsprop_alpha=0.99,
        vf_loss_coeff=0.5,
        entropy_coeff=0.01,
        normalize_advantages=False,
    )
    batch = {
        k: v
        for k, v in flat_batch(ppo_learner(), 256).items()
        if k in (Columns.OBS, Columns.ACTIONS, Columns.ADVANTAGES, Columns.VALUE_TARGETS, Columns.VF_PREDS)
    }
    group = LearnerGroup(copy.deepcopy(single), resources=TWO)
    try:
        kw: dict[str, Any] = {"timesteps": 0, "minibatch_size": None, "microbatch_size": 64}
        stats = group.update(batch, generator=torch.Generator(), **kw)
        state = group.get_state()
    finally:
        group.shutdown()
    # Microbatches of 64 per rank are one global minibatch of 256 (gradients accumulate under no_sync).
    ref = single.update(batch, generator=torch.Generator(), **{**kw, "microbatch_size": None})
    # RMSprop's first step is ~lr·sign(g): where |g| is near eps, float-rounding differences of the
    # averaged gradient show at ~1e-6 of a step of lr = 1e-2, hence atol 1e-5.
    for name, w in single.module.state_dict().items():
        torch.testing.assert_close(state["module"][name], w, rtol=1e-5, atol=1e-5)
    assert stats["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-4)


@pytest.mark.usefixtures("ray_session")
def test_a_dead_learner_is_reported_by_rank_not_a_hang() -> None:
    learner = ppo_learner(minibatch_size=128, num_epochs=1)
    group = LearnerGroup(learner, resources=TWO)
    ray.kill(group.actors[1])
    with pytest.raises(LearnerDiedError, match=r"learner rank 1 of 2 died"):
        group.update(flat_batch(learner, 256), timesteps=0, generator=torch.Generator())
    assert group.actors == []  # the survivor, blocked in DDP's all-reduce, was stopped too


class StuckLearner(PPOLearner):
    """Rank 1 stalls inside update() (a hung data loader, a wedged GPU) after saying so in a marker file;
    rank 0 runs the real update and blocks in DDP's first all-reduce, waiting for rank 1."""

    marker: Path
    fail = False  # raise instead of stalling (an out-of-memory error on one rank)

    def update(self, batch: SampleBatch, **kwargs: Any) -> dict[str, float]:
        if torch.distributed.get_rank() == 1:
            self.marker.write_text("in update")
            if self.fail:
                time.sleep(1.0)  # rank 0 is in its all-reduce by now
                raise MemoryError("rank 1 ran out of memory")
            time.sleep(600)
        return super().update(batch, **kwargs)


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("victim", [0, 1], ids=["rank-blocked-in-all-reduce", "rank-stuck-in-update"])
def test_a_rank_killed_mid_update_fails_the_update_promptly(victim: int, tmp_path: Path) -> None:
    learner = ppo_learner(StuckLearner, minibatch_size=128, num_epochs=1)
    assert isinstance(learner, StuckLearner)
    learner.marker = tmp_path / "rank1-in-update"
    group = LearnerGroup(learner, resources=TWO)
    actors = list(group.actors)
    killed_at: list[float] = []

    def kill_once_updating() -> None:
        deadline = time.monotonic() + 60
        while not (tmp_path / "rank1-in-update").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # rank 0 is in its all-reduce by now
        killed_at.append(time.monotonic())
        ray.kill(actors[victim])

    killer = threading.Thread(target=kill_once_updating)
    killer.start()
    try:
        with pytest.raises(LearnerDiedError, match=rf"learner rank {victim} of 2 died"):
            group.update(flat_batch(learner, 256), timesteps=0, generator=torch.Generator())
        noticed = time.monotonic() - killed_at[0]
        print(f"rank {victim} killed mid-update; the driver raised {noticed:.2f}s later")
    finally:
        killer.join()
        group.shutdown()
    # Far below the 5-minute collective timeout, and below rank 1's 600 s stall: the driver waited on
    # the ranks' futures one at a time and saw the death as soon as Ray reported it.
    assert noticed < 30, f"the dead rank was noticed after {noticed:.1f}s"
    assert group.actors == []
    for actor in actors:  # the survivor, blocked in a collective or stalled, was stopped too
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.ready.remote(), timeout=30)


@pytest.mark.usefixtures("ray_session")
def test_a_rank_raising_mid_update_stops_the_others(tmp_path: Path) -> None:
    learner = ppo_learner(StuckLearner, minibatch_size=128, num_epochs=1)
    assert isinstance(learner, StuckLearner)
    learner.marker, learner.fail = tmp_path / "rank1-in-update", True
    group = LearnerGroup(learner, resources=TWO)
    actors = list(group.actors)
    start = time.monotonic()
    with pytest.raises(
        LearnerUpdateError, match=r"rank 1 of 2 failed during an update \(MemoryError: rank 1 ran"
    ):
        group.update(flat_batch(learner, 256), timesteps=0, generator=torch.Generator())
    assert time.monotonic() - start < 30
    assert group.actors == []
    with pytest.raises(ray.exceptions.RayActorError):  # rank 0, blocked in the all-reduce, was stopped
        ray.get(actors[0].ready.remote(), timeout=30)


def test_shards_are_equal_and_contiguous() -> None:
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 9)]
    with pytest.raises(ValueError, match="cannot be split over 4 learners"):
        shard_bounds(3, 4)
    seqs = {"x": np.arange(24).reshape(3, 8)}  # [L, S] sequences split along S, whole
    left, right = split_batch(seqs, 2, axis=1)
    assert left["x"].tolist() == [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17, 18, 19]]
    assert right["x"].shape == (3, 4)
    a = rank_seeds(torch.Generator().manual_seed(3), 2)
    assert a == rank_seeds(torch.Generator().manual_seed(3), 2)
    assert a[0] != a[1]


def job(tmp_path: Path, **resources: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "ddp"},
        "spec": {
            "algorithm": "PPO",
            "env": "CartPole-v1",
            "seed": 3,
            "runDir": str(tmp_path),
            "config": {"trainBatchSize": 512, "minibatchSize": 128, "numEpochs": 2},
            "resources": {"envRunners": 0, "envsPerRunner": 4, "cpusPerLearner": 0.5, **resources},
        },
    }


def weights(algo: Any) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in algo.get_weights().items()}


@pytest.mark.usefixtures("ray_session")
def test_checkpoint_from_two_learners_restores_into_one_and_back(tmp_path: Path) -> None:
    two = build_algorithm(job(tmp_path / "a", learners=2))
    try:
        two.train()
        uri = two.save(str(tmp_path / "ckpt"))
        saved_state = two.get_state()
        saved = weights(two)
        assert set(saved_state["algo"]) == {"learner", "torch_gen"}
        assert set(saved_state["algo"]["learner"]) == {"module", "optimizer", "lr", "kl_coeff"}
    finally:
        two.stop()

    one = build_algorithm(job(tmp_path / "b", learners=1))
    try:
        one.restore(uri)
        for k, v in weights(one).items():
            np.testing.assert_array_equal(v, saved[k])
        result = one.train()  # continues: iteration counter and Adam state came along
        assert result["training_iteration"] == 2
        uri_one = one.save(str(tmp_path / "ckpt1"))
        after_one = weights(one)
    finally:
        one.stop()

    back = build_algorithm(job(tmp_path / "c", learners=2))
    try:
        back.restore(uri_one)
        ranks = back.learner.get_state()["module"]  # rank 0's copy, loaded from the checkpoint
        for k, v in after_one.items():
            np.testing.assert_array_equal(ranks[k].numpy(), v)
        assert back.train()["training_iteration"] == 3
    finally:
        back.stop()


@pytest.mark.usefixtures("ray_session")
def test_recurrent_checkpoint_from_two_learners_has_a_single_learners_keys(tmp_path: Path) -> None:
    """SequenceForward and DDP wrap the network for training only: the checkpoint holds the network's own
    state_dict, so it restores into one learner."""
    lstm = {"useLstm": True, "fcnetHiddens": [16], "lstmCellSize": 16, "maxSeqLen": 8}
    config = {"trainBatchSize": 256, "minibatchSize": 64, "numEpochs": 1, "model": lstm}
    states, saved = [], {}
    for learners in (2, 1):
        doc = job(tmp_path / str(learners), learners=learners)
        doc["spec"]["config"] = config
        algo = build_algorithm(doc)
        try:
            if learners == 2:
                algo.train()
                uri = algo.save(str(tmp_path / "ckpt"))
                saved = weights(algo)
            else:
                algo.restore(uri)
                for k, v in weights(algo).items():
                    np.testing.assert_array_equal(v, saved[k])
                assert algo.train()["training_iteration"] == 2
            states.append(algo.get_state()["algo"]["learner"])
        finally:
            algo.stop()
    assert set(states[0]["module"]) == set(states[1]["module"])
    assert all(k.startswith(("trunk.", "lstm.", "pi_head.", "vf_head.")) for k in states[0]["module"])


@pytest.mark.usefixtures("ray_session")
def test_two_learners_are_deterministic_given_the_seed(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        algo = build_algorithm(job(tmp_path / name, learners=2))
        try:
            algo.train()
            algo.train()
            runs.append(weights(algo))
        finally:
            algo.stop()
    for k, v in runs[0].items():
        np.testing.assert_array_equal(v, runs[1][k])


def test_learners_above_one_refused_where_unsupported() -> None:
    def problems(algorithm: str, **extra: Any) -> str:
        doc = job(Path("/tmp"), learners=2)
        doc["spec"]["algorithm"] = algorithm
        doc["spec"]["config"] = extra
        with pytest.raises(SpecError) as info:
            parse_job(doc)
        return str(info.value)

    msg = problems("SAC")
    assert "spec.resources.learners" in msg
    assert "SAC does not support data-parallel learners" in msg
    assert "spec.config.minibatchSize: 101 is not a multiple of resources.learners (2)" in problems(
        "PPO", minibatchSize=101
    )
    # Recurrent minibatches are whole sequences, split by sequence: 60 steps are 3 sequences of 20.
    lstm = {"useLstm": True, "maxSeqLen": 20}
    assert (
        "spec.config.minibatchSize: 60 holds 3 sequences of model.maxSeqLen 20 steps (recurrent minibatches "
        "are whole sequences), not a positive multiple of resources.learners (2)"
    ) in problems("PPO", minibatchSize=60, model=lstm)
    assert "holds 0 sequences" in problems("PPO", minibatchSize=10, model=lstm)
    doc = job(Path("/tmp"), learners=2)
    doc["spec"]["config"] = {"minibatchSize": 80, "model": lstm}
    assert parse_job(doc).spec.config.model.use_lstm  # PPO + LSTM trains data-parallel
    doc = job(Path("/tmp"), learners=2, gpusPerLearner=0.5)
    with pytest.raises(SpecError, match=r"spec.resources.gpusPerLearner: 0.5 with 2 learners: NCCL cannot"):
        parse_job(doc)
    for algorithm in ("PPO", "A2C", "PG", "DQN"):
        doc = job(Path("/tmp"), learners=2)
        doc["spec"]["algorithm"] = algorithm
        doc["spec"]["config"] = {}
        assert parse_job(doc).spec.resources.learners == 2
