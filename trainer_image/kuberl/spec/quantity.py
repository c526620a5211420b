"""Kubernetes resource quantities ("500m", "4Gi", "1e3"), parsed as the API server parses them.

The grammar is apimachinery's `resource.ParseQuantity`
(https://github.com/kubernetes/apimachinery/blob/master/pkg/api/resource/quantity.go): a signed decimal
number, then one suffix — binary SI (Ki … Ei), decimal SI (n u m "" k M G T P E) or a decimal exponent
(e3, E-2). Hand-written rather than taken from the `kubernetes` client because the spec models must stay
importable with pydantic alone (the trainer image does not install the client); the tests check it
against the client's `parse_quantity` on every value both accept.

Beyond the grammar, a CPU or memory request must also make sense for a Ray pod: CPUs in cores or
millicores (not bytes), memory in bytes (not milli-bytes), both positive.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

# One pattern for the spec and the CRD (an int-or-string field's pattern applies to its strings).
QUANTITY_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|([eE][+-]?[0-9]+)|([numkMGTPE]?))$"
_QUANTITY = re.compile(QUANTITY_PATTERN)
_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
# Far beyond any node, far below what makes float arithmetic in the builders overflow.
MAX_CPUS = Decimal(10**6)
MAX_MEMORY_BYTES = Decimal(2**63 - 1)
MAX_LENGTH = 64  # no real quantity is longer; bounds the Decimal work on hostile input
MAX_EXPONENT = 100  # 1e100 bytes or cores is already absurd; Decimal overflows far beyond
MIN_CPU = Decimal("0.001")
# Exact arithmetic: at most 64 input digits times 1024^6 fits in 100 significant digits.
_EXACT = Context(prec=100)  # 1m: Kubernetes rounds anything smaller up to it


def _show(text: str) -> str:
    """The value for an error message, cut short: a message must not echo megabytes of input."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def parse_quantity(text: str) -> Decimal:
    """The exact value of a quantity string; ValueError when Kubernetes would refuse it."""
    match = _QUANTITY.fullmatch(text) if len(text) <= MAX_LENGTH else None
    if not match:
        raise ValueError(f"{_show(text)} is not a Kubernetes quantity (examples: 2, '500m', '4Gi', '1e3')")
    number = Decimal(text[: match.start(3)])
    suffix = match.group(3)
    if suffix in _BINARY:
        return _EXACT.multiply(number, Decimal(1024) ** _BINARY[suffix])
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        exponent = int(suffix[1:])
        if abs(exponent) > MAX_EXPONENT:
            raise ValueError(f"{_show(text)} is out of range (exponent beyond ±{MAX_EXPONENT})")
        return number.scaleb(exponent, context=_EXACT)
    return number.scaleb(_DECIMAL[suffix], context=_EXACT)


def _as_text(v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError("a resource quantity must be a number or a string like '500m' or '4Gi'")
    return v if isinstance(v, str) else str(v)


def check_cpu(v: object) -> str:
    """A CPU request: positive cores ("2", "0.5") or millicores ("500m"); kept as the user wrote it."""
    text = _as_text(v)
    value = parse_quantity(text)
    if text.endswith("i"):  # a binary suffix, the only one ending in "i"
        raise ValueError(
            f"{_show(text)} is in bytes; a CPU quantity counts cores ('2', '0.5') or millicores ('500m')"
        )
    if value < MIN_CPU:
        raise ValueError(f"{_show(text)} must be at least 1m (one thousandth of a core)")
    if value > MAX_CPUS:
        raise ValueError(f"{_show(text)} is more than {MAX_CPUS} cores")
    return text


def check_memory(v: object) -> str:
    """A memory request: positive bytes ("4Gi", "512Mi", "1e9"); kept as the user wrote it."""
    text = _as_text(v)
    value = parse_quantity(text)
    if text.endswith("m"):
        raise ValueError(f"{_show(text)} is in milli-bytes; write mebibytes as 'Mi' (e.g. '512Mi')")
    if value < 1:
        raise ValueError(f"{_show(text)} must be at least one byte")
    if value > MAX_MEMORY_BYTES:
        raise ValueError(f"{_show(text)} is more than 2^63-1 bytes")
    return text


def cpu_cores(quantity: str) -> float:
    """A validated CPU quantity as a number of cores ("500m" -> 0.5, "1e3" -> 1000)."""
    return float(parse_quantity(quantity))


# In the CRD a quantity is int-or-string, as in core/v1 (a float such as 0.5 must be quoted there).
_SCHEMA = WithJsonSchema(
    {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
        "pattern": QUANTITY_PATTERN,
    }
)
CpuQuantity = Annotated[str, BeforeValidator(check_cpu), _SCHEMA]
MemoryQuantity = Annotated[str, BeforeValidator(check_memory), _SCHEMA]
