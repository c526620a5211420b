"""Base model for the RLTrainingJob document: camelCase on the wire, snake_case accepted.

Kubernetes objects use camelCase; RLlib users paste snake_case (``train_batch_size``). Every model
accepts both spellings and always emits camelCase, so what the CLI writes, what the operator writes
and what the CRD declares agree.
"""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """A strict spec model: unknown fields are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        # NaN or ±inf in a job is a mistake: a NaN stop threshold never fires, an infinite lr trains to NaN.
        allow_inf_nan=False,
        validate_assignment=True,
        use_attribute_docstrings=False,
        frozen=False,
    )

    def to_wire(self) -> dict[str, object]:
        """The camelCase JSON-compatible form, without unset optional fields that are None."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class LenientModel(WireModel):
    """For objects Kubernetes itself extends (metadata, status): unknown fields are kept, not errors."""

    model_config = ConfigDict(extra="allow")


def field_spellings(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """The keys `model` accepts for each of its fields, by field name: the name itself (WireModel
    validates by name) and the validation aliases, or the alias when there are none. The CRD's closed
    config key sets (kuberl.spec.crd) and `--set`'s alias resolution (kuberl.spec.load) read them here,
    so what they accept is what pydantic accepts."""
    out: dict[str, tuple[str, ...]] = {}
    for name, info in model.model_fields.items():
        spellings = [name]
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            choices = alias.choices
        elif alias is not None:
            choices = [alias]
        else:
            choices = [info.alias or name]
        for choice in choices:
            if not isinstance(choice, str):  # an AliasPath reads a nested value: no spec model has one
                raise TypeError(f"{model.__name__}.{name}: alias paths are not supported ({choice!r})")
            if choice not in spellings:
                spellings.append(choice)
        out[name] = tuple(spellings)
    return out
