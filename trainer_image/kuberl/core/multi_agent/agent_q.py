"""The agent network of the value-factorization learners (QMIX, VDN): one network shared by every agent
of a joint env (kuberl.core.multi_agent.joint), built the same way by the learner and by the joint env
runners (kuberl.core.multi_agent.joint_runner), and the one way every copy of it acts (`act`: the
runners, and the driver's compute_actions and evaluation): the per-agent epsilon-greedy choice,
restricted to the legal actions when the observations carry an `action_mask` (PettingZoo's convention:
a Dict observation with "observation" and "action_mask"; kuberl.core.multi_agent.masking)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from kuberl.core.models import mlp
from kuberl.core.multi_agent.masking import ILLEGAL_LOGIT, legal_actions
from kuberl.spec.algorithms import ModelConfig


class AgentQ(nn.Module):
    """Q(o_i, ·) of every agent, one network for all: the input is the observation and a one-hot id."""

    def __init__(
        self, obs_dim: int, n_agents: int, n_actions: int, hidden: list[int], activation: str
    ) -> None:
        super().__init__()
        self.n_agents = n_agents
        self.net = mlp([obs_dim + n_agents, *hidden], activation, out=n_actions, out_gain=0.01)
        self.register_buffer("agent_ids", torch.eye(n_agents), persistent=False)

    def agent_ids_buffer(self) -> torch.Tensor:
        ids: torch.Tensor = self.get_buffer("agent_ids")
        return ids

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, agents, obs_dim] → Q [B, agents, actions]."""
        ids = self.agent_ids_buffer().expand(obs.shape[0], -1, -1)
        out: torch.Tensor = self.net(torch.cat([obs, ids], dim=-1))
        return out


class RecurrentAgentQ(nn.Module):
    """The paper's recurrent agent network (model.useLstm; the cell is a GRU as in QMIX, RLlib's QMIX
    and pymarl, sized by model.lstmCellSize): an MLP over observation and one-hot id, a GRU cell, a
    linear Q head. Each agent carries its own hidden state through the episode."""

    recurrent = True

    def __init__(
        self, obs_dim: int, n_agents: int, n_actions: int, hidden: list[int], activation: str, cell: int
    ) -> None:
        super().__init__()
        self.n_agents, self.cell_size = n_agents, cell
        self.encoder = mlp([obs_dim + n_agents, *hidden], activation)
        self.gru = nn.GRUCell(hidden[-1] if hidden else obs_dim + n_agents, cell)
        self.head = nn.Linear(cell, n_actions)
        nn.init.orthogonal_(self.head.weight, gain=0.01)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("agent_ids", torch.eye(n_agents), persistent=False)

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zeros [batch, agents, cell]: the state at an episode's start."""
        return torch.zeros(batch, self.n_agents, self.cell_size, device=self.head.weight.device)

    def step(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [B, agents, obs_dim], h [B, agents, cell] → (Q [B, agents, actions], next h)."""
        b, agents, _ = obs.shape
        ids: torch.Tensor = self.get_buffer("agent_ids").expand(b, -1, -1)
        x = self.encoder(torch.cat([obs, ids], dim=-1)).reshape(b * agents, -1)
        h_next = self.gru(x, h.reshape(b * agents, -1)).view(b, agents, -1)
        return self.head(h_next), h_next

    def unroll(self, obs: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        """obs [B, T, agents, obs_dim] from states h0 [B, agents, cell] → Q [B, T, agents, actions]."""
        h, out = h0, []
        for t in range(obs.shape[1]):
            q, h = self.step(obs[:, t], h)
            out.append(q)
        return torch.stack(out, dim=1)


def build_agent_q(
    model: ModelConfig, obs_dim: int, n_agents: int, n_actions: int
) -> AgentQ | RecurrentAgentQ:
    """The agent network `model` (config.model) describes: an MLP, or with useLstm the GRU network."""
    if model.use_lstm:
        return RecurrentAgentQ(
            obs_dim,
            n_agents,
            n_actions,
            list(model.fcnet_hiddens),
            model.fcnet_activation,
            model.lstm_cell_size,
        )
    return AgentQ(obs_dim, n_agents, n_actions, list(model.fcnet_hiddens), model.fcnet_activation)


def joint_legal(obs: torch.Tensor, where: slice) -> torch.Tensor:
    """The legal actions [B, agents, n] (bool) of joint observations [B, agents, D] whose flat layout
    holds an `action_mask` at `where` (kuberl.core.multi_agent.masking.mask_slice)."""
    b, agents, dim = obs.shape
    return legal_actions(obs.reshape(b * agents, dim), where).view(b, agents, -1)


def mask_q(q: torch.Tensor, obs: torch.Tensor, where: slice | None) -> torch.Tensor:
    """Q [B, agents, n] with illegal actions set to ILLEGAL_LOGIT (unchanged without a mask), so every
    argmax and max (acting, and the TD target's) only sees legal actions."""
    if where is None:
        return q
    return q.masked_fill(~joint_legal(obs, where), ILLEGAL_LOGIT)


def epsilon_greedy(
    q: torch.Tensor, epsilon: float, rng: np.random.Generator, legal: torch.Tensor | None = None
) -> np.ndarray:
    """q [N, agents, actions] → actions [N, agents]: each agent independently random with probability ε.
    With `legal` [N, agents, actions] (an action mask) both the greedy and the random choice are legal."""
    if legal is not None:
        q = q.masked_fill(~legal, ILLEGAL_LOGIT)
    greedy = q.argmax(dim=-1).cpu().numpy()
    if epsilon <= 0.0:
        return np.asarray(greedy)
    if legal is None:
        random = rng.integers(0, q.shape[-1], size=greedy.shape)
    else:  # uniform among the legal ones: the argmax of uniform noise over them
        noise = np.where(legal.cpu().numpy(), rng.random(legal.shape), -1.0)
        random = noise.argmax(axis=-1)
    return np.asarray(np.where(rng.random(greedy.shape) < epsilon, random, greedy))


def act(
    agent: AgentQ | RecurrentAgentQ,
    obs: torch.Tensor,
    *,
    epsilon: float,
    rng: np.random.Generator,
    mask: slice | None,
    h: torch.Tensor | None = None,
) -> tuple[np.ndarray, torch.Tensor | None]:
    """Joint observations [N, agents, obs_dim] → (actions [N, agents], the next GRU state): each agent
    epsilon-greedy over its own Q-values (decentralised), its legal actions only when `mask` (the
    action_mask's place, kuberl.core.multi_agent.masking.mask_slice) is given. `h` [N, agents, cell] is
    the recurrent network's state (None, and None back, for the MLP). The runners and the driver's
    compute_actions and evaluation all act through this function."""
    with torch.no_grad():
        q, h = agent_q_values(agent, obs, h)
    legal = joint_legal(obs, mask) if mask is not None else None
    return epsilon_greedy(q, epsilon, rng, legal), h


def agent_q_values(
    agent: AgentQ | RecurrentAgentQ, obs: torch.Tensor, h: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(Q [N, agents, actions], next GRU state): one forward pass, or one GRU step from `h`."""
    if h is None:
        return agent(obs), None
    assert isinstance(agent, RecurrentAgentQ), "a GRU state for a feed-forward agent network"
    return agent.step(obs, h)


def greedy(
    agent: AgentQ | RecurrentAgentQ, obs: torch.Tensor, mask: slice | None, h: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """act() with epsilon 0 in torch only, for `kuberl export` to trace: (actions [N, agents] int64,
    next GRU state), each agent's best legal action."""
    q, h = agent_q_values(agent, obs, h)
    return mask_q(q, obs, mask).argmax(dim=-1), h


@dataclass(frozen=True)
class TeamState:
    """A recurrent team's state between calls of compute_actions_with_state (QMIX/VDN with
    model.useLstm): every agent's GRU state, `h` [B, agents, cell], one row per joint observation.
    It has RecurrentState's step methods, so loops written for LSTM policies carry it too."""

    h: torch.Tensor

    def __len__(self) -> int:
        return int(self.h.shape[0])

    def reset(self, done: np.ndarray | torch.Tensor) -> TeamState:
        """A copy with the rows whose episode ended back at zeros (an episode's start)."""
        ended = torch.as_tensor(np.asarray(done, dtype=bool), device=self.h.device)
        return TeamState(self.h * (~ended).to(self.h.dtype).view(-1, 1, 1))

    def with_rewards(self, rewards: Any) -> TeamState:
        """The GRU sees no rewards: unchanged (RecurrentState's signature)."""
        return self

    def after_step(self, rewards: Any, done: np.ndarray | torch.Tensor) -> TeamState:
        return self.reset(done)
