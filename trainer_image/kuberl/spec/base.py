"""Base model for the RLTrainingJob document: camelCase on the wire, snake_case accepted.

Kubernetes objects use camelCase; RLlib users paste snake_case (``train_batch_size``). Every model
accepts both spellings and always emits camelCase, so what the CLI writes, what the operator writes
and what the CRD declares agree.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
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
