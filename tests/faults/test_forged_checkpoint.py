"""A checkpoint store is a trust boundary: a forged checkpoint (a pickle payload under a recomputed,
valid manifest) must be refused with a clear error by every path that loads one, and its payload must
never run (regression for review H5: `kuberl evaluate` ran a shell command)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch

from kuberl.checkpoint.manifest import MANIFEST_FILE, file_entry
from tests.faults.common import TINY_JOB, kuberl, one_line


class _Payload:
    """Unpickling this calls os.system, which creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def forge(checkpoint: Path, marker: Path) -> None:
    """Replace the state file by a pickle payload and recompute the manifest, as an attacker with write
    access to the store would: integrity checks pass, only the loader can refuse it."""
    state_file = checkpoint / "algorithm_state.pt"
    buf = io.BytesIO()
    torch.save({"algorithm": "PPO", "x": _Payload(marker)}, buf)
    state_file.write_bytes(buf.getvalue())
    manifest = json.loads((checkpoint / MANIFEST_FILE).read_text())
    entry = file_entry(buf.getvalue())
    manifest["files"]["algorithm_state.pt"] = {"sha256": entry.sha256, "size": entry.size}
    (checkpoint / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run's directory: three checkpoints of a tiny PPO job."""
    cwd = tmp_path_factory.mktemp("forged")
    (cwd / "job.yaml").write_text(TINY_JOB)
    res = kuberl("run", "job.yaml", "--no-progress", cwd=cwd)
    assert res.returncode == 0, res.stderr
    return cwd


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "{ckpt}", "--episodes", "1"],
        ["record", "{ckpt}", "--output", "{tmp}/rec", "--steps", "10"],
        ["run", "job.yaml", "--no-progress", "--set", "resume={ckpt}"],
        ["run", "job.yaml", "--no-progress", "--set", "resume=auto", "--set", "stop.iterations=4"],
    ],
    ids=["evaluate", "record", "resume-uri", "resume-auto"],
)
def test_forged_checkpoint_is_refused_and_its_payload_never_runs(
    trained: Path, tmp_path: Path, command: list[str]
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "job.yaml").write_text(TINY_JOB.replace("name: tiny", "name: victim"))
    store = cwd / "runs" / "victim" / "checkpoints"
    store.parent.mkdir(parents=True)
    os.system(f"cp -r {trained / 'runs' / 'tiny' / 'checkpoints'} {store}")
    newest = store / "checkpoint_000003"
    marker = tmp_path / "pwned"
    forge(newest, marker)
    args = [a.format(ckpt=newest, tmp=tmp_path) for a in command]
    res = kuberl(*args, cwd=cwd)
    assert not marker.exists(), "the pickle payload ran"
    err = one_line(res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    if command[-1] == "stop.iterations=4":
        # resume: auto skips the forged newest checkpoint like a corrupt one, resumes from the one before
        assert res.returncode == 0, res.stderr
        assert "refused to load" in err, err
        assert "resumed from" in err or "checkpoint_000002" in res.stdout, res.stdout
    else:
        assert res.returncode == 2, res.stderr
        assert "refused to load" in err, err
        assert "objects other than tensors" in err, err
