"""The checkpoint store on a local directory: the manifest-last protocol, corruption handling,
retention and `resume: <URI>` resolution, all against real files."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from kuberl.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    CheckpointStore,
    CorruptCheckpointError,
    LoadedCheckpoint,
    load_checkpoint,
    open_store,
)

WARN = "skipping corrupt checkpoint"


def name(i: int) -> str:
    return f"checkpoint_{i:06d}"


def files_for(i: int) -> dict[str, bytes]:
    return {
        "state.pt": f"weights-{i}".encode() * 50,
        "policies/default/model.pt": bytes([i % 256]) * (10 + i),
    }


def save(store: CheckpointStore, i: int) -> CheckpointInfo:
    return store.save(name(i), files_for(i), metadata={"iteration": i, "timesteps": 100 * i, "algo": "PPO"})


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "ckpts"


@pytest.fixture
def store(root: Path) -> CheckpointStore:
    return open_store(str(root))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_round_trip(store: CheckpointStore, root: Path) -> None:
    assert store.uri == root.as_uri()
    assert store.list() == []
    assert store.load_latest() is None

    info = save(store, 10)
    assert info == CheckpointInfo(
        name=name(10),
        uri=f"{root.as_uri()}/{name(10)}",
        iteration=10,
        timesteps=1000,
        created=info.created,
        metadata={"iteration": 10, "timesteps": 1000, "algo": "PPO"},
    )
    # Layout: <root>/<name>/<file>, the manifest beside the files, `latest` at the root.
    assert (root / name(10) / "policies" / "default" / "model.pt").read_bytes() == files_for(10)[
        "policies/default/model.pt"
    ]
    manifest = json.loads((root / name(10) / "manifest.json").read_bytes())
    assert set(manifest["files"]) == {"state.pt", "policies/default/model.pt"}
    assert json.loads((root / "latest").read_bytes())["name"] == name(10)
    assert not [p for p in root.rglob(".*")], "temporary files left behind"

    assert store.list() == [info]
    for ref in (name(10), info.uri, str(root / name(10))):
        loaded = store.load(ref)
        assert isinstance(loaded, LoadedCheckpoint)
        assert loaded.files == files_for(10)
        assert loaded.info == info
    latest = store.load_latest()
    assert latest is not None
    assert latest.info == info


def test_file_uri_and_relative_path_open_the_same_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save(open_store(root.as_uri()), 1)
    monkeypatch.chdir(root.parent)
    store = open_store("ckpts/")
    assert store.uri == root.as_uri()
    assert [i.name for i in store.list()] == [name(1)]


def test_list_orders_by_iteration_not_name(store: CheckpointStore) -> None:
    store.save("b_run", {"f": b"1"}, metadata={"iteration": 1, "timesteps": 1})
    store.save("a_run", {"f": b"2"}, metadata={"iteration": 2, "timesteps": 2})
    assert [i.name for i in store.list()] == ["b_run", "a_run"]
    latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == "a_run"


def test_manifest_is_written_last_and_latest_after_it(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[str] = []
    real_write = store._write

    def recording_write(key: str, data: bytes) -> None:
        written.append(key)
        real_write(key, data)

    monkeypatch.setattr(store, "_write", recording_write)
    save(store, 3)
    assert written[-2:] == [f"{name(3)}/manifest.json", "latest"]
    assert sorted(written[:-2]) == sorted(f"{name(3)}/{f}" for f in files_for(3))


def test_save_crashing_before_manifest_is_invisible(
    store: CheckpointStore, root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = save(store, 1)
    real_write = store._write

    def crash_at_manifest(key: str, data: bytes) -> None:
        if key.endswith("manifest.json"):
            raise KeyboardInterrupt("killed mid-save")
        real_write(key, data)

    monkeypatch.setattr(store, "_write", crash_at_manifest)
    with pytest.raises(KeyboardInterrupt):
        save(store, 2)
    monkeypatch.undo()

    assert (root / name(2) / "state.pt").exists()  # the files did land…
    assert store.list() == [first]  # …but without a manifest it is not a checkpoint
    with caplog.at_level(logging.WARNING, logger="kuberl.checkpoint"):
        latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == name(1)
    assert any(WARN in r.getMessage() and name(2) in r.getMessage() for r in caplog.records)
    with pytest.raises(CorruptCheckpointError, match="no manifest"):
        store.load(name(2))
    assert json.loads((root / "latest").read_bytes())["name"] == name(1)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: flip_byte(p / "state.pt"), "sha256"),
        (lambda p: (p / "state.pt").write_bytes((p / "state.pt").read_bytes()[:-7]), "truncated"),
        (lambda p: (p / "policies" / "default" / "model.pt").unlink(), "missing"),
    ],
    ids=["flipped-bytes", "truncated", "file-missing"],
)
def test_corrupt_newest_is_skipped_with_warning(
    store: CheckpointStore,
    root: Path,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[Path], object],
    reason: str,
) -> None:
    for i in (1, 2, 3):
        save(store, i)
    damage(root / name(3))

    with pytest.raises(CorruptCheckpointError, match=reason) as exc:
        store.load(name(3))
    assert name(3) in str(exc.value)

    with caplog.at_level(logging.WARNING, logger="kuberl.checkpoint"):
        latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == name(2)
    assert latest.files == files_for(2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(WARN in w and name(3) in w and reason in w for w in warnings), warnings


def test_missing_manifest_is_not_listed(
    store: CheckpointStore, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save(store, 1)
    save(store, 2)
    (root / name(2) / "manifest.json").unlink()
    assert [i.name for i in store.list()] == [name(1)]
    with caplog.at_level(logging.WARNING, logger="kuberl.checkpoint"):
        latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == name(1)
    assert any(WARN in r.getMessage() and name(2) in r.getMessage() for r in caplog.records)


def test_unparseable_manifest_is_skipped(
    store: CheckpointStore, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    save(store, 1)
    save(store, 2)
    (root / name(2) / "manifest.json").write_bytes(b'{"format": "kuberl-checkpoint", "vers')
    with caplog.at_level(logging.WARNING, logger="kuberl.checkpoint"):
        assert [i.name for i in store.list()] == [name(1)]
        latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == name(1)
    assert any(WARN in r.getMessage() and name(2) in r.getMessage() for r in caplog.records)


def test_all_corrupt_gives_none(store: CheckpointStore, root: Path) -> None:
    save(store, 1)
    flip_byte(root / name(1) / "state.pt")
    assert store.load_latest() is None
    with pytest.raises(CheckpointError, match="no complete, valid checkpoint"):
        load_checkpoint(str(root))


@pytest.mark.parametrize("pointer", ["deleted", "corrupt", "garbage"])
def test_latest_pointer_at_bad_checkpoint_falls_back(
    store: CheckpointStore, root: Path, caplog: pytest.LogCaptureFixture, pointer: str
) -> None:
    save(store, 1)
    save(store, 2)
    if pointer == "deleted":
        (root / "latest").write_text(json.dumps({"name": name(9)}))
    elif pointer == "corrupt":
        flip_byte(root / name(2) / "state.pt")
    else:
        (root / "latest").write_bytes(b"\x00\xff not a pointer")
    expected = name(1) if pointer == "corrupt" else name(2)
    with caplog.at_level(logging.WARNING, logger="kuberl.checkpoint"):
        latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == expected
    if pointer == "deleted":
        assert any(name(9) in r.getMessage() for r in caplog.records)
    # A new save repairs the pointer.
    save(store, 3)
    assert json.loads((root / "latest").read_bytes())["name"] == name(3)


def test_saving_an_older_iteration_does_not_move_latest(store: CheckpointStore, root: Path) -> None:
    save(store, 5)
    save(store, 2)
    assert json.loads((root / "latest").read_bytes())["name"] == name(5)
    assert [i.name for i in store.list()] == [name(2), name(5)]


def test_resaving_a_name_replaces_it_entirely(store: CheckpointStore, root: Path) -> None:
    store.save("ck", {"old.bin": b"old", "shared": b"1"}, metadata={"iteration": 1, "timesteps": 1})
    store.save("ck", {"shared": b"2"}, metadata={"iteration": 2, "timesteps": 2})
    loaded = store.load("ck")
    assert loaded.files == {"shared": b"2"}
    assert loaded.info.iteration == 2
    assert not (root / "ck" / "old.bin").exists()


def test_retention_keeps_n_newest(store: CheckpointStore, root: Path) -> None:
    for i in range(1, 6):
        save(store, i)
    assert store.prune(keep=2) == [name(1), name(2), name(3)]
    assert [i.name for i in store.list()] == [name(4), name(5)]
    assert not (root / name(1)).exists()
    assert store.prune(keep=2) == []
    assert store.prune(keep=1) == [name(4)]
    latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == name(5)
    with pytest.raises(ValueError, match="keep"):
        store.prune(keep=0)


def test_prune_removes_stale_partials_but_not_newer_ones(store: CheckpointStore, root: Path) -> None:
    stale = root / "checkpoint_000000"
    stale.mkdir(parents=True)
    (stale / "state.pt").write_bytes(b"half")
    os.utime(stale / "state.pt", (1, 1))
    save(store, 1)
    save(store, 2)
    in_progress = root / "checkpoint_000003"
    in_progress.mkdir()
    (in_progress / "state.pt").write_bytes(b"being written")
    os.utime(in_progress / "state.pt", (4e9, 4e9))  # newer than every complete checkpoint

    assert store.prune(keep=5) == ["checkpoint_000000"]
    assert in_progress.exists()
    assert [i.name for i in store.list()] == [name(1), name(2)]


def test_prune_never_lets_a_damaged_newest_push_out_the_last_good_one(
    store: CheckpointStore, root: Path
) -> None:
    save(store, 1)
    save(store, 2)
    (root / name(2) / "state.pt").write_bytes(b"truncated")
    assert store.prune(keep=1) == []
    latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == name(1)
    save(store, 3)
    assert store.prune(keep=1) == [name(1), name(2)]


def test_load_errors(store: CheckpointStore, tmp_path: Path) -> None:
    save(store, 1)
    with pytest.raises(CheckpointError, match="no checkpoint") as exc:
        store.load(name(7))
    assert not isinstance(exc.value, CorruptCheckpointError)
    with pytest.raises(CheckpointError, match="not a checkpoint in store"):
        store.load(str(tmp_path / "elsewhere" / name(1)))
    with pytest.raises(ValueError, match="checkpoint name"):
        store.save("../evil", {"f": b""}, metadata={"iteration": 1, "timesteps": 1})


def test_load_checkpoint_resolves_dir_and_root_uris(store: CheckpointStore, root: Path) -> None:
    for i in (1, 2, 3):
        save(store, i)
    assert load_checkpoint(str(root / name(2))).info.name == name(2)
    assert load_checkpoint(f"{root.as_uri()}/{name(1)}").files == files_for(1)
    assert load_checkpoint(str(root)).info.name == name(3)
    assert load_checkpoint(root.as_uri() + "/").info.name == name(3)

    flip_byte(root / name(3) / "state.pt")
    assert load_checkpoint(str(root)).info.name == name(2)  # root: newest valid
    with pytest.raises(CorruptCheckpointError, match=r"state\.pt"):
        load_checkpoint(str(root / name(3)))  # explicitly named: never silently swapped


def test_load_checkpoint_nothing_there(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no complete, valid checkpoint") as exc:
        load_checkpoint(str(tmp_path / "nothing"))
    assert (tmp_path / "nothing").as_uri() in str(exc.value)
    with pytest.raises(CheckpointError, match="unsupported"):
        load_checkpoint("gs://bucket/x")


def test_check_access(tmp_path: Path) -> None:
    fresh = open_store(str(tmp_path / "a" / "b"))
    fresh.check_access()
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe is removed

    (tmp_path / "file").write_text("x")
    for target in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(CheckpointError) as exc:
            open_store(str(target)).check_access()
        assert target.as_uri() in str(exc.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_check_access_read_only(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(CheckpointError, match="not writable"):
            open_store(str(ro)).check_access()
    finally:
        ro.chmod(0o700)


def save_run(store: CheckpointStore, i: int, run: str) -> CheckpointInfo:
    meta = {"iteration": i, "timesteps": 100 * i, "run": run}
    return store.save(name(i) + f"_{run}", files_for(i), metadata=meta)


def test_a_new_run_outranks_an_older_run_with_more_iterations(store: CheckpointStore, root: Path) -> None:
    """Review H1: retention ranked every run's iterations together, so each save of a new run (fewer
    iterations than the old run's newest) was pruned as it landed, and `latest` stayed on the old run."""
    for i in range(1, 7):
        save_run(store, i, "old")
        store.prune(keep=3, run="old")
    for i in range(1, 4):
        save_run(store, i, "new")
        assert store.prune(keep=3, run="new") == []  # the old run's 4..6 are not this run's to delete
        assert (root / f"{name(i)}_new" / "manifest.json").exists()
        latest = store.load_latest()
        assert latest is not None
        assert latest.info.name == f"{name(i)}_new"
        assert json.loads((root / "latest").read_text())["name"] == f"{name(i)}_new"
    assert [(i.run, i.iteration) for i in store.list()] == [
        ("old", 4),
        ("old", 5),
        ("old", 6),
        ("new", 1),
        ("new", 2),
        ("new", 3),
    ]
    save_run(store, 4, "new")
    assert store.prune(keep=3, run="new") == [f"{name(1)}_new"]
    # prune() without a run acts on the newest run only
    save_run(store, 5, "new")
    assert store.prune(keep=3) == [f"{name(2)}_new"]
    assert {i.run for i in store.list()} == {"old", "new"}


def test_checkpoints_without_a_run_id_keep_their_old_order(store: CheckpointStore) -> None:
    """Stores written before runs had identities: one anonymous run, ordered by iteration as before."""
    for i in (3, 1, 2):
        save(store, i)
    assert [i.iteration for i in store.list()] == [1, 2, 3]
    assert all(i.run == "" for i in store.list())
