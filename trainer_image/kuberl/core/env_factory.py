"""Create environments from a spec's `env` string, inside the process that steps them.

`env` is a Gymnasium id or `module:factory`. Factories are resolved by import path in each runner,
so an environment never has to survive pickling or deepcopy (a long-standing RLlib pain).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv

log = logging.getLogger(__name__)


class EnvError(ValueError):
    """The env string cannot be turned into an environment; the message says why."""


def import_object(path: str) -> Any:
    """`package.module:attr` → the object."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EnvError(f"cannot import module {module_name!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise EnvError(f"module {module_name!r} has no attribute {attr!r}") from None


def env_creator(env: str, env_config: Mapping[str, Any]) -> Callable[[], gym.Env[Any, Any]]:
    """A zero-argument constructor for one sub-environment."""
    config = dict(env_config)
    if ":" in env and not env.startswith("ALE/"):
        factory = import_object(env)
        if not callable(factory):
            raise EnvError(f"{env!r} is not callable")
        return lambda: factory(config)
    if env not in gym.registry:
        _import_registering_module(env)
    if env not in gym.registry:
        close = [k for k in gym.registry if k.lower().startswith(env.split("-")[0].lower())][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise EnvError(f"{env!r} is not a registered Gymnasium environment{hint}")
    if _ships_with_gymnasium(env):
        # Gymnasium's PassiveEnvChecker wraps every sub-env and stays in each step's call chain after its
        # one-time checks: about a sixth of CartPole's step. Gymnasium's own environments are checked by
        # Gymnasium's test suite, so kuberl leaves the checker out for them (a user's envConfig
        # `disable_env_checker` still wins); third-party and user environments keep it.
        config.setdefault("disable_env_checker", True)
    return lambda: gym.make(env, **config)


def _ships_with_gymnasium(env: str) -> bool:
    """Whether registered id `env` is one of Gymnasium's own environments (its entry point is in
    `gymnasium.envs`)."""
    entry_point = gym.spec(env).entry_point
    return isinstance(entry_point, str) and entry_point.startswith("gymnasium.envs.")


def _import_registering_module(env: str) -> None:
    """Namespaced ids such as ALE/Pong-v5 register on import of their package."""
    if env.startswith("ALE/"):
        try:
            import ale_py  # optional for library users: in the bench extra and the lock

            gym.register_envs(ale_py)
        except ImportError:
            pass


def check_env(env: str, env_config: Mapping[str, Any]) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """Build one instance to fail early with a clear message; returns (observation, action) spaces."""
    make = env_creator(env, env_config)
    try:
        instance = make()
    except EnvError:
        raise
    except TypeError as exc:
        raise EnvError(f"cannot create {env!r} with envConfig {dict(env_config)}: {exc}") from None
    except Exception as exc:
        raise EnvError(f"creating {env!r} failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(instance, gym.Env):
        raise EnvError(
            f"{env!r} returned {type(instance).__name__}, not a gymnasium.Env "
            "(a factory must return an environment)"
        )
    try:
        return instance.observation_space, instance.action_space
    finally:
        instance.close()


class RestartOnCrash(gym.Wrapper[Any, Any, Any, Any]):
    """Recreate a sub-environment whose step or reset raises, ending that episode as truncated.

    One crashing simulator instance must not take down a whole runner (RLlib's
    `restart_failed_sub_environments`). The crashed episode is reported as truncated at the last
    good observation, so no fake terminal state enters the value targets.
    """

    def __init__(self, make: Callable[[], gym.Env[Any, Any]], *, max_restarts: int = 100) -> None:
        super().__init__(make())
        self._make = make
        self._last_obs: Any = None
        self.restarts = 0
        self.max_restarts = max_restarts

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        try:
            obs, info = self.env.reset(seed=seed, options=options)
        except Exception:
            self._restart("reset")
            obs, info = self.env.reset(seed=seed, options=options)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        try:
            obs, reward, terminated, truncated, info = self.env.step(action)
        except Exception:
            self._restart("step")
            return self._last_obs, 0.0, False, True, {"env_restarted": True}
        self._last_obs = obs
        return obs, float(reward), bool(terminated), bool(truncated), info

    def _restart(self, where: str) -> None:
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise RuntimeError(f"sub-environment crashed {self.restarts} times; giving up")
        log.warning(
            "sub-environment crashed in %s; restarting it (restart %d)", where, self.restarts, exc_info=True
        )
        try:
            self.env.close()
        except Exception:
            log.debug("closing the crashed env failed", exc_info=True)
        self.env = self._make()


def make_vector_env(env: str, env_config: Mapping[str, Any], num_envs: int) -> SyncVectorEnv:
    """A Gymnasium vector env whose sub-envs restart on crash and reset in the same step they end
    (SAME_STEP autoreset puts the final observation in info["final_obs"], needed for bootstrapping)."""
    make = env_creator(env, env_config)
    return SyncVectorEnv(
        [lambda: RestartOnCrash(make) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )


def sub_env_restarts(vec: SyncVectorEnv) -> int:
    return int(sum(getattr(e, "restarts", 0) for e in vec.envs))


def seeds_for(base_seed: int | None, worker_index: int, num_envs: int) -> list[int | None] | None:
    """Distinct, reproducible seeds per runner and sub-env (RLlib's per-worker seeding)."""
    if base_seed is None:
        return None
    seeds: list[int | None] = [
        int(s) for s in np.random.SeedSequence([base_seed, worker_index]).generate_state(num_envs)
    ]
    return seeds
