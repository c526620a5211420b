"""`kuberl run` and `kuberl evaluate` (with a video) on a recurrent (use_lstm) PPO job, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import GOOD, kuberl

LSTM_JOB = GOOD.replace(
    "config: {train_batch_size: 512, minibatch_size: 128, num_epochs: 2}",
    "config: {train_batch_size: 512, minibatch_size: 128, num_epochs: 2,"
    " model: {use_lstm: true, lstm_cell_size: 16, max_seq_len: 16, lstm_use_prev_action: true}}",
)


def test_run_then_evaluate_with_video_on_a_recurrent_checkpoint(tmp_path: Path) -> None:
    assert LSTM_JOB != GOOD
    (tmp_path / "job.yaml").write_text(LSTM_JOB)
    res = kuberl("run", "job.yaml", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    ckpt = tmp_path / "runs" / "cli-test" / "checkpoints"
    ev = kuberl("evaluate", str(ckpt), "--episodes", "2", "--video", str(tmp_path / "videos"), cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    stats = json.loads(ev.stdout)
    assert stats["episodes"] == 2
    assert stats["iteration"] == 2
    assert stats["episode_len_mean"] >= 8  # CartPole: even a poor policy balances a few steps
    assert list((tmp_path / "videos").glob("*.mp4"))
