"""bench/gpu_check.sh, the GPU machine's prepared check, run as CI can: `--cpu --smoke` (every stage tiny, on
the CPU), so the script a GPU machine will run cannot rot between loans. The figures it writes are checked
for consistency with the sizes the smoke mode asks for, not just for presence."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def run_check(*args: str, out: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env["PYTHON"] = sys.executable
    if out is not None:
        env["OUT"] = str(out)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def positive(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_cpu_smoke_runs_every_stage_and_reports_sane_figures(tmp_path: Path) -> None:
    res = run_check("--cpu", "--smoke", out=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["schema"] == 1
    assert report["mode"] == {"cpu": True, "smoke": True}
    assert report["ok"] is True
    assert report["machine"]["cpus"] >= 1
    stages = report["stages"]
    assert list(stages) == ["ppo_atari", "offpolicy", "async_scaling", "nccl_ddp"]

    atari = stages["ppo_atari"]
    assert atari["status"] == "ok", atari
    a = atari["result"]
    assert a["device"] == "cpu"
    assert a["iterations"] >= 1
    # Every iteration samples exactly one train batch (64 steps over 2 sub-envs).
    assert a["env_steps"] == a["iterations"] * a["train_batch_size"] == a["iterations"] * 64
    assert positive(a["env_steps_per_s"])
    assert positive(a["learn_s_per_iteration"])
    assert a["gpu_mem_peak_allocated_mb"] is None  # no GPU figure invented on CPU

    off = stages["offpolicy"]
    assert off["status"] == "ok", off
    for algorithm in ("SAC", "TD3"):
        row = off["result"][algorithm]
        assert set(row) == {"cpu"}  # --cpu: no GPU column, no speed-up
        assert row["cpu"]["device"] == "cpu"
        assert row["cpu"]["updates"] % 50 == 0
        assert row["cpu"]["updates"] >= 50
        assert positive(row["cpu"]["updates_per_s"])
        assert row["cpu"]["updates_per_s"] == pytest.approx(row["cpu"]["updates"] / row["cpu"]["seconds"])

    scaling = stages["async_scaling"]
    assert scaling["status"] == "ok", scaling
    for algorithm in ("APPO", "IMPALA"):
        rows = scaling["result"][algorithm]
        assert [r["env_runners"] for r in rows] == [1, 2]
        assert all(positive(r["steps_per_s"]) for r in rows)
        assert rows[0]["scaling_efficiency"] == pytest.approx(1.0)
        assert rows[1]["scaling_efficiency"] == pytest.approx(
            rows[1]["steps_per_s"] / (2 * rows[0]["steps_per_s"])
        )
        assert all(r["lag_max"] >= r["lag_mean"] >= 0 for r in rows)
        alone = scaling["result"][f"{algorithm}_learner_alone"]
        assert alone["updates"] >= 1
        assert alone["steps_per_s"] == pytest.approx(alone["updates"] * 400 / alone["seconds"])

    nccl = stages["nccl_ddp"]
    assert nccl["status"] == "skipped"
    assert "--cpu" in nccl["reason"]

    summary = (tmp_path / "gpu_check.md").read_text()
    for heading in (
        "## ppo_atari — ok",
        "## offpolicy — ok",
        "## async_scaling — ok",
        "## nccl_ddp — skipped",
    ):
        assert heading in summary
    assert f"| SAC | {off['result']['SAC']['cpu']['updates_per_s']:,.0f} | n/a | n/a |" in summary


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the check would run on it")
def test_without_cuda_and_without_cpu_flag_it_fails_loudly(tmp_path: Path) -> None:
    res = run_check("--smoke", out=tmp_path)
    assert res.returncode == 1
    assert "CUDA is not available" in res.stderr
    assert "--cpu" in res.stderr
    assert "Traceback" not in res.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["ok"] is False
    assert report["stages"] == {}


def test_without_out_it_says_what_is_missing(tmp_path: Path) -> None:
    res = run_check("--cpu", "--smoke", out=None)
    assert res.returncode == 2
    assert "OUT: required" in res.stderr
    assert "Traceback" not in res.stderr
