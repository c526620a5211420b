"""The episode-window statistics of every result (return mean/min/max, length mean) are cached between
episode ends (Algorithm.window_stats): they must still follow new episodes and a restored state."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kuberl.build import build_algorithm


def test_window_stats_follow_new_episodes_and_restores(tmp_path: Path) -> None:
    algo = build_algorithm(
        {
            "apiVersion": "kuberl.io/v1alpha1",
            "kind": "RLTrainingJob",
            "metadata": {"name": "window"},
            "spec": {
                "algorithm": "PG",
                "env": "CartPole-v1",
                "seed": 0,
                "runDir": str(tmp_path),
                "config": {"train_batch_size": 200},
                "resources": {"envRunners": 0, "envsPerRunner": 2},
            },
        }
    )
    try:
        seen = []
        for _ in range(4):
            result = algo.train()
            assert result["episodes_total"] == algo.episodes_total
            assert result["episode_return_mean"] == float(np.mean(algo.returns))
            assert result["episode_return_max"] == float(np.max(algo.returns))
            assert result["episode_len_mean"] == float(np.mean(algo.lengths))
            seen.append(result["episodes_total"])
        assert seen[-1] > seen[0]  # episodes ended: the cache was refreshed, not frozen

        state = algo.get_state()
        state["episodes"] = {"returns": [1.0, 2.0, 6.0], "lengths": [10, 20, 30]}  # same counters
        algo.set_state(state)
        stats = algo.window_stats()
        assert stats["episode_return_mean"] == 3.0
        assert (stats["episode_return_min"], stats["episode_return_max"]) == (1.0, 6.0)
        assert stats["episode_len_mean"] == 20.0
    finally:
        algo.stop()
