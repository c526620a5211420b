"""SIGKILL `kuberl run` at random moments (some inside a checkpoint write), then resume it with
`resume: auto`, and check that each resume starts exactly at the newest complete checkpoint that was on
disk at the kill: never a partial or older one (progress lost), never a later one (there is none).
Shared by tests/faults (a few kills) and bench/faults (many).

How a resume is read from result.json: a killed run has often logged an iteration or two past its newest
complete checkpoint (an iteration's result line is written before its checkpoint's manifest), and the
resumed run *rewinds* the file (kuberl.results.ResultLogger.rewind drops those lines, then logs the redone
iterations again). So the resumed run's lines are not "the lines after the old line count": they are the
lines after the longest prefix the file shares, verbatim, with the file before the run (a redone
iteration's line differs in its timings). Counting lines instead is what made earlier campaigns report
resumes "one iteration ahead" of the newest checkpoint (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.common import cli_command, cli_env

JOB = """apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: killed}
spec:
  algorithm: PPO
  env: CartPole-v1
  seed: 0
  config: {train_batch_size: 128, minibatch_size: 64, num_epochs: 1, model: {fcnetHiddens: [256, 256]}}
  stop: {iterations: ITERATIONS}
  resources: {envRunners: 0, envsPerRunner: 2}
  checkpoint: {everyIterations: 1, keep: 2}
  resume: auto
  metrics: {enabled: false}
"""


KILLED_RUN_STOP = 1_000_000


@dataclass
class CampaignResult:
    kills: int = 0
    mid_checkpoint_kills: int = 0
    resumes_checked: int = 0
    tracebacks: int = 0
    #: result lines of killed runs that their resume dropped and redid (iterations logged past the
    #: newest complete checkpoint); what the old line-count reading mistook for resumes "ahead"
    redone_lines: int = 0
    problems: list[str] = field(default_factory=list)


def complete_checkpoints(store: Path) -> dict[str, int]:
    """name → iteration of every checkpoint directory with a manifest (what a resume may pick)."""
    out = {}
    for manifest in store.glob("checkpoint_*/manifest.json"):
        try:
            out[manifest.parent.name] = int(json.loads(manifest.read_text())["metadata"]["iteration"])
        except (OSError, ValueError, KeyError):
            continue  # being replaced right now
    return out


def result_lines(workdir: Path) -> list[str]:
    """result.json's complete lines, verbatim (one JSON object per iteration, appended across runs)."""
    path = workdir / "runs" / "killed" / "result.json"
    if not path.exists():
        return []
    # a line without its newline is torn (killed mid-write): the next run drops it, so must we
    return path.read_text().split("\n")[:-1]


def iteration_of(line: str) -> int:
    return int(json.loads(line)["training_iteration"])


def lines_of_new_run(before: list[str], after: list[str]) -> list[str]:
    """The lines the run between `before` and `after` wrote: those past the prefix both share (a
    resume may have dropped some of `before`'s last lines, see the module docstring)."""
    shared = 0
    while shared < min(len(before), len(after)) and before[shared] == after[shared]:
        shared += 1
    return after[shared:]


def partial_checkpoint(store: Path) -> bool:
    return any(d.is_dir() and not (d / "manifest.json").exists() for d in store.glob("checkpoint_*"))


def run_campaign(
    workdir: Path, *, kills: int, iterations: int, seed: int, max_wait_s: float = 240
) -> CampaignResult:
    """`kills` runs of the same job, each SIGKILLed after a random delay or when a partial checkpoint
    directory appears (a save in progress), then one last run to the end."""
    rng = random.Random(seed)
    (workdir / "job.yaml").write_text(JOB.replace("ITERATIONS", str(iterations)))
    store = workdir / "runs" / "killed" / "checkpoints"
    result = CampaignResult()
    for attempt in range(kills + 1):
        before = complete_checkpoints(store)
        newest_before = max(before.values(), default=None)
        lines_before = result_lines(workdir)
        # Runs to be killed get a stop they cannot reach first (a fast run used to finish before its
        # kill); the last run goes at least two iterations past the newest checkpoint, so it trains.
        target = KILLED_RUN_STOP if attempt < kills else max(iterations, (newest_before or 0) + 2)
        proc = subprocess.Popen(
            cli_command("run", "job.yaml", "--no-progress", "--set", f"stop.iterations={target}"),
            cwd=workdir,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killed = False
        if attempt < kills:
            mid_checkpoint = rng.random() < 0.5
            delay = rng.uniform(0.0, 1.5)
            start = time.monotonic()
            trained_at: float | None = None
            while proc.poll() is None and time.monotonic() - start < max_wait_s:
                now = time.monotonic()
                if trained_at is None:
                    # kill only once this run completed a checkpoint of its own, so the next one resumes
                    newest = max(complete_checkpoints(store).values(), default=-1)
                    if newest > (newest_before if newest_before is not None else -1):
                        trained_at = now
                    time.sleep(0.02)
                    continue
                partial = partial_checkpoint(store)
                # mid-checkpoint: the moment a checkpoint directory exists without its manifest; if the
                # window is never caught (small states save fast), kill anyway after 3 s
                if (mid_checkpoint and (partial or now - trained_at > 3.0)) or (
                    not mid_checkpoint and now - trained_at > delay
                ):
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
                    result.kills += 1
                    result.mid_checkpoint_kills += int(partial)
                    break
                time.sleep(0.001 if mid_checkpoint else 0.02)
        if attempt < kills and not killed and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # never caught a moment to kill within max_wait_s
            killed = True
            result.problems.append(f"attempt {attempt}: no checkpoint within {max_wait_s:.0f} s")
        out, err = proc.communicate(timeout=300)
        if "Traceback" in err:
            result.tracebacks += 1
            result.problems.append(f"attempt {attempt}: traceback\n{err[-2000:]}")
        if not killed and proc.returncode != 0:
            result.problems.append(f"attempt {attempt}: exit {proc.returncode}\n{err[-2000:]}")
        lines_after = result_lines(workdir)
        new_lines = lines_of_new_run(lines_before, lines_after)
        kept = len(lines_after) - len(new_lines)
        result.redone_lines += len(lines_before) - kept
        if newest_before is not None and new_lines:
            # This run resumed: its first iteration follows the newest complete checkpoint on disk
            # when it started, exactly (a partial or older one would show as another number).
            result.resumes_checked += 1
            first = iteration_of(new_lines[0])
            if first != newest_before + 1:
                result.problems.append(
                    f"attempt {attempt}: resumed at iteration {first}, but the newest complete "
                    f"checkpoint on disk was {newest_before}"
                )
            its = [iteration_of(x) for x in lines_after]
            if its != list(range(1, len(its) + 1)):
                result.problems.append(f"attempt {attempt}: result.json is not 1, 2, …: {its}")
        elif not killed:
            result.problems.append(f"attempt {attempt}: the last run wrote no iteration\n{out[-500:]}")
        if not killed:
            break
    final = complete_checkpoints(store)
    if max(final.values(), default=0) != target:
        result.problems.append(f"the last run did not reach iteration {target}: {sorted(final.values())}")
    return result
