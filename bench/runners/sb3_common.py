"""Shared by the Stable-Baselines3 runners: when to stop and what to report.

A run stops when the mean return of the last 100 training episodes reaches the threshold (SB3's
ep_info_buffer, the same 100-episode window kuberl reports) or, given an Evaluator, when the greedy
policy's evaluation every `every` env steps does (offpolicy_eval.py). `learn_and_report` times
`model.learn` and writes the one JSON line the harness reads (common.report).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from common import report  # type: ignore[import-not-found]
from offpolicy_eval import Evaluator  # type: ignore[import-not-found]
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback


class StopAt(BaseCallback):
    def __init__(self, threshold: float, evaluate: Evaluator | None = None, every: int = 0) -> None:
        super().__init__()
        self.threshold = threshold
        self.evaluate = evaluate
        self.every = every
        self.next = every
        self.ret: float | None = None

    def _on_step(self) -> bool:
        if self.evaluate is not None:
            if self.num_timesteps < self.next:
                return True
            self.next += self.every
            self.ret = self.evaluate(
                self.num_timesteps, lambda obs: self.model.predict(obs, deterministic=True)[0]
            )
            return self.ret < self.threshold
        buf = self.model.ep_info_buffer
        if buf and len(buf) > 0:
            self.ret = float(np.mean([e["r"] for e in buf]))
            return self.ret < self.threshold
        return True


class WarmupClock(BaseCallback):
    """CPU seconds and env steps up to the first gradient step (SB3 calls `_on_step` after each env
    step, before `train()`), so learning CPU can be reported apart from the warm-up's."""

    def __init__(self) -> None:
        super().__init__()
        self.start = time.process_time()
        self.cpu_s = 0.0
        self.steps = 0

    def _on_step(self) -> bool:
        if getattr(self.model, "_n_updates", 0) == 0:
            self.cpu_s, self.steps = time.process_time() - self.start, self.num_timesteps
        return True


def learn_and_report(
    model: BaseAlgorithm,
    *,
    threshold: float,
    total_timesteps: int,
    evaluate: Evaluator | None = None,
    every: int = 0,
) -> None:
    """Train until the threshold or `total_timesteps`, then report the times, steps and return (and with
    an evaluator its seconds and history)."""
    cb = StopAt(threshold, evaluate, every)
    t_train = time.time()
    cpu_train = time.process_time()
    clock = WarmupClock()
    model.learn(total_timesteps=total_timesteps, callback=[cb, clock])
    t_end = time.time()
    train_cpu_s = time.process_time() - cpu_train
    solved = cb.ret is not None and cb.ret >= threshold
    extra: dict[str, Any] = (
        {"eval_s": evaluate.seconds, "history": evaluate.history} if evaluate is not None else {}
    )
    report(
        train_start=t_train,
        solved=t_end if solved else None,
        steps=int(model.num_timesteps),
        ret=cb.ret,
        train_cpu_s=train_cpu_s,
        warmup_cpu_s=clock.cpu_s,
        warmup_steps=clock.steps,
        grad_steps=int(getattr(model, "_n_updates", 0)),
        **extra,
    )
