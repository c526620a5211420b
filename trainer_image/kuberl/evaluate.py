"""`kuberl evaluate`: rebuild an algorithm from a checkpoint and play episodes, optionally recording video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kuberl.sampling import in_driver
from kuberl.spec import parse_job

if TYPE_CHECKING:
    from kuberl.algorithms.base import Algorithm


def rollout_checkpoint(
    uri: str, *, steps: int | None, episodes: int | None, explore: bool = False
) -> dict[str, Any]:
    """`kuberl rollout`: episodes played until `episodes` are complete or `steps` env steps are taken."""
    from kuberl.algorithms.base import SPEC_FILE
    from kuberl.build import build_single_agent
    from kuberl.checkpoint import load_checkpoint

    loaded = load_checkpoint(uri)
    doc = json.loads(loaded.files[SPEC_FILE])
    in_driver(doc["spec"])
    doc["spec"].pop("external", None)
    job = parse_job(doc, source=uri)
    if job.spec.multi_agent is not None:
        raise ValueError(f"{uri} is a multi-agent checkpoint; rollout plays single-agent policies")
    algo = build_single_agent(job, run_dir=Path("runs") / job.metadata.name)
    try:
        algo.load_checkpoint_files(loaded.files, where=loaded.info.uri)
        returns, lengths, played = algo.play_episodes(episodes, explore=explore, timesteps=steps)
    finally:
        algo.stop()
    return {
        "checkpoint": loaded.info.uri,
        "iteration": algo.iteration,
        "episodes": len(returns),
        "num_env_steps_sampled": played,
        "episode_return_mean": float(np.mean(returns)) if returns else None,
        "episode_returns": returns,
        "episode_lengths": lengths,
    }


def evaluate_checkpoint(
    uri: str, *, episodes: int = 10, video_dir: str | None = None, explore: bool = False
) -> dict[str, Any]:
    from kuberl.algorithms.base import SPEC_FILE
    from kuberl.build import build_algorithm
    from kuberl.checkpoint import load_checkpoint

    loaded = load_checkpoint(uri)
    doc = json.loads(loaded.files[SPEC_FILE])
    # Evaluate in this process: no runners, no Ray, no metrics server, no resume.
    in_driver(doc["spec"])
    doc["spec"].pop("external", None)  # episodes are played here, not served: no policy server, no token
    job = parse_job(doc, source=uri)
    if video_dir and job.spec.multi_agent is not None:
        raise ValueError(f"{uri} is a multi-agent checkpoint; --video records single-agent episodes")
    algo = build_algorithm(job, run_dir=Path("runs") / job.metadata.name)
    try:
        algo.load_checkpoint_files(loaded.files, where=loaded.info.uri)
        stats = algo.evaluate(episodes, explore=explore)
        if video_dir:
            policy = algo.get_policy().algorithm  # a single-agent run's policy acts with the run itself
            stats["videos"] = record_videos(
                policy, Path(video_dir), episodes=min(episodes, 3), explore=explore
            )
        stats["checkpoint"] = loaded.info.uri
        stats["iteration"] = algo.iteration
        return stats
    finally:
        algo.stop()


def record_videos(algo: Algorithm, out: Path, *, episodes: int, explore: bool) -> list[str]:
    """Play `episodes` episodes in one rgb_array env wrapped in Gymnasium's RecordVideo."""
    from gymnasium.wrappers import RecordVideo

    from kuberl.core.env_factory import env_creator

    spec = algo.spec
    env = env_creator(spec.env, {**spec.env_config, "render_mode": "rgb_array"})()
    env = RecordVideo(env, str(out), episode_trigger=lambda _: True, name_prefix=algo.job.metadata.name)
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=(spec.seed or 0) + ep)
            state = algo.initial_state(1)  # a recurrent policy's state, fresh each episode
            done = False
            while not done:
                if state is None:
                    action = algo.compute_actions(obs, explore=explore)
                else:
                    action, state = algo.compute_actions_with_state(obs, state, explore=explore)
                obs, reward, terminated, truncated, _ = env.step(action)
                if state is not None:
                    state = state.with_rewards([float(reward)])
                done = terminated or truncated
    finally:
        env.close()
    return sorted(str(p) for p in out.glob("*.mp4"))
