"""Parse an RLTrainingJob from YAML/JSON text or a dict, with `--set key=value` overrides."""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from kuberl.spec.algorithms import CONFIG_MODELS
from kuberl.spec.base import field_spellings
from kuberl.spec.errors import SpecError, from_validation_error
from kuberl.spec.job import RLTrainingJob, RLTrainingJobSpec

#: A job document, with every YAML alias expanded, may hold at most this many values: far above any real
#: job (a large tune grid is a few thousand), far below what an alias bomb expands to (review M6).
MAX_NODES = 200_000
#: …nested at most this deep (Kubernetes itself refuses objects nested deeper than about 100 levels).
MAX_DEPTH = 100


class _RefusedError(Exception):
    """Internal: stops the walk at the first reason."""


def check_size(doc: Any) -> str | None:
    """Why `doc` is too big or too deep once its aliases are expanded, or None. Aliases are shared
    references after `safe_load`, so the expanded size is counted on the graph, memoised per object,
    in time linear in the file: a 1 KB alias bomb is refused in microseconds instead of expanded."""
    sizes: dict[int, tuple[int, int]] = {}  # id -> (expanded nodes, depth)
    active: set[int] = set()

    def walk(node: Any, depth: int) -> tuple[int, int]:
        if not isinstance(node, dict | list):
            return 1, 0
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _RefusedError("a YAML alias refers to a collection that contains it (a cycle)")
        if depth > MAX_DEPTH:
            raise _RefusedError(f"values are nested more than {MAX_DEPTH} levels deep")
        active.add(key)
        total, deepest = 1, 0
        for child in node.values() if isinstance(node, dict) else node:
            n, d = walk(child, depth + 1)
            total += n
            deepest = max(deepest, d + 1)
            if total > MAX_NODES:
                raise _RefusedError(
                    f"the document expands to more than {MAX_NODES:,} values (through YAML aliases?)"
                )
        active.discard(key)
        sizes[key] = (total, deepest)
        return total, deepest

    try:
        walk(doc, 0)
    except _RefusedError as exc:
        return str(exc)
    return None


def parse_job(data: Mapping[str, Any], *, source: str | None = None) -> RLTrainingJob:
    """Validate a whole document. Raises SpecError naming every bad field."""
    if not isinstance(data, Mapping):
        raise SpecError(
            [("", f"expected a mapping (an RLTrainingJob document), got {type(data).__name__}")],
            source=source,
        )
    try:
        return RLTrainingJob.model_validate(dict(data))
    except ValidationError as exc:
        raise from_validation_error(exc, source=source) from None


def parse_spec(data: Mapping[str, Any], *, source: str | None = None) -> RLTrainingJobSpec:
    """Validate only a spec (what the operator reads from a custom resource's `.spec`)."""
    try:
        return RLTrainingJobSpec.model_validate(dict(data))
    except ValidationError as exc:
        raise from_validation_error(exc, prefix="spec", source=source) from None


def _parse_value(text: str) -> Any:
    """`--set` values are YAML scalars or flow collections: 3, 0.1, true, null, [64, 64], {a: 1}."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The one model a field holds (`X`, `X | None`), or None for free-form values (dicts, lists, …)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    models = {m for m in map(_model_of, get_args(annotation)) if m is not None}
    return models.pop() if len(models) == 1 and get_origin(annotation) in (Union, UnionType) else None


def _field_at(model: type[BaseModel] | None, key: str, doc: dict[str, Any]) -> tuple[tuple[str, ...], Any]:
    """The spellings `model` takes for the field `key` names ((key,) where it names none or the value
    is free-form), and the model of that field's value (None: free-form, keys are taken as written)."""
    if model is None:
        return (key,), None
    for name, spellings in field_spellings(model).items():
        if key in spellings:
            if model is RLTrainingJobSpec and name == "config":
                # The algorithm's own model; a custom algorithm's config is left as written.
                algorithm = str(doc.get("spec", {}).get("algorithm", "")).upper()
                return spellings, CONFIG_MODELS.get(algorithm)
            return spellings, _model_of(model.model_fields[name].annotation)
    return (key,), None


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides to a raw document (paths relative to the document root; a path
    not starting with metadata/spec/apiVersion/kind is taken relative to `spec`). A key the models
    take in several spellings replaces the spelling the document already has (`--set
    config.model.useLstm=false` on a file saying `use_lstm: true`), so no second key appears."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise SpecError([("--set", f"{item!r} is not key=value")])
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise SpecError([("--set", f"{item!r} has an empty key")])
        if parts[0] not in ("metadata", "spec", "apiVersion", "kind"):
            parts = ["spec", *parts]
        node, model = out, RLTrainingJob
        for i, part in enumerate(parts):
            spellings, model = _field_at(model, part, out)
            present = [k for k in node if k in spellings]
            for extra in present[1:]:  # the document had two spellings: the override replaces both
                del node[extra]
            name = present[0] if present else part
            if i == len(parts) - 1:
                node[name] = _parse_value(value)
                break
            nxt = node.get(name)
            if nxt is None:
                nxt = node[name] = {}
            if not isinstance(nxt, dict):
                raise SpecError(
                    [(".".join(parts), f"cannot set a field inside {part!r}, which is not a mapping")]
                )
            node = nxt
    return out


def decode_text(data: bytes, *, source: str) -> str:
    """YAML's encodings: UTF-8, or UTF-16 with its byte-order mark (as editors on Windows save it)."""
    encoding = "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise SpecError(
            [("", f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} ({exc.reason})")],
            source=source,
        ) from None


def read_document(path: str | Path) -> dict[str, Any]:
    """Read one YAML document. Raises SpecError for unreadable or malformed files."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise SpecError([("", f"cannot read {p}: {exc.strerror or exc}")], source=str(p)) from None
    text = decode_text(data, source=str(p))
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise SpecError(
            [("", f"malformed YAML: values are nested more than {MAX_DEPTH} levels deep")], source=str(p)
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([("", f"malformed YAML{where}: {problem}")], source=str(p)) from None
    for doc in docs:
        problem = check_size(doc)
        if problem is not None:
            raise SpecError([("", f"refused: {problem}")], source=str(p))
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "RLTrainingJob"]
    if len(jobs) == 1:
        return jobs[0]
    if not docs:
        raise SpecError([("", "the file is empty")], source=str(p))
    if len(docs) == 1 and isinstance(docs[0], dict):
        return docs[0]
    raise SpecError([("", f"expected exactly one RLTrainingJob document, found {len(jobs)}")], source=str(p))


def load_document(path: str | Path) -> dict[str, Any]:
    """Read a job file as an RLTrainingJob document: an RLlib tuned-example file (detected by its shape)
    is converted first (kuberl.spec.rllib), its warnings logged."""
    raw = read_document(path)
    if "kind" in raw or "apiVersion" in raw:  # an RLTrainingJob: no need to load the RLlib converter
        return raw
    from kuberl.spec.rllib import convert_document, is_rllib_experiment

    if not is_rllib_experiment(raw):
        return raw
    doc, warnings = convert_document(raw, source=str(path))
    for warning in warnings:
        logging.getLogger("kuberl.rllib").warning("%s: %s", path, warning)
    return doc


def load_job(path: str | Path, overrides: Iterable[str] = ()) -> RLTrainingJob:
    """Read, override and validate a job file (an RLTrainingJob, or an RLlib tuned example)."""
    raw = load_document(path)
    return parse_job(apply_overrides(raw, overrides), source=str(path))
