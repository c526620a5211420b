"""Generate the field reference (docs/spec.md) from the models' descriptions: one source of truth.

python -m kuberl.spec.reference > docs/spec.md
"""

from __future__ import annotations

import functools
import sys
import types
from dataclasses import fields
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticUndefined

from kuberl.spec.algorithms import CONFIG_MODELS, capabilities
from kuberl.spec.algorithms.base import OFF_SPELLINGS
from kuberl.spec.capabilities import FEATURES, Capabilities
from kuberl.spec.job import RLTrainingJobSpec, RLTrainingJobStatus


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation) if get_origin(annotation) is not None else ():
        out += _models_in(arg)
    return out


def _without_metadata(annotation: Any) -> Any:
    """The annotation with every Annotated[T, ...] reduced to T: constraints and validators are in the
    description and the CRD, and a validator's repr (with its memory address) would make this file
    differ on every run."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _without_metadata(args[0])
    if origin is None or not args:
        return annotation
    plain = tuple(_without_metadata(a) for a in args)
    if origin is types.UnionType:
        return functools.reduce(lambda a, b: a | b, plain)
    if origin is Union:
        return Union[plain]  # noqa: UP007 (rebuilding the typing.Optional the model spelt)
    generic: Any = origin
    return generic[plain] if isinstance(origin, type) else annotation


def _type_name(annotation: Any) -> str:
    annotation = _without_metadata(annotation)
    text = getattr(annotation, "__name__", None) if get_origin(annotation) is None else None
    text = text or str(annotation).replace("typing.", "").replace("kuberl.spec.", "")
    return text.replace(" | ", " or ")  # a bare "|" would split the markdown table cell


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined and field.default is not None:
        return f"`{field.default!r}`" if not isinstance(field.default, BaseModel) else ""
    if field.default_factory is not None:
        try:
            value = field.default_factory()
        except TypeError:
            return ""
        return "" if isinstance(value, BaseModel) else f"`{value!r}`"
    return "required" if field.is_required() else ""


def table(model: type[BaseModel], prefix: str, lines: list[str], *, skip: tuple[str, ...] = ()) -> None:
    nested: list[tuple[str, type[BaseModel]]] = []
    rows = []
    for name, field in model.model_fields.items():
        if name in skip or field.exclude:
            continue
        wire = field.alias or to_camel(name)
        rows.append(
            f"| `{prefix}{wire}` | {_type_name(field.annotation)} | {_default(field)} | "
            f"{(field.description or '').replace('|', '/')} |"
        )
        for sub in _models_in(field.annotation):
            if sub.__module__.startswith("kuberl.spec"):
                nested.append((f"{prefix}{wire}.", sub))
    lines += ["| field | type | default | description |", "|---|---|---|---|", *rows, ""]
    for sub_prefix, sub in nested:
        lines.append(f"### `{sub_prefix.rstrip('.')}`\n")
        table(sub, sub_prefix, lines)


def capability_table(lines: list[str]) -> None:
    """Which algorithm supports which feature: `kuberl.spec.algorithms.capabilities()`, the flags
    validation reads (kuberl.spec.capabilities)."""
    caps = capabilities()
    names = [f.name for f in fields(Capabilities)]
    lines += [
        "## Algorithm capabilities",
        "",
        "Which features each algorithm supports. Validation refuses other combinations with the field and the",
        "reason; in Python: `kuberl.spec.algorithms.capabilities()` (a `Capabilities` per algorithm).",
        "",
        *(f"- `{n}`: {FEATURES[n]}" for n in names),
        "",
        "| algorithm | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for algo, c in caps.items():
        cells = []
        for n in names:
            v = getattr(c, n)
            cells.append(
                ", ".join(sorted(v))
                if isinstance(v, frozenset)
                else ("yes" if v is True else "" if v is False else v)
            )
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    lines.append("")


def render() -> str:
    lines = [
        "# RLTrainingJob field reference",
        "",
        "Generated from the pydantic models by `python -m kuberl.spec.reference` (do not edit by hand).",
        "Fields are camelCase; snake_case spellings (and RLlib's names) are accepted on input.",
        "",
        "A setting whose description says `off:` (gradClip, maxWeight, the V-trace clips) is turned off",
        "with `off` (YAML reads a bare `off` as false; false, and the strings "
        + " and ".join(f'"{w}"' for w in OFF_SPELLINGS),
        "in any case, mean the same). null means the same in a local file, but `kubectl apply` drops nulls,",
        "so `gradClip: null` would reach the cluster as the default: write `off`, which means the same to",
        "`kuberl run` and on Kubernetes.",
        "",
        "## `spec`",
        "",
    ]
    table(RLTrainingJobSpec, "spec.", lines, skip=("config",))
    capability_table(lines)
    for name, model in CONFIG_MODELS.items():
        lines += [f"## `spec.config` for `algorithm: {name}`", "", (model.__doc__ or "").strip(), ""]
        table(model, "spec.config.", lines)
    lines += ["## `status` (written by the operator)", ""]
    table(RLTrainingJobStatus, "status.", lines)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
