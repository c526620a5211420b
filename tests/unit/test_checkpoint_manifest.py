"""The pure manifest logic: what makes a checkpoint complete and a file trustworthy."""

from __future__ import annotations

import hashlib
import json

import pytest

from kuberl.checkpoint import CorruptCheckpointError
from kuberl.checkpoint.manifest import (
    FORMAT_VERSION,
    build_latest,
    build_manifest,
    parse_latest,
    parse_manifest,
    validate_file_name,
    validate_name,
    verify_file,
)

FILES = {"state.pt": b"\x00\x01weights", "policies/default/model.pt": b"policy-bytes"}
META = {"iteration": 10, "timesteps": 40_000, "algorithm": "PPO"}


def test_round_trip_keeps_hashes_sizes_and_metadata() -> None:
    manifest = build_manifest(FILES, META, created=123.5)
    parsed = parse_manifest(manifest.to_bytes(), "here")
    assert parsed == manifest
    assert parsed.iteration == 10
    assert parsed.timesteps == 40_000
    assert parsed.files["state.pt"].size == len(FILES["state.pt"])
    assert parsed.files["state.pt"].sha256 == hashlib.sha256(FILES["state.pt"]).hexdigest()
    doc = json.loads(manifest.to_bytes())
    assert doc["version"] == FORMAT_VERSION
    assert doc["metadata"]["algorithm"] == "PPO"
    for name, data in FILES.items():
        verify_file(parsed, name, data, "here")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "missing"),
        (b"\x00\x01weight", "truncated"),  # one byte short
        (b"\x00\x01weighTs", "sha256"),  # same size, one byte changed
    ],
)
def test_verify_names_the_bad_file(data: bytes | None, message: str) -> None:
    manifest = build_manifest(FILES, META, created=1.0)
    with pytest.raises(CorruptCheckpointError, match=message) as exc:
        verify_file(manifest, "state.pt", data, "s3://b/p/checkpoint_000010")
    assert "state.pt" in str(exc.value)
    assert "s3://b/p/checkpoint_000010" in str(exc.value)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[]",
        json.dumps({"format": "other", "version": 1}).encode(),
    ],
)
def test_unparseable_manifests_are_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptCheckpointError, match="manifest"):
        parse_manifest(raw, "where")


def _doc(**changes: object) -> bytes:
    doc = json.loads(build_manifest(FILES, META, created=1.0).to_bytes())
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "raw",
    [
        _doc(version=FORMAT_VERSION + 1),
        _doc(version="1"),
        _doc(created="yesterday"),
        _doc(files={}),
        _doc(files={"../escape": {"sha256": "0" * 64, "size": 1}}),
        _doc(files={"a": {"sha256": "xyz", "size": 1}}),
        _doc(files={"a": {"sha256": "0" * 64, "size": -1}}),
        _doc(metadata={"iteration": 1}),
        _doc(metadata={"iteration": "1", "timesteps": 2}),
    ],
)
def test_invalid_manifest_fields_are_corrupt(raw: bytes) -> None:
    with pytest.raises(CorruptCheckpointError):
        parse_manifest(raw, "where")


def test_build_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="iteration"):
        build_manifest(FILES, {"timesteps": 1}, created=1.0)
    with pytest.raises(ValueError, match="timesteps"):
        build_manifest(FILES, {"iteration": 1, "timesteps": True}, created=1.0)
    with pytest.raises(ValueError, match="JSON"):
        build_manifest(FILES, {**META, "x": object()}, created=1.0)
    with pytest.raises(ValueError, match="at least one file"):
        build_manifest({}, META, created=1.0)
    with pytest.raises(ValueError, match="file name"):
        build_manifest({"manifest.json": b""}, META, created=1.0)


@pytest.mark.parametrize("name", ["", ".", "..", "latest", ".hidden", "a/b", "a\\b"])
def test_invalid_checkpoint_names(name: str) -> None:
    with pytest.raises(ValueError, match="checkpoint name"):
        validate_name(name)


@pytest.mark.parametrize("name", ["/abs", "a//b", "a/../b", "./a", "manifest.json", "a/.tmp"])
def test_invalid_file_names(name: str) -> None:
    with pytest.raises(ValueError, match="file name"):
        validate_file_name(name)


def test_latest_pointer_round_trip_and_tolerance() -> None:
    manifest = build_manifest(FILES, META, created=5.0)
    raw = build_latest("checkpoint_000010", manifest)
    assert json.loads(raw)["iteration"] == 10
    assert parse_latest(raw) == "checkpoint_000010"
    assert parse_latest(b"checkpoint_000007\n") == "checkpoint_000007"  # hand-written plain text
    assert parse_latest(b"{broken") is None
    assert parse_latest(b'{"name": "../x"}') is None
    assert parse_latest(b"\xff") is None
