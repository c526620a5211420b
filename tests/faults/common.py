"""What the fault tests share: the `kuberl` CLI run as a user runs it, against this checkout's code, and a
tiny job that trains in a second or two without Ray."""

from __future__ import annotations

from tests.cli import PYTHONPATH, ROOT, cli_command, cli_env, kuberl

__all__ = ["PYTHONPATH", "ROOT", "TINY_JOB", "cli_command", "cli_env", "kuberl", "one_line"]

TINY_JOB = """apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: tiny}
spec:
  algorithm: PPO
  env: CartPole-v1
  seed: 0
  config: {train_batch_size: 128, minibatch_size: 64, num_epochs: 1}
  stop: {iterations: 3}
  resources: {envRunners: 0, envsPerRunner: 2}
  checkpoint: {everyIterations: 1, keep: 3}
  metrics: {enabled: false}
"""


def one_line(text: str) -> str:
    """Rich wraps long messages; compare words, not line breaks."""
    return " ".join(text.split())
