"""Recurrent (LSTM) policies: the network, its state, the runner policy and the sequence helpers.

The network is RLlib's old-stack LSTM wrapper (`use_lstm`): encoder (MLP, or CNN + MLP) → LSTM →
policy and value heads, optionally fed the previous action and reward. Training unrolls it over
time-major sequences `[T, B, …]` from a stored initial state, with a per-step reset mask that zeroes
the state where an episode starts, so an episode boundary inside a sequence needs no padding.

Env runners record the LSTM state going *into* every step (`state_in_h` / `state_in_c`). That costs
2·cell_size floats per step, which is small next to an observation, and lets any learner start a
sequence at any step: PPO cuts rollouts into `max_seq_len` chunks, IMPALA/APPO unroll whole
fragments, and neither needs the runner to know how it will be cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from kuberl.core.action_spaces import action_dtype, action_width
from kuberl.core.encoders import CNNEncoder
from kuberl.core.models import action_distribution, dist_input_dim, mlp, obs_dim
from kuberl.core.policy import PolicyBase
from kuberl.core.preprocess import image_layout
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms import ModelConfig


class RecurrentColumns:
    """SampleBatch columns recorded by recurrent runner policies (time-major like the others)."""

    STATE_H: Final = "state_in_h"  # LSTM hidden state going into the step, [T, N, H]
    STATE_C: Final = "state_in_c"  # LSTM cell state going into the step, [T, N, H]
    PREV_ACTIONS: Final = "prev_actions"  # a_{t-1}; −1 (discrete) or 0 (continuous) at an episode's start
    PREV_REWARDS: Final = "prev_rewards"  # r_{t-1}; 0 at an episode's start
    RESETS: Final = "seq_resets"  # learner-side: True where the state must be zeroed before the step

    ALL: Final = (STATE_H, STATE_C, PREV_ACTIONS, PREV_REWARDS)


def is_recurrent(module: nn.Module) -> bool:
    return isinstance(module, RecurrentActorCritic)


def runner_overrides(model: ModelConfig) -> dict[str, Any]:
    """RunnerConfig fields for an actor-critic algorithm: the recurrent runner policy when use_lstm."""
    return {"policy": RecurrentActorCriticPolicy} if model.use_lstm else {}


# ---------------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------------


def _tensor(
    x: np.ndarray | torch.Tensor | Sequence[float], dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


@dataclass
class RecurrentState:
    """What a recurrent policy carries from one step to the next, per sub-environment (rows)."""

    h: torch.Tensor  # [B, H]
    c: torch.Tensor  # [B, H]
    prev_actions: torch.Tensor  # [B] int64 (discrete, −1 = none) or [B, A] float (continuous)
    prev_rewards: torch.Tensor  # [B] float32

    def __len__(self) -> int:
        return int(self.h.shape[0])

    def rows(self, index: np.ndarray | torch.Tensor) -> RecurrentState:
        idx = torch.as_tensor(index, device=self.h.device)
        return RecurrentState(self.h[idx], self.c[idx], self.prev_actions[idx], self.prev_rewards[idx])

    def reset(self, mask: np.ndarray | torch.Tensor) -> RecurrentState:
        """A copy with the rows in `mask` (episodes that ended) back at the initial state."""
        m = _tensor(mask, torch.bool, self.h.device)
        keep = (~m).to(self.h.dtype).unsqueeze(-1)
        none_action = -1 if self.prev_actions.dtype == torch.int64 else 0
        prev_a = self.prev_actions.clone()
        prev_a[m] = none_action
        return RecurrentState(self.h * keep, self.c * keep, prev_a, self.prev_rewards * keep.squeeze(-1))

    def with_rewards(self, rewards: np.ndarray | torch.Tensor | Sequence[float]) -> RecurrentState:
        r = _tensor(rewards, torch.float32, self.h.device)
        return RecurrentState(self.h, self.c, self.prev_actions, r)

    def after_step(
        self, rewards: np.ndarray | torch.Tensor | Sequence[float], done: np.ndarray | torch.Tensor
    ) -> RecurrentState:
        """Record the step's rewards, then reset the sub-environments whose episode ended."""
        state = self.with_rewards(rewards)
        return state.reset(done) if bool(done.any()) else state

    @staticmethod
    def cat(states: Sequence[RecurrentState]) -> RecurrentState:
        return RecurrentState(
            torch.cat([s.h for s in states]),
            torch.cat([s.c for s in states]),
            torch.cat([s.prev_actions for s in states]),
            torch.cat([s.prev_rewards for s in states]),
        )


# ---------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------


class RecurrentActorCritic(nn.Module):
    """Encoder → LSTM → policy and value heads. The LSTM (and the encoder) feed both heads.

    `forward(obs, state, resets)` unrolls time-major `[T, B, D]` observations from `state` and returns
    distribution inputs `[T, B, …]`, values `[T, B]` and the LSTM's (h, c) after the last step. Where
    `resets[t, b]` is True the state is zeroed before step t (an episode started there).
    """

    def __init__(self, obs_space: gym.Space[Any], action_space: gym.Space[Any], config: ModelConfig) -> None:
        super().__init__()
        self.encoder: nn.Module | None = None
        if config.conv_filters is not None or image_layout(obs_space) is not None:
            filters = [tuple(f) for f in config.conv_filters] if config.conv_filters else None
            self.encoder = CNNEncoder(obs_space, filters, config.conv_activation)  # type: ignore[arg-type]
            n_in = self.encoder.out_dim
        else:
            n_in = obs_dim(obs_space)
        hidden = list(config.fcnet_hiddens)
        self.trunk = mlp([n_in, *hidden], config.fcnet_activation)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.num_actions = int(action_space.n) if isinstance(action_space, gym.spaces.Discrete) else 0
        # Other kinds feed back their flat action (kuberl.core.action_spaces): MultiDiscrete indices,
        # MultiBinary bits, a Tuple/Dict's columns side by side.
        self.action_shape: tuple[int, ...] = (
            ()
            if self.discrete
            else tuple(action_space.shape or ())
            if isinstance(action_space, gym.spaces.Box)
            else (action_width(action_space),)
        )
        self.action_dtype = torch.int64 if action_dtype(action_space) == "int64" else torch.float32
        self.use_prev_action = config.lstm_use_prev_action
        self.use_prev_reward = config.lstm_use_prev_reward
        extra = (self.num_actions or int(np.prod(self.action_shape))) if self.use_prev_action else 0
        extra += 1 if self.use_prev_reward else 0
        self.cell_size = config.lstm_cell_size
        self.lstm = nn.LSTMCell(hidden[-1] + extra, self.cell_size)
        # A forget-gate bias of 1 keeps memories by default early in training (Jozefowicz et al. 2015).
        with torch.no_grad():
            for bias in (self.lstm.bias_ih, self.lstm.bias_hh):
                bias.zero_()
                bias[self.cell_size : 2 * self.cell_size] = 0.5
        n_out = dist_input_dim(action_space)
        self.free_log_std = isinstance(action_space, gym.spaces.Box) and config.free_log_std
        pi_out = n_out // 2 if self.free_log_std else n_out
        self.pi_head = mlp([self.cell_size], "tanh", out=pi_out, out_gain=0.01)
        self.vf_head = mlp([self.cell_size], "tanh", out=1, out_gain=1.0)
        if self.free_log_std:
            self.log_std = nn.Parameter(torch.zeros(n_out // 2))

    # -- pieces ------------------------------------------------------------------------------------
    def initial_state(self, batch: int, device: torch.device | None = None) -> RecurrentState:
        device = device or self.lstm.weight_hh.device
        zeros = torch.zeros(batch, self.cell_size, device=device)
        if self.discrete:
            prev_a = torch.full((batch,), -1, dtype=torch.int64, device=device)
        else:
            prev_a = torch.zeros(batch, *self.action_shape, dtype=self.action_dtype, device=device)
        return RecurrentState(zeros, zeros.clone(), prev_a, torch.zeros(batch, device=device))

    def features(
        self, obs: torch.Tensor, prev_actions: torch.Tensor, prev_rewards: torch.Tensor
    ) -> torch.Tensor:
        """LSTM inputs for observations with any leading dims `[..., D]` → `[..., F]`."""
        lead = obs.shape[:-1]
        x = obs.reshape(-1, obs.shape[-1])
        if self.encoder is not None:
            x = self.encoder(x)
        parts = [self.trunk(x)]
        if self.use_prev_action:
            if self.discrete:
                a = prev_actions.reshape(-1).long()
                one_hot = nn.functional.one_hot(a.clamp(min=0), self.num_actions).to(x.dtype)
                parts.append(one_hot * (a >= 0).unsqueeze(-1).to(x.dtype))  # −1: no previous action
            else:
                parts.append(prev_actions.reshape(x.shape[0], -1).to(x.dtype))
        if self.use_prev_reward:
            parts.append(prev_rewards.reshape(-1, 1).to(x.dtype))
        out = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        return out.reshape(*lead, out.shape[-1])

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist_in = self.pi_head(h)
        if self.free_log_std:
            dist_in = torch.cat([dist_in, self.log_std.expand_as(dist_in)], dim=-1)
        return dist_in, self.vf_head(h).squeeze(-1)

    def unroll(
        self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, resets: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step the LSTM over `x [T, B, F]`; returns the hidden and cell states after every step, `[T, B, H]`.

        A Python loop over LSTMCell rather than nn.LSTM: the state must be zeroed mid-sequence at
        episode starts, which cuDNN's fused LSTM cannot do. The inputs were encoded for all T at once."""
        hs, cs = [], []
        keep = None if resets is None else (~resets.bool()).to(x.dtype).unsqueeze(-1)
        for t in range(x.shape[0]):
            if keep is not None:
                h, c = h * keep[t], c * keep[t]
            h, c = self.lstm(x[t], (h, c))
            hs.append(h)
            cs.append(c)
        return torch.stack(hs), torch.stack(cs)

    # -- whole passes ------------------------------------------------------------------------------
    def forward(
        self,
        obs: torch.Tensor,
        state: RecurrentState,
        resets: torch.Tensor | None = None,
        *,
        prev_actions: torch.Tensor | None = None,
        prev_rewards: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Unroll over `obs [T, B, D]` from `state`. Previous actions/rewards `[T, B]` default to the
        state's for step 0 (inference, T = 1); training passes the recorded columns."""
        T = obs.shape[0]
        if prev_actions is None or prev_rewards is None:
            if T != 1:
                raise ValueError("prev_actions and prev_rewards are needed to unroll more than one step")
            prev_actions, prev_rewards = state.prev_actions.unsqueeze(0), state.prev_rewards.unsqueeze(0)
        x = self.features(obs, prev_actions, prev_rewards)
        hs, cs = self.unroll(x, state.h, state.c, resets)
        dist_in, values = self.heads(hs)
        return dist_in, values, (hs[-1], cs[-1])

    def step(
        self, obs: torch.Tensor, state: RecurrentState
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for a batch `[B, D]` (acting): (dist inputs, values, h, c) after the step."""
        x = self.features(obs, state.prev_actions, state.prev_rewards)
        h, c = self.lstm(x, (state.h, state.c))
        dist_in, values = self.heads(h)
        return dist_in, values, h, c


# ---------------------------------------------------------------------------------------------------
# Runner policy
# ---------------------------------------------------------------------------------------------------


class RecurrentActorCriticPolicy(PolicyBase):
    """ActorCriticPolicy with an LSTM state per sub-environment.

    The env runner calls `after_step(rewards, done, keep)` after every vector step: the policy notes
    the rewards (for lstm_use_prev_reward), hands back the state of the `keep` rows (truncated
    episodes, whose V(final obs) must continue from it) and resets the rows whose episode ended.
    Rollouts of one runner continue each other, so the state persists across `sample()` calls and
    weight updates (the recorded state_in columns say exactly what the network was given).
    """

    recurrent = True
    module: RecurrentActorCritic

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        module = RecurrentActorCritic(obs_space, self.action_space, model)
        self.dist = action_distribution(self.action_space)
        self.state: RecurrentState | None = None
        return module

    def current_state(self, batch: int) -> RecurrentState:
        """The state of the `batch` sub-environments (initial at the first call)."""
        if self.state is None:
            self.state = self.module.initial_state(batch)
        if len(self.state) != batch:
            raise ValueError(f"the recurrent state holds {len(self.state)} sub-environments, not {batch}")
        return self.state

    def act(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        columns, self.state = self.act_from(
            obs, self.current_state(obs.shape[0]), explore=explore, generator=generator
        )
        return columns

    def act_from(
        self, obs: torch.Tensor, s: RecurrentState, *, explore: bool, generator: torch.Generator
    ) -> tuple[dict[str, torch.Tensor], RecurrentState]:
        """act() from a state the caller holds (Algorithm.compute_actions_with_state): the columns and
        the state after the step; the policy's own per-sub-environment state is left as it was."""
        dist_in, value, h, c = self.module.step(obs, s)
        action = self.dist.sample(dist_in, generator) if explore else self.dist.deterministic(dist_in)
        return {
            Columns.ACTIONS: action,
            Columns.ACTION_LOGP: self.dist.logp(dist_in, action),
            Columns.ACTION_DIST_INPUTS: dist_in,
            Columns.VF_PREDS: value,
            RecurrentColumns.STATE_H: s.h,
            RecurrentColumns.STATE_C: s.c,
            RecurrentColumns.PREV_ACTIONS: s.prev_actions,
            RecurrentColumns.PREV_REWARDS: s.prev_rewards,
        }, RecurrentState(h, c, action, s.prev_rewards)

    def after_step(self, rewards: np.ndarray, done: np.ndarray, keep: np.ndarray) -> RecurrentState | None:
        s = self.current_state(len(rewards)).with_rewards(rewards)
        kept = s.rows(np.flatnonzero(keep)) if np.any(keep) else None
        self.state = s.reset(done) if np.any(done) else s
        return kept

    def value_from(self, obs: torch.Tensor, state: RecurrentState) -> torch.Tensor:
        """V(obs) one step on from `state` (row i of obs continues row i of state)."""
        return self.module.step(obs, state)[1]

    def value(self, obs: torch.Tensor) -> torch.Tensor | None:
        """V(obs) of every sub-environment from its current state (obs: one row per sub-environment)."""
        return self.value_from(obs, self.current_state(obs.shape[0]))


# ---------------------------------------------------------------------------------------------------
# Learner side: sequences
# ---------------------------------------------------------------------------------------------------


def episode_starts(terminateds: np.ndarray, truncateds: np.ndarray) -> np.ndarray:
    """[T, N] bool: True at steps whose state must be zeroed (the previous step ended an episode).

    Step 0 is False: its recorded state_in already is what the runner used (zero at an episode start)."""
    done = np.logical_or(terminateds, truncateds)
    resets = np.zeros_like(done)
    resets[1:] = done[:-1]
    return resets


def chunk_sequences(batch: Mapping[str, np.ndarray], seq_len: int) -> dict[str, np.ndarray]:
    """[T, N, …] columns → [seq_len, (T / seq_len)·N, …]: each rollout cut into consecutive chunks,
    each chunk one sequence (column). T must be a multiple of seq_len."""
    out: dict[str, np.ndarray] = {}
    for k, v in batch.items():
        T, N = v.shape[:2]
        if T % seq_len:
            raise ValueError(f"rollout length {T} is not a multiple of the sequence length {seq_len}")
        k_chunks = T // seq_len
        x = v.reshape(k_chunks, seq_len, N, *v.shape[2:]).swapaxes(0, 1)
        # A copy: rollouts from Ray's object store are read-only, which torch warns about.
        out[k] = np.array(x.reshape(seq_len, k_chunks * N, *v.shape[2:]))
    return out


def sequence_length(rollout_length: int, max_seq_len: int) -> int:
    return max(1, min(max_seq_len, rollout_length))


def initial_state_of(seq: Mapping[str, torch.Tensor]) -> RecurrentState:
    """The state the runner had at each sequence's first step."""
    return RecurrentState(
        seq[RecurrentColumns.STATE_H][0],
        seq[RecurrentColumns.STATE_C][0],
        seq[RecurrentColumns.PREV_ACTIONS][0],
        seq[RecurrentColumns.PREV_REWARDS][0],
    )


def sequence_forward(
    module: RecurrentActorCritic, seq: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unroll over time-major sequences `[T, B]` from their recorded initial state, zeroing the state at
    `seq_resets`: (distribution inputs [T, B, …], values [T, B], h [T, B, H], c [T, B, H])."""
    state = initial_state_of(seq)
    x = module.features(
        seq[Columns.OBS], seq[RecurrentColumns.PREV_ACTIONS], seq[RecurrentColumns.PREV_REWARDS]
    )
    hs, cs = module.unroll(x, state.h, state.c, seq.get(RecurrentColumns.RESETS))
    dist_in, values = module.heads(hs)
    return dist_in, values, hs, cs


class SequenceForward(nn.Module):
    """A recurrent network's training pass as a module's `forward(seq)`: `sequence_forward` over
    time-major sequences, returning (distribution inputs [T, B, …], values [T, B]).

    Learners call this wrapper, not the network's own `forward()` (which unrolls from a state object, for
    acting), so that DistributedDataParallel can wrap it: DDP prepares its gradient all-reduce in
    `forward()`, and only a pass through the wrapper's `forward()` makes `backward()` average the
    gradients across ranks. It holds the network as a submodule, so its parameters are the network's."""

    def __init__(self, net: RecurrentActorCritic) -> None:
        super().__init__()
        self.net = net

    def forward(self, seq: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        dist_in, values, _, _ = sequence_forward(self.net, seq)
        return dist_in, values


def bootstrap_values(
    module: RecurrentActorCritic, seq: Mapping[str, torch.Tensor], hs: torch.Tensor, cs: torch.Tensor
) -> torch.Tensor:
    """V(s_{t+1}) [T, B] for every step: one LSTM step from the state after step t on next_obs[t], with
    a_t and r_t as the previous action and reward. Inside an episode this equals the next step's value;
    at a truncation it continues the ended episode's state (before the runner reset it)."""
    T, B = hs.shape[:2]
    next_obs = seq[Columns.NEXT_OBS].reshape(T * B, -1)
    state = RecurrentState(
        hs.reshape(T * B, -1),
        cs.reshape(T * B, -1),
        seq[Columns.ACTIONS].reshape(T * B, *seq[Columns.ACTIONS].shape[2:]),
        seq[Columns.REWARDS].reshape(T * B),
    )
    return module.step(next_obs, state)[1].reshape(T, B)
