"""What ES and ARS share: perturbations named by seeds, rank shaping, a policy network without a value
head, and the parallel evaluation of perturbed policies on env-runner actors.

Only seeds travel: the driver draws one integer per direction, each runner regenerates ε = N(0, I) from
it (`noise`), evaluates θ ± σ·ε, and sends back one return per candidate; the driver regenerates the
same ε to form its update. The parameter vector θ reaches the runners the usual way (the weight sync,
one object-store copy), so a generation costs O(directions) bytes on the wire, not O(directions × |θ|).

A runner evaluates its candidates in lockstep on its vector env, one candidate per sub-environment,
with a single batched forward pass per step (`torch.func.vmap` over the candidates' parameters). The +
and − candidates of a direction reset their envs with the same seed (common random numbers), which
removes the env's start-state noise from the difference F(θ+σε) − F(θ−σε).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from kuberl.algorithms.base import Algorithm, StepOutcome
from kuberl.core.action_spaces import to_env
from kuberl.core.env_runner import EnvRunner
from kuberl.core.models import (
    action_distribution,
    dist_input_dim,
    flatten_obs,
    mlp,
    obs_dim,
    weights_to_numpy,
)
from kuberl.core.normalizer import RunningStats
from kuberl.core.policy import PolicyBase
from kuberl.core.runner_group import EnvRunnerGroup
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.ars import ARSConfig
from kuberl.spec.algorithms.es import ESConfig

MAX_SEED = 2**31 - 1


# -- pure pieces ---------------------------------------------------------------------------------------
def noise(seed: int, dim: int) -> np.ndarray:
    """ε ~ N(0, I) of size `dim`, a pure function of `seed`: the driver and every runner get the same
    vector from the same seed (PCG64 is platform-independent)."""
    return np.random.default_rng(seed).standard_normal(dim, dtype=np.float32)


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Salimans et al. 2017's fitness shaping: each value replaced by its rank, scaled to [−0.5, 0.5].
    Invariant to any monotone transform of the returns, so one outlier episode cannot dominate a step."""
    flat = np.asarray(x, dtype=np.float64).ravel()
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size, dtype=np.float64)
    if flat.size > 1:
        ranks = ranks / (flat.size - 1) - 0.5
    else:
        ranks[:] = 0.0
    return ranks.reshape(np.shape(x))


def antithetic_gradient(seeds: np.ndarray, weights: np.ndarray, dim: int, sigma: float) -> np.ndarray:
    """∇θ E[F(θ + σε)] ≈ 1/(nσ) Σ_i w_i ε_i, with w_i = ½(F(θ+σε_i) − F(θ−σε_i)) (antithetic pairs,
    Salimans et al. 2017 eq. 2 with mirrored sampling). `weights[i]` is F⁺ − F⁻ (raw or shaped)."""
    grad = np.zeros(dim, dtype=np.float64)
    for seed, w in zip(seeds, weights, strict=True):
        grad += float(w) * noise(int(seed), dim)
    return grad / (2.0 * len(seeds) * sigma)


def candidate_env_seed(direction_seed: int, episode: int, base_seed: int | None) -> int:
    """The env seed both candidates of a direction reset with for their `episode`-th episode."""
    return int(np.random.SeedSequence([direction_seed, episode, base_seed or 0]).generate_state(1)[0])


# -- network and runner policy ---------------------------------------------------------------------------
class EvolutionNet(nn.Module):
    """An MLP policy (no value head: ES and ARS learn no critic). `fcnet_hiddens: []` is ARS's linear
    policy. Returns (distribution inputs, 0) like ActorCritic, so the Algorithm base class's
    compute_actions and evaluate work unchanged; continuous actions get a zero log-std."""

    def __init__(self, obs_space: gym.Space[Any], action_space: gym.Space[Any], config: ModelConfig) -> None:
        super().__init__()
        n_out = dist_input_dim(action_space)
        self.continuous = isinstance(action_space, gym.spaces.Box)
        self.n_act = n_out // 2 if self.continuous else n_out
        # A small output layer (as the paper's normalised-column init): the initial policy is nearly
        # indifferent between actions, so small perturbations already change behaviour and returns.
        self.pi = mlp(
            [obs_dim(obs_space), *config.fcnet_hiddens],
            config.fcnet_activation,
            out=self.n_act,
            out_gain=0.01,
        )

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.pi(obs)
        if self.continuous:
            out = torch.cat([out, torch.zeros_like(out)], dim=-1)
        return out, torch.zeros(out.shape[:-1], dtype=out.dtype, device=out.device)


def build_evolution_net(
    obs_space: gym.Space[Any], action_space: gym.Space[Any], config: ModelConfig
) -> EvolutionNet:
    if config.custom_model or config.conv_filters:
        raise ValueError(
            "ES and ARS build their own MLP policy: custom_model and conv_filters are not supported"
        )
    return EvolutionNet(obs_space, action_space, config)


class EvolutionPolicy(PolicyBase):
    """The runner-side policy: the deterministic action of the current θ (ES and ARS explore in
    parameter space, never in action space)."""

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        self.dist = action_distribution(self.action_space)
        return build_evolution_net(obs_space, self.action_space, model)

    def act(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        dist_in, _ = self.module(obs)
        return {Columns.ACTIONS: self.dist.deterministic(dist_in)}


def flat_parameters(module: nn.Module) -> torch.Tensor:
    return nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def set_flat_parameters(module: nn.Module, theta: torch.Tensor) -> None:
    with torch.no_grad():
        nn.utils.vector_to_parameters(theta.to(next(module.parameters()).dtype), module.parameters())


# -- evaluation on the runners ---------------------------------------------------------------------------
@dataclass
class PerturbationResults:
    """One runner's answer: the mean return and length of each candidate, every episode played, the
    raw-observation statistics (for the MeanStdFilter) and the env steps of those episodes."""

    returns: np.ndarray
    lengths: np.ndarray
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    env_steps: int = 0
    filter_delta: RunningStats | None = None
    env_restarts: int = 0


class PerturbationRunner(EnvRunner):
    """An EnvRunner that also evaluates perturbed copies of its current parameters."""

    def evaluate_candidates(
        self, candidates: list[tuple[int, float]], *, sigma: float, episodes: int
    ) -> PerturbationResults:
        """Candidates are (direction seed, sign): θ + sign·σ·ε(seed); sign 0 is θ itself. Each plays
        `episodes` full episodes with the deterministic action."""
        theta = flat_parameters(self.module)
        dim = theta.numel()
        n_envs = self.config.num_envs
        totals = np.zeros(len(candidates))
        lengths = np.zeros(len(candidates))
        out = PerturbationResults(returns=totals, lengths=lengths)
        raw_obs: list[np.ndarray] = []
        dist = action_distribution(self.action_space)
        names = [n for n, _ in self.module.named_parameters()]
        shapes = [p.shape for _, p in self.module.named_parameters()]
        sizes = [p.numel() for _, p in self.module.named_parameters()]

        def forward(params: dict[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
            dist_in, _ = torch.func.functional_call(self.module, params, (obs.unsqueeze(0),))
            return dist_in.squeeze(0)

        batched = torch.func.vmap(forward)
        restarts_before = sum(getattr(e, "restarts", 0) for e in self.env.envs)
        for start in range(0, len(candidates), n_envs):
            chunk = candidates[start : start + n_envs]
            # Pad a short chunk with its first candidate: every sub-env steps, only real ones count.
            padded = chunk + [chunk[0]] * (n_envs - len(chunk))
            flat = theta.unsqueeze(0).repeat(n_envs, 1)
            for j, (seed, sign) in enumerate(padded):
                if sign != 0.0:
                    flat[j] += float(sign * sigma) * torch.from_numpy(noise(seed, dim))
            params = dict(
                zip(
                    names,
                    (t.reshape(n_envs, *s) for t, s in zip(flat.split(sizes, dim=1), shapes, strict=True)),
                    strict=True,
                )
            )
            for e in range(episodes):
                seeds: list[int | None] = [
                    candidate_env_seed(seed, e, self.config.seed) for seed, _ in padded
                ]
                raw, _ = self.env.reset(seed=seeds)
                active = np.zeros(n_envs, dtype=bool)
                active[: len(chunk)] = True
                ep_ret = np.zeros(n_envs)
                ep_len = np.zeros(n_envs, dtype=np.int64)
                while active.any():
                    flat_obs = flatten_obs(self.obs_space, raw)
                    if self.config.use_filter:
                        raw_obs.append(flat_obs[active])
                    obs = self.filter.normalize(flat_obs) if self.filter is not None else flat_obs
                    with torch.inference_mode():
                        actions = dist.deterministic(batched(params, torch.from_numpy(obs))).numpy()
                    # The env's own action structure: Box parts clipped (a Box inside a Tuple/Dict
                    # too), MultiDiscrete shifted by `start`, Tuple/Dict as tuples/dicts of batches.
                    raw, reward, terminated, truncated, _ = self.env.step(to_env(self.action_space, actions))
                    ep_ret += np.where(active, reward, 0.0)
                    ep_len += active
                    for k in np.flatnonzero(active & (terminated | truncated)):
                        active[k] = False
                        totals[start + k] += ep_ret[k] / episodes
                        lengths[start + k] += ep_len[k] / episodes
                        out.episode_returns.append(float(ep_ret[k]))
                        out.episode_lengths.append(int(ep_len[k]))
                        out.env_steps += int(ep_len[k])
        if raw_obs:
            out.filter_delta = RunningStats.from_batch(np.concatenate(raw_obs))
        out.env_restarts = sum(getattr(e, "restarts", 0) for e in self.env.envs) - restarts_before
        return out


class PerturbationRunnerGroup(EnvRunnerGroup):
    """Splits a generation's candidates over the runners (contiguous shares; a dead runner is recreated
    and asked again, as for sampling) and joins their answers in candidate order."""

    runner_cls = PerturbationRunner
    local: PerturbationRunner | None

    def evaluate(
        self, candidates: list[tuple[int, float]], *, sigma: float, episodes: int
    ) -> list[PerturbationResults]:
        if self.local is not None:
            return [self.local.evaluate_candidates(candidates, sigma=sigma, episodes=episodes)]
        k = len(self.actors)
        bounds = [round(i * len(candidates) / k) for i in range(k + 1)]
        shares = [candidates[bounds[i] : bounds[i + 1]] for i in range(k)]

        def ask(i: int) -> Any:
            return self.actors[i].evaluate_candidates.remote(shares[i], sigma=sigma, episodes=episodes)

        results: list[PerturbationResults] = self._wait_all([ask(i) for i in range(k)], ask)
        return results


def join_results(parts: list[PerturbationResults]) -> PerturbationResults:
    """The runners' answers as one, candidates in the order they were sent."""
    joined = PerturbationResults(
        returns=np.concatenate([p.returns for p in parts]), lengths=np.concatenate([p.lengths for p in parts])
    )
    for p in parts:
        joined.episode_returns += p.episode_returns
        joined.episode_lengths += p.episode_lengths
        joined.env_steps += p.env_steps
        joined.env_restarts += p.env_restarts
        if p.filter_delta is not None:
            if joined.filter_delta is None:
                joined.filter_delta = p.filter_delta.copy()
            else:
                joined.filter_delta.merge(p.filter_delta)
    return joined


# -- the driver ------------------------------------------------------------------------------------------
EvolutionConfigT = TypeVar("EvolutionConfigT", bound=ESConfig | ARSConfig)


class EvolutionAlgorithm(Algorithm[EvolutionConfigT]):
    """The training step ES and ARS share: draw direction seeds → evaluate θ ± σε on the runners →
    `update` (each algorithm's own) → broadcast θ. Subclasses implement `update` and may add their
    optimizer's state; both configs name the search's size the same way (noise_stdev, num_rollouts,
    episodes_per_rollout)."""

    module: EvolutionNet

    def runner_overrides(self) -> dict[str, Any]:
        return {"policy": EvolutionPolicy}

    def make_runner_group(self) -> EnvRunnerGroup:
        res = self.spec.resources
        return PerturbationRunnerGroup(
            self.runner_config, num_runners=res.env_runners, cpus_per_runner=res.cpus_per_runner
        )

    def setup(self) -> None:
        # θ₀ from the job seed alone: an in-driver runner (envRunners: 0) draws from torch's global
        # generator before setup(), Ray runners do not, and the run must not depend on which it is.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(
                self.spec.seed if self.spec.seed is not None else int(self.np_rng.integers(MAX_SEED))
            )
            self.module = build_evolution_net(self.obs_space, self.action_space, self.config.model)
        self.theta = flat_parameters(self.module).double()
        self.setup_optimizer()

    def setup_optimizer(self) -> None:
        """Build whatever updates θ besides `update` (ES: Adam)."""

    # -- to implement --
    def extra_candidates(self) -> list[tuple[int, float]]:
        """Candidates evaluated besides the ± pairs (ES: θ itself, with probability eval_prob)."""
        return []

    def update(self, seeds: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> dict[str, float]:
        """Move θ given the returns of θ + σε_i (`plus`) and θ − σε_i (`minus`); its stats."""
        raise NotImplementedError

    # -- shared --
    def policy_module(self) -> nn.Module:
        return self.module

    def get_weights(self) -> dict[str, np.ndarray]:
        set_flat_parameters(self.module, self.theta)
        return weights_to_numpy(self.module)

    def algorithm_state(self) -> dict[str, Any]:
        return {"theta": self.theta.clone()}

    def set_algorithm_state(self, state: dict[str, Any]) -> None:  # type: ignore[override]
        self.theta.copy_(state["theta"])
        set_flat_parameters(self.module, self.theta)

    def training_step(self) -> StepOutcome:
        cfg = self.config
        t0 = time.perf_counter()
        n = cfg.num_rollouts
        seeds = self.np_rng.integers(0, MAX_SEED, size=n)
        pairs = [(int(s), sign) for s in seeds for sign in (1.0, -1.0)]
        extra = self.extra_candidates()
        assert isinstance(self.runners, PerturbationRunnerGroup)
        parts = self.runners.evaluate(pairs + extra, sigma=cfg.noise_stdev, episodes=cfg.episodes_per_rollout)
        res = join_results(parts)
        t1 = time.perf_counter()
        self.record_experience(
            episode_returns=res.episode_returns,
            episode_lengths=res.episode_lengths,
            env_steps=res.env_steps,
            env_restarts=res.env_restarts,
            filter_delta=res.filter_delta,
        )
        paired = res.returns[: 2 * n].reshape(n, 2)
        stats = self.update(seeds, paired[:, 0], paired[:, 1])
        stats.update(
            {
                "perturbed_return_mean": float(paired.mean()),
                "perturbed_return_max": float(paired.max()),
                "theta_norm": float(self.theta.detach().norm()),
                "num_directions": float(n),
            }
        )
        if extra:
            stats["theta_return_mean"] = float(res.returns[2 * n :].mean())
        t2 = time.perf_counter()
        self.sync_weights()
        t3 = time.perf_counter()
        return StepOutcome(
            rollouts=[],
            env_steps_trained=res.env_steps,
            learner_stats=stats,
            timers={"sample": t1 - t0, "update": t2 - t1, "sync_weights": t3 - t2},
        )


__all__ = [
    "EvolutionAlgorithm",
    "EvolutionNet",
    "EvolutionPolicy",
    "PerturbationResults",
    "PerturbationRunner",
    "PerturbationRunnerGroup",
    "antithetic_gradient",
    "candidate_env_seed",
    "centered_ranks",
    "join_results",
    "noise",
]
