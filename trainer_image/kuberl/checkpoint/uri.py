"""Checkpoint URIs: parse a user's location once into a normalised form both stores share.

Accepted: a plain local path (relative paths are made absolute now, so a later chdir cannot move the
store), `file:///abs/path`, and `s3://bucket[/prefix]`. Normalised URIs are what the trainer reports
(status.lastCheckpoint) and what `resume:` accepts back, so they must round-trip through `parse_uri`.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from kuberl.checkpoint.errors import CheckpointError


@dataclass(frozen=True)
class Location:
    """A store root or a checkpoint directory: a local absolute path, or an S3 bucket and key prefix."""

    scheme: Literal["file", "s3"]
    path: str  # local: absolute path; s3: key prefix without leading/trailing "/" ("" for the bucket root)
    bucket: str = ""

    @property
    def uri(self) -> str:
        if self.scheme == "file":
            return Path(self.path).as_uri()
        return f"s3://{self.bucket}/{self.path}" if self.path else f"s3://{self.bucket}"

    def child(self, name: str) -> Location:
        if self.scheme == "file":
            return Location("file", os.path.join(self.path, name))
        return Location("s3", f"{self.path}/{name}" if self.path else name, self.bucket)

    def split(self) -> tuple[Location, str] | None:
        """(parent, last segment), or None at a filesystem or bucket root."""
        if self.scheme == "file":
            parent, name = os.path.split(self.path)
            return (Location("file", parent), name) if name else None
        if not self.path:
            return None
        parent, name = posixpath.split(self.path)
        return Location("s3", parent, self.bucket), name


def parse_uri(uri: str) -> Location:
    """Parse and normalise; raises CheckpointError for schemes and shapes no store handles."""
    if not isinstance(uri, str) or not uri.strip():
        raise CheckpointError(f"empty checkpoint location {uri!r}")
    uri = uri.strip()
    if uri.startswith("s3://"):
        parts = urlsplit(uri)
        bucket = parts.netloc
        if not bucket or parts.query or parts.fragment:
            raise CheckpointError(f"invalid S3 URI {uri!r}: expected s3://bucket[/prefix]")
        prefix = "/".join(seg for seg in parts.path.split("/") if seg)
        return Location("s3", prefix, bucket)
    if uri.startswith("file://"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise CheckpointError(f"invalid file URI {uri!r}: expected file:///absolute/path")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise CheckpointError(f"invalid file URI {uri!r}: expected file:///absolute/path")
        return Location("file", os.path.normpath(path))
    if "://" in uri:
        raise CheckpointError(
            f"unsupported checkpoint URI {uri!r}: use s3://bucket/prefix, file:///path or a path"
        )
    return Location("file", os.path.abspath(os.path.expanduser(uri)))
