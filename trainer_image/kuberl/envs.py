"""Environments shipped with kuberl, named by import path in a job's `env`.

`env: kuberl.envs:make` — any env with Gymnasium's standard preprocessing and frame stacking.

    env: kuberl.envs:make
    envConfig:
      id: ALE/Pong-v5            # a Gymnasium id or a `module:factory`
      envKwargs: {frameskip: 1}  # passed to gymnasium.make / the factory
      atari: true                # AtariPreprocessing (noop reset, frame skip 4, 84×84 grayscale)
      fireReset: true            # press FIRE to serve after reset and each lost life (default: with
                                 # atari, for games that have FIRE)
      grayscale: false           # GrayscaleObservation (non-Atari image envs)
      resize: [64, 64]           # ResizeObservation
      frameStack: 4              # FrameStackObservation: the last k observations

The wrappers are Gymnasium's own, except FireReset (below); kuberl only orders them. Image observations then reach the CNN
encoder (kuberl.core.encoders), which accepts the stacked layouts these wrappers produce.

`env: kuberl.envs:make_recall` — RecallEnv, a memory task that feed-forward policies cannot solve
(envConfig: num_cues, delay); examples/ppo-lstm-recall.yaml and impala-lstm-recall.yaml train on it.

`env: kuberl.envs:make_buttons` — ButtonsEnv, set several dials at once: a MultiDiscrete, MultiBinary,
Dict or Tuple action space (envConfig.action); examples/ppo-multidiscrete.yaml trains on it.

`env: kuberl.envs:make_two_step_game` — the cooperative two-step matrix game of the QMIX paper (Rashid
et al. 2018, Fig. 3) as a PettingZoo ParallelEnv with a global `state()`; examples/qmix-two-step.yaml and
vdn-two-step.yaml train on it (docs/algorithms/qmix.md).

`env: kuberl.envs:make_forbidden_choice` — ForbiddenChoice, two agents whose observations carry an
`action_mask` (PettingZoo's convention) that rules out the action paying most; examples/qmix-masked.yaml
trains on it (docs/algorithms/qmix.md, "Action masks").

`env: kuberl.envs:make_team_recall` — TeamRecall, two agents that must answer a cue seen only at the
first step (envConfig: delay): feed-forward agents can only guess; examples/qmix-gru-recall.yaml trains
QMIX's GRU agents on it (docs/algorithms/qmix.md, "Recurrent agents").
"""

from __future__ import annotations

from typing import Any, Protocol, SupportsFloat

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from kuberl.core.env_factory import env_creator


def make(config: dict[str, Any]) -> gym.Env[Any, Any]:
    cfg = dict(config)
    env_id = cfg.pop("id", None)
    if not isinstance(env_id, str):
        raise ValueError("envConfig.id: required, a Gymnasium id or a module:factory")
    kwargs = dict(cfg.pop("envKwargs", cfg.pop("env_kwargs", {})) or {})
    atari = bool(cfg.pop("atari", False))
    grayscale = bool(cfg.pop("grayscale", False))
    resize = cfg.pop("resize", None)
    frame_stack = int(cfg.pop("frameStack", cfg.pop("frame_stack", 1)))
    fire_reset = cfg.pop("fireReset", cfg.pop("fire_reset", None))
    if fire_reset is not None and not isinstance(fire_reset, bool):
        raise ValueError(f"envConfig.fireReset: {fire_reset!r} is not true or false")
    if cfg:
        raise ValueError(f"envConfig: unknown keys {sorted(cfg)} for kuberl.envs:make")
    if atari:
        kwargs.setdefault("frameskip", 1)  # AtariPreprocessing does the frame skipping
    env = env_creator(env_id, kwargs)()
    if atari:
        env = gym.wrappers.AtariPreprocessing(env)
    if fire_reset or (fire_reset is None and atari and "FIRE" in _action_meanings(env)):
        env = FireReset(env)
    if grayscale:
        env = gym.wrappers.GrayscaleObservation(env, keep_dim=True)
    if resize is not None:
        height, width = (int(x) for x in resize)
        env = gym.wrappers.ResizeObservation(env, (height, width))
    if frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, frame_stack)
    return env


def _action_meanings(env: gym.Env[Any, Any]) -> list[str]:
    meanings = getattr(env.unwrapped, "get_action_meanings", None)
    return list(meanings()) if callable(meanings) else []


class FireReset(gym.Wrapper[Any, Any, Any, Any]):
    """Press FIRE after every reset and every lost life, for games that wait for it to serve (Breakout).

    Without it a policy that has not learnt to press FIRE stands still until the time limit (27,000
    agent steps in the v5 games: a greedy evaluation of an early checkpoint took minutes). The
    standard Atari setups do the same: SB3's AtariWrapper and CleanRL press FIRE at reset and, through
    their per-life episodes (EpisodicLifeEnv), after each life; here the game stays one episode, so the
    returns reported are whole games'. The FIRE step's reward counts toward the step that lost the life.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        meanings = _action_meanings(env)
        if "FIRE" not in meanings:
            raise ValueError(f"envConfig.fireReset: {env.spec.id if env.spec else env} has no FIRE action")
        self._fire = meanings.index("FIRE")
        self._lives = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(self._fire)
        if terminated or truncated:  # a game over on the serve itself: start again, as SB3 does
            obs, info = self.env.reset(**kwargs)
        self._lives = int(info.get("lives", 0))
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = int(info.get("lives", 0))
        if lives < self._lives and not (terminated or truncated):
            obs, fire_reward, terminated, truncated, info = self.env.step(self._fire)
            reward = float(reward) + float(fire_reward)
            lives = int(info.get("lives", lives))
        self._lives = lives
        return obs, reward, terminated, truncated, info


class RecallEnv(gym.Env[np.ndarray, np.int64]):
    """A memory task: the first observation shows a cue (one of `num_cues`, one-hot); the next `delay`
    observations are blank; the last one raises a query flag, and the action taken then earns +1 only if
    it names the cue. Actions before the query earn nothing.

    Without memory the query step looks the same whatever the cue, so a feed-forward policy is capped at
    chance (1 / num_cues per episode); a recurrent one can score 1.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.num_cues = int(config.get("num_cues", 4))
        self.delay = int(config.get("delay", 4))
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(self.num_cues + 1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.num_cues)
        self.cue = 0
        self.t = 0

    def _obs(self) -> np.ndarray:
        o = np.zeros(self.num_cues + 1, dtype=np.float32)
        if self.t == 0:
            o[self.cue] = 1.0
        elif self.t == self.delay + 1:
            o[-1] = 1.0
        return o

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.cue = int(self.np_random.integers(0, self.num_cues))
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.t == self.delay + 1:
            return self._obs(), float(int(action) == self.cue), True, False, {}
        self.t += 1
        return self._obs(), 0.0, False, False, {}


def make_recall(config: dict[str, Any]) -> RecallEnv:
    return RecallEnv(config)


class ButtonsEnv(gym.Env[np.ndarray, Any]):
    """Press the right buttons: `dims` dials of `options` settings each, a MultiDiscrete action. The
    observation shows the wanted setting of every dial (one-hot per dial); a step earns the fraction of
    dials set right. Episodes are `steps` long, so the best return is `steps` and random play earns
    `steps / options`.

    envConfig: dims (3), options (3), steps (8), and `action` to pick the action space kind:
    "multi_discrete" (default), "multi_binary" (dials of two settings: a bit each; options is then 2),
    "dict" ({"dials": MultiDiscrete, "gain": Box}: the Box must match obs' last entry, a float in
    [-1, 1], for the other half of the reward) or "tuple" (the same as a Tuple)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.kind = str(config.get("action", "multi_discrete"))
        self.dims = int(config.get("dims", 3))
        self.options = 2 if self.kind == "multi_binary" else int(config.get("options", 3))
        self.steps = int(config.get("steps", 8))
        dials: gym.Space[Any] = (
            gym.spaces.MultiBinary(self.dims)
            if self.kind == "multi_binary"
            else gym.spaces.MultiDiscrete([self.options] * self.dims)
        )
        gain = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        spaces: dict[str, gym.Space[Any]] = {
            "multi_discrete": dials,
            "multi_binary": dials,
            "dict": gym.spaces.Dict({"dials": dials, "gain": gain}),
            "tuple": gym.spaces.Tuple((dials, gain)),
        }
        if self.kind not in spaces:
            raise ValueError(f"envConfig.action must be one of {sorted(spaces)}, not {self.kind!r}")
        self.action_space = spaces[self.kind]
        self.observation_space = gym.spaces.Box(
            -1.0, 1.0, shape=(self.dims * self.options + 1,), dtype=np.float32
        )
        self.target = np.zeros(self.dims, dtype=np.int64)
        self.gain = 0.0
        self.t = 0

    def _obs(self) -> np.ndarray:
        self.target = self.np_random.integers(0, self.options, size=self.dims)
        self.gain = float(self.np_random.uniform(-1.0, 1.0))
        obs = np.zeros(self.dims * self.options + 1, dtype=np.float32)
        obs[np.arange(self.dims) * self.options + self.target] = 1.0
        obs[-1] = self.gain
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        if self.kind in ("dict", "tuple"):
            dials, gain = (action["dials"], action["gain"]) if self.kind == "dict" else action
            # Half the reward for the dials, half for the gain (1 at the target, 0 a distance 1 away).
            reward = 0.5 * float(np.mean(np.asarray(dials) == self.target))
            reward += 0.5 * max(0.0, 1.0 - abs(float(gain[0]) - self.gain))
        else:
            reward = float(np.mean(np.asarray(action) == self.target))
        self.t += 1
        return self._obs(), reward, False, self.t >= self.steps, {}


def make_buttons(config: dict[str, Any]) -> ButtonsEnv:
    return ButtonsEnv(config)


class _TeamEnv(Protocol):
    possible_agents: list[str]
    agents: list[str]

    def _observe(self) -> dict[str, Any]: ...


def _team_step(env: _TeamEnv, payoff: float, done: bool) -> tuple[dict[str, Any], ...]:
    """The end of a cooperative ParallelEnv's step (PettingZoo's five dicts): every agent observes,
    receives the team's payoff and terminates together; a finished game has no agents left."""
    agents = env.possible_agents
    obs = env._observe()
    if done:
        env.agents = []
    return (
        obs,
        {a: payoff for a in agents},
        {a: done for a in agents},
        {a: False for a in agents},
        {a: {} for a in agents},
    )


class TwoStepGame(ParallelEnv):
    """Two agents, two steps. In the first state agent_0's action picks the second: 2A (every joint
    action pays 7) or 2B (pays [[0, 1], [1, 8]] by agent_0's and agent_1's actions); agent_1's first
    action does not matter. Every agent receives the team's payoff, so the summed return of the optimal
    joint policy is 2 × 8 = 16, of the safe one 2 × 7 = 14.

    Learned from uniformly random play, as in the paper, independent learners and VDN choose 2A (their
    per-agent or additive values of 2B average over the partner's actions and fall under 7); QMIX's
    monotonic mixer represents 2B's value and chooses it. Observations and `state()` are the one-hot
    state (first, 2A, 2B; all zeros once the game ended)."""

    metadata = {"name": "two_step_game_v0", "render_modes": []}
    PAYOFF_2B = np.array([[0.0, 1.0], [1.0, 8.0]])

    def __init__(self) -> None:
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self._obs_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self._action_space = gym.spaces.Discrete(2)
        self.state_space = self._obs_space
        self._state = 0

    def observation_space(self, agent: str) -> gym.Space[Any]:
        return self._obs_space

    def action_space(self, agent: str) -> gym.Space[Any]:
        return self._action_space

    def state(self) -> np.ndarray:
        out = np.zeros(3, np.float32)
        if self._state < 3:
            out[self._state] = 1.0
        return out

    def _observe(self) -> dict[str, np.ndarray]:
        return {a: self.state() for a in self.possible_agents}

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        self.agents = list(self.possible_agents)
        self._state = 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        a0, a1 = (int(actions[a]) for a in self.possible_agents)
        if self._state == 0:
            self._state, payoff, done = (1 if a0 == 0 else 2), 0.0, False
        else:
            payoff = 7.0 if self._state == 1 else float(self.PAYOFF_2B[a0, a1])
            self._state, done = 3, True
        return _team_step(self, payoff, done)


def make_two_step_game(config: dict[str, Any]) -> TwoStepGame:
    if config:
        raise ValueError(f"envConfig: unknown keys {sorted(config)} for kuberl.envs:make_two_step_game")
    return TwoStepGame()


class ForbiddenChoice(ParallelEnv):
    """Two agents, `steps` steps, three actions paying 1, 2 and 10 to the team. At step t the action
    (t + i) % 3 is forbidden to agent i: its observation {"observation": one-hot step,
    "action_mask": legal actions} says so, and taking it raises ValueError (envConfig `strict: false`
    only counts it in `illegal_actions`). A learner that ignores the mask learns to take the 10 whenever
    it is forbidden; one that honours it earns the best legal payoff: 2 or 10 by step and agent, in
    total BEST_LEGAL_RETURN per episode for the default 3 steps (× 2 agents: every agent receives the
    team's reward). `mask: false` drops the action_mask from the observations (a plain Box)."""

    metadata = {"name": "forbidden_choice_v0", "render_modes": []}
    PAYOFF = np.array([1.0, 2.0, 10.0])

    def __init__(self, steps: int = 3, mask: bool = True, strict: bool = True) -> None:
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self.steps, self.use_mask, self.strict = steps, mask, strict
        step_space = gym.spaces.Box(0.0, 1.0, (steps,), np.float32)
        self._obs_space: gym.Space[Any] = (
            gym.spaces.Dict({"observation": step_space, "action_mask": gym.spaces.Box(0, 1, (3,), np.int8)})
            if mask
            else step_space
        )
        self._action_space = gym.spaces.Discrete(3)
        self.t = 0
        self.illegal_actions = 0

    def observation_space(self, agent: str) -> gym.Space[Any]:
        return self._obs_space

    def action_space(self, agent: str) -> gym.Space[Any]:
        return self._action_space

    def forbidden(self, i: int) -> int:
        return (self.t + i) % 3

    def _observe(self) -> dict[str, Any]:
        step = np.zeros(self.steps, np.float32)
        step[min(self.t, self.steps - 1)] = 1.0
        out: dict[str, Any] = {}
        for i, a in enumerate(self.possible_agents):
            legal = np.ones(3, np.int8)
            legal[self.forbidden(i)] = 0
            out[a] = {"observation": step.copy(), "action_mask": legal} if self.use_mask else step.copy()
        return out

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        self.agents = list(self.possible_agents)
        self.t = 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        payoff = 0.0
        for i, a in enumerate(self.possible_agents):
            act = int(actions[a])
            if act == self.forbidden(i):
                self.illegal_actions += 1
                if self.strict:
                    raise ValueError(f"{a} took action {act}, forbidden by its action_mask at step {self.t}")
            payoff += float(self.PAYOFF[act])
        self.t += 1
        done = self.t >= self.steps
        return _team_step(self, payoff, done)

    @staticmethod
    def best_legal_return(steps: int = 3) -> float:
        """The summed return (over both agents) of always taking the best legal action."""
        team = 0.0
        for t in range(steps):
            for i in range(2):
                team += max(p for k, p in enumerate(ForbiddenChoice.PAYOFF) if k != (t + i) % 3)
        return 2 * team


def make_forbidden_choice(config: dict[str, Any]) -> ForbiddenChoice:
    unknown = sorted(set(config) - {"steps", "mask", "strict"})
    if unknown:
        raise ValueError(f"envConfig: unknown keys {unknown} for kuberl.envs:make_forbidden_choice")
    return ForbiddenChoice(
        int(config.get("steps", 3)), bool(config.get("mask", True)), bool(config.get("strict", True))
    )


class TeamRecall(ParallelEnv):
    """Two agents see a cue (one of two) at the first step only; after `delay` blank steps both must
    answer it at once: the team is paid 1 when both answers match the cue (every agent receives it, so
    the summed return is 2). Observations: the cue one-hot (zeros after the first step) and the step
    one-hot. A feed-forward agent network answers blind (at best a coordinated guess: expected summed
    return 1); a recurrent one (model.useLstm) remembers the cue and earns 2."""

    metadata = {"name": "team_recall_v0", "render_modes": []}

    def __init__(self, delay: int = 1) -> None:
        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self.delay = delay
        self.steps = delay + 2
        self._obs_space = gym.spaces.Box(0.0, 1.0, (2 + self.steps,), np.float32)
        self._action_space = gym.spaces.Discrete(2)
        self.t, self.cue = 0, 0
        self.rng = np.random.default_rng()

    def observation_space(self, agent: str) -> gym.Space[Any]:
        return self._obs_space

    def action_space(self, agent: str) -> gym.Space[Any]:
        return self._action_space

    def _observe(self) -> dict[str, np.ndarray]:
        obs = np.zeros(2 + self.steps, np.float32)
        if self.t == 0:
            obs[self.cue] = 1.0
        obs[2 + min(self.t, self.steps - 1)] = 1.0
        return {a: obs.copy() for a in self.possible_agents}

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.t, self.cue = 0, int(self.rng.integers(2))
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict[str, Any], ...]:
        self.t += 1
        done = self.t >= self.steps
        answered = all(int(actions[a]) == self.cue for a in self.possible_agents)
        payoff = 1.0 if done and answered else 0.0
        return _team_step(self, payoff, done)


def make_team_recall(config: dict[str, Any]) -> TeamRecall:
    unknown = sorted(set(config) - {"delay"})
    if unknown:
        raise ValueError(f"envConfig: unknown keys {unknown} for kuberl.envs:make_team_recall")
    return TeamRecall(int(config.get("delay", 1)))
