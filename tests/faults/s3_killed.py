"""The S3 server killed outright (SIGKILL) while `kuberl run` trains with `resume: auto` and a checkpoint
every iteration, then started again with its data (tests/fixtures/s3.py: KillableMoto). Shared by
tests/faults (one kill) and bench/faults (many, at random moments).

What must hold: the run keeps training while the store is gone (each failed save counted, none
reported); it ends 0 with its final checkpoint in the store, or 75 (the final save failed 3 times: the
operator retries) naming a checkpoint that exists; every checkpoint with a manifest verifies (a save cut
by the kill is never taken for a complete one); and a later `resume: auto` restores the newest complete
checkpoint in the store, exactly."""

from __future__ import annotations

import os
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import psutil

from kuberl.checkpoint import open_store
from tests.faults.common import TINY_JOB, cli_command, cli_env, one_line
from tests.fixtures.s3 import DUMMY_CREDENTIALS, KillableMoto
from tests.fixtures.tcp_proxy import TcpProxy


@dataclass
class S3KillResult:
    kills: int = 0
    #: the iteration the run had logged at each kill
    killed_at: list[int] = field(default_factory=list)
    replayed_requests: int = 0
    exit_status: int | None = None
    #: saves that failed while the server was down (each logged, counted, none reported as done)
    failed_saves: int = 0
    #: the trainer's resident memory when the server was first killed, and its peak after (MB): failed
    #: saves must not pile up serialised checkpoints
    rss_mb_at_first_kill: float = 0.0
    rss_mb_peak: float = 0.0
    #: restarts after which the run saved a checkpoint again before it ended
    recoveries: int = 0
    #: the first failure messages, to tell an outage from something else
    failures: list[str] = field(default_factory=list)
    checkpoints_verified: int = 0
    resumed_from: str = ""
    newest_complete: str = ""
    problems: list[str] = field(default_factory=list)


def newest_complete(uri: str, endpoint: str) -> tuple[str, int]:
    """(name, count) of the newest checkpoint of the store that loads with every file verified, and how
    many complete ones there are; a manifest-bearing checkpoint that fails to verify raises."""
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", *DUMMY_CREDENTIALS)}
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **DUMMY_CREDENTIALS})
    try:
        store = open_store(uri)
        infos = store.list()
        for info in infos:
            store.load(info.name)  # sha256 and size of every file, or CorruptCheckpointError
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return (infos[-1].name if infos else ""), len(infos)


def run_s3_kill_campaign(
    workdir: Path, *, kills: int, iterations: int, seed: int, down_s: float = 4.0
) -> S3KillResult:
    rng = random.Random(seed)
    result = S3KillResult()
    moto = KillableMoto(workdir / "moto-recording.jsonl")
    moto.start()
    proxy = TcpProxy(moto.port)
    proxy.start()
    bucket = f"killed-{seed}"
    boto3.session.Session(**_boto_args()).client("s3", endpoint_url=moto.endpoint).create_bucket(
        Bucket=bucket
    )
    uri = f"s3://{bucket}/ckpt"
    env = cli_env(
        {**DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL": proxy.endpoint, "KUBERL_CHECKPOINT_DEADLINE_S": "10"}
    )
    (workdir / "job.yaml").write_text(TINY_JOB.replace("checkpoint: {", "resume: auto\n  checkpoint: {"))
    args = ["--no-progress", "--set", f"checkpoint.uri={uri}"]
    try:
        proc = subprocess.Popen(
            cli_command("run", "job.yaml", *args, "--set", f"stop.iterations={iterations}"),
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        results = workdir / "runs" / "tiny" / "result.json"
        for _ in range(kills):
            # kill once this run has trained 1-6 iterations more (the first time: past iteration 2, so a
            # checkpoint is in the store), while at least 2 are left to train after the restart
            at = min(max(2, _iterations(results)) + rng.randint(1, 6), iterations - 2)
            deadline = time.monotonic() + 180
            while proc.poll() is None and _iterations(results) < at and time.monotonic() < deadline:
                _sample_rss(proc, result)
                time.sleep(0.01 + rng.random() * 0.05)
            if proc.poll() is not None:
                break
            proxy.set_mode("refused")  # no client reaches the server while it is down or replaying
            result.rss_mb_at_first_kill = result.rss_mb_at_first_kill or _rss_mb(proc)
            moto.kill()
            result.kills += 1
            result.killed_at.append(_iterations(results))
            time.sleep(down_s)
            result.replayed_requests += moto.restart()
            proxy.set_mode("up")
            # the next kill only once the run saved again (it recovered), unless it ends first
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                _sample_rss(proc, result)
                if _newest_iteration(uri, moto.endpoint) > result.killed_at[-1]:
                    result.recoveries += 1
                    break
                time.sleep(0.2)
        out, err = proc.communicate(timeout=300)
        result.exit_status = proc.returncode
        if "Traceback" in err:
            result.problems.append(f"traceback:\n{err[-3000:]}")
        failures = [x for x in err.splitlines() if "checkpoint" in x and "failed" in x]
        result.failed_saves, result.failures = len(failures), [x[:300] for x in failures[:3] + failures[-2:]]
        newest, result.checkpoints_verified = newest_complete(uri, moto.endpoint)
        result.newest_complete = newest
        if proc.returncode == 0:
            if f"{uri}/checkpoint_{iterations:06d}" not in out:
                result.problems.append(f"exit 0 without naming the final checkpoint:\n{out[-1500:]}")
            if newest != f"checkpoint_{iterations:06d}":
                result.problems.append(f"exit 0 but the newest complete checkpoint is {newest!r}")
        elif proc.returncode == 75:
            text = one_line(err)
            named = text.split("the last complete checkpoint is ")[-1].split(".")[0].rsplit("/", 1)[-1]
            if named != newest:
                result.problems.append(f"exit 75 names {named!r}; the newest complete one is {newest!r}")
        else:
            result.problems.append(f"exit {proc.returncode}:\n{err[-3000:]}")
        # a later attempt (what the operator's retry runs) restores exactly the newest complete one
        later = subprocess.run(
            cli_command("run", "job.yaml", *args, "--set", f"stop.iterations={iterations}"),
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if later.returncode != 0 or "Traceback" in later.stderr:
            result.problems.append(f"the resumed run exited {later.returncode}:\n{later.stderr[-3000:]}")
        for line in later.stdout.splitlines():
            if line.startswith("resumed from "):
                result.resumed_from = line.removeprefix("resumed from ").strip()
        if result.resumed_from != f"{uri}/{newest}":
            result.problems.append(
                f"resumed from {result.resumed_from!r}, not the newest complete {newest!r}"
            )
    finally:
        proxy.stop()
        moto.stop()
    return result


def _boto_args() -> dict[str, str]:
    return {
        "aws_access_key_id": DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def _newest_iteration(uri: str, endpoint: str) -> int:
    """The highest checkpoint number with a manifest in the store (a cheap listing, no verification)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    client = boto3.session.Session(**_boto_args()).client("s3", endpoint_url=endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/checkpoint_")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return max(
        (int(k.split("/")[-2].split("_")[1]) for k in keys if k.endswith("/manifest.json")), default=-1
    )


def _rss_mb(proc: subprocess.Popen[str]) -> float:
    try:
        return float(psutil.Process(proc.pid).memory_info().rss) / 2**20
    except psutil.Error:
        return 0.0  # it just ended


def _sample_rss(proc: subprocess.Popen[str], result: S3KillResult) -> None:
    if result.kills:
        result.rss_mb_peak = max(result.rss_mb_peak, _rss_mb(proc))


def _iterations(results: Path) -> int:
    return len(results.read_text().splitlines()) if results.exists() else 0
