"""S3 failing the ways real endpoints fail, through a TCP proxy in front of the moto server, while
`kuberl run` trains with checkpoints every iteration. Regression tests for review H2 (a failed final
checkpoint exited 0 "done") and M3 (a hung endpoint froze training silently)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import boto3

from tests.faults.common import TINY_JOB, cli_env, one_line
from tests.fixtures.tcp_proxy import TcpProxy


def start_run(
    tmp_path: Path, uri: str, proxy: TcpProxy, *, iterations: int, deadline_s: float
) -> subprocess.Popen[str]:
    (tmp_path / "job.yaml").write_text(TINY_JOB)
    args = ["--no-progress", "--set", f"checkpoint.uri={uri}", "--set", f"stop.iterations={iterations}"]
    env = cli_env({"AWS_ENDPOINT_URL": proxy.endpoint, "KUBERL_CHECKPOINT_DEADLINE_S": str(deadline_s)})
    return subprocess.Popen(
        [sys.executable, "-m", "kuberl.cli", "run", "job.yaml", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate: object, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def manifest_exists(uri: str, moto: str, name: str) -> bool:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    client = boto3.session.Session().client("s3", endpoint_url=moto)
    listing = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{name}/manifest.json")
    return bool(listing.get("KeyCount"))


def iterations_done(tmp_path: Path) -> int:
    results = tmp_path / "runs" / "tiny" / "result.json"
    return len(results.read_text().splitlines()) if results.exists() else 0


def test_s3_down_until_the_end_fails_the_run_with_exit_75(
    tmp_path: Path, s3_bucket: str, s3_proxy: TcpProxy, moto_server: str
) -> None:
    proc = start_run(tmp_path, s3_bucket, s3_proxy, iterations=6, deadline_s=30)
    wait_for(lambda: manifest_exists(s3_bucket, moto_server, "checkpoint_000002"), proc)
    s3_proxy.set_mode("refused")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, (out, err)
    text = one_line(err)
    assert "final checkpoint (iteration 6)" in text, text
    assert "Traceback" not in err
    assert "done:" not in out  # the run is not reported as finished well
    # the checkpoint the message names as the last complete one really is in the store
    named = text.split("the last complete checkpoint is ")[1].split(".")[0].rsplit("/", 1)[1]
    assert manifest_exists(s3_bucket, moto_server, named)
    assert iterations_done(tmp_path) == 6


def test_a_hung_endpoint_does_not_freeze_training(
    tmp_path: Path, s3_bucket: str, s3_proxy: TcpProxy, moto_server: str
) -> None:
    """Hung (accepts, never answers) from checkpoint 2 until iteration 7: training goes on with each save
    bounded by a 10 s deadline (ample for a save on a loaded CI machine); when the endpoint recovers the
    final checkpoint lands and the run ends 0."""
    proc = start_run(tmp_path, s3_bucket, s3_proxy, iterations=9, deadline_s=10)
    wait_for(lambda: manifest_exists(s3_bucket, moto_server, "checkpoint_000002"), proc)
    s3_proxy.set_mode("hung")
    hung_at = iterations_done(tmp_path)
    t = time.monotonic()
    wait_for(lambda: iterations_done(tmp_path) >= 7, proc, timeout=120)
    assert iterations_done(tmp_path) > hung_at
    s3_proxy.set_mode("up")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out, err)
    assert "did not finish within 10 s" in one_line(err)
    assert manifest_exists(s3_bucket, moto_server, "checkpoint_000009")
    assert "checkpoint_000009" in out
    assert time.monotonic() - t < 150
    lines = [json.loads(x) for x in (tmp_path / "runs" / "tiny" / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in lines] == list(range(1, 10))
