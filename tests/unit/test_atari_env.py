"""kuberl.envs:make's Atari preprocessing on a real ALE game: FireReset serves the ball after reset and
after each lost life, so a policy that never presses FIRE still plays (and loses) whole games."""

from __future__ import annotations

from typing import Any

import pytest

from kuberl.envs import FireReset, make

pytest.importorskip("ale_py")

BREAKOUT = {"id": "ALE/Breakout-v5", "atari": True, "frameStack": 4}


def play_noop(env: Any, max_steps: int) -> tuple[int, bool, int]:
    """Steps of NOOP until the game ends (or max_steps): (steps, terminated, lives left)."""
    env.reset(seed=0)
    for step in range(1, max_steps + 1):
        _, _, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            return step, terminated, int(info["lives"])
    return max_steps, False, int(info["lives"])


def test_breakout_serves_after_reset_and_each_lost_life() -> None:
    env = make(BREAKOUT)
    steps, terminated, lives = play_noop(env, 2_000)
    assert terminated
    assert lives == 0  # all five balls were served and missed
    assert steps < 1_000
    obs, info = env.reset(seed=1)
    assert obs.shape == (4, 84, 84)
    assert info["lives"] == 5


def test_fire_reset_off_leaves_the_ball_unserved() -> None:
    env = make({**BREAKOUT, "fireReset": False})
    steps, terminated, lives = play_noop(env, 2_000)
    assert (steps, terminated, lives) == (2_000, False, 5)  # waits for FIRE until the 27,000-step limit


def test_fire_reset_is_only_added_where_the_game_has_fire() -> None:
    def wrappers(env: Any) -> list[type]:
        found = []
        while hasattr(env, "env"):
            found.append(type(env))
            env = env.env
        return found

    assert FireReset in wrappers(make(BREAKOUT))
    assert FireReset not in wrappers(make({"id": "CartPole-v1"}))
    with pytest.raises(ValueError, match=r"envConfig\.fireReset: .* has no FIRE action"):
        make({"id": "CartPole-v1", "fireReset": True})
    with pytest.raises(ValueError, match=r"envConfig\.fireReset: 'yes' is not true or false"):
        make({**BREAKOUT, "fireReset": "yes"})
