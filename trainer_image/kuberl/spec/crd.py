"""The RLTrainingJob CustomResourceDefinition, generated from the pydantic models.

The models are the single source of truth; this module turns their JSON Schema into a *structural*
OpenAPI v3 schema as Kubernetes requires
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):
every `$ref` inlined, `Optional[X]` as `X` + `nullable`, no `anyOf`/`oneOf` type unions, OpenAPI 3.0's
boolean `exclusiveMinimum`, and no `additionalProperties: false` beside `properties` (apiextensions/v1
refuses the pair: unknown fields are pruned by the server, and refused under
`kubectl apply --validate=strict`, without it). The models' defaults are kept as `default:` so that
`kubectl explain` shows them and the server fills them in. `spec.config` is the per-algorithm
discriminated union, which is not structural: the CRD keeps it an open object (a custom algorithm,
`algorithm: pkg.mod:Class` (kuberl.spec.custom), keeps any keys: only the trainer can import its
model) and closes it for the built-in algorithms with one CEL rule (config_key_validation): every
top-level key must be one that algorithm's model accepts, in any spelling pydantic takes (camelCase,
snake_case, RLlib's names). Each spelling of every built-in key is declared as an untyped property,
because the server shows CEL only declared fields (plus the object's size, which counts the rest);
values and nested objects (config.model, …) stay the operator's to validate against the model, which
names the field. Cross-field rules that a CEL expression can say are
repeated as `x-kubernetes-validations`, so `kubectl apply` refuses them at once (the operator still
checks every rule, with the same field names, for `kuberl run` and for what CEL cannot express).

    python -m kuberl.spec.crd > crds/kuberl.io_rltrainingjobs.yaml
"""

from __future__ import annotations

import copy
import re
import sys
from typing import Any

import yaml

from kuberl.spec.algorithms import ALGORITHMS, CONFIG_MODELS
from kuberl.spec.algorithms.base import supporting
from kuberl.spec.base import field_spellings
from kuberl.spec.custom import CUSTOM_ALGORITHM_PATTERN
from kuberl.spec.job import (
    _DNS_LABEL,
    CATEGORIES,
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    RLTrainingJobSpec,
    RLTrainingJobStatus,
)

Schema = dict[str, Any]

# JSON Schema keywords Kubernetes' structural schemas do not accept (or that pydantic adds for humans).
_DROPPED = {"title", "discriminator", "$defs"}
_PRESERVE = "x-kubernetes-preserve-unknown-fields"
# A CEL condition that holds for a custom algorithm (`pkg.mod:Class`): the built-in rules skip it.
_CUSTOM_CEL = f"self.algorithm.matches('{CUSTOM_ALGORITHM_PATTERN}')"
_CEL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# CEL's reserved words (https://github.com/google/cel-spec/blob/master/doc/langdef.md#syntax).
_CEL_RESERVED = frozenset(
    [
        "as",
        "break",
        "const",
        "continue",
        "else",
        "false",
        "for",
        "function",
        "if",
        "import",
        "in",
        "let",
        "loop",
        "package",
        "namespace",
        "null",
        "return",
        "true",
        "var",
        "void",
        "while",
    ]
)


def _config_description() -> str:
    lines = [
        "The algorithm's hyperparameters. Validated by the operator against the model of spec.algorithm "
        "(the Failed phase and the Valid condition name the bad field). A custom algorithm (module:Class) "
        "keeps any keys here: the trainer validates them against its config model when the pod starts. "
        "Algorithms:"
    ]
    for name, model in CONFIG_MODELS.items():
        doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
        lines.append(f"- {name}: {doc}")
    return "\n".join(lines)


def _convert(node: Any, defs: dict[str, Schema]) -> Any:  # noqa: C901 (one case per schema keyword)
    """Recursively turn one pydantic JSON Schema node into a structural OpenAPI v3 node."""
    if isinstance(node, list):
        return [_convert(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        # Inline the definition; the property's own description wins over the model's docstring.
        target = copy.deepcopy(defs[node.pop("$ref").rsplit("/", 1)[-1]])
        node = {**target, **node}
    out: Schema = {}
    any_of = node.pop("anyOf", None)
    if any_of is not None and node.get("x-kubernetes-int-or-string"):
        # The one union structural schemas allow (resource quantities), kept verbatim.
        out["anyOf"] = any_of
    elif any_of is not None:
        non_null = [s for s in any_of if s.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"union {any_of!r} is not structural; give it its own schema")
        merged = {**_convert(non_null[0], defs), **{k: v for k, v in node.items() if k not in _DROPPED}}
        if len(non_null) != len(any_of):
            merged["nullable"] = True
        return _convert(merged, defs)
    for key, value in node.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue  # a null default says "absent", which is what leaving it out says to the server
        if key == "additionalProperties" and value is False:
            continue  # forbidden beside properties; the server prunes (or strictly refuses) unknown fields
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, defs)
        elif key == "additionalProperties" and value is True:
            # A free-form mapping (envConfig, LenientModel extras): structural schemas say it this way.
            out[_PRESERVE] = True
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
            out[key] = value  # already converted (nullable fields pass through here twice)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020 has a number here; OpenAPI 3.0 (Kubernetes) a boolean beside minimum.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "prefixItems":
            raise ValueError("tuples are not structural; keep them inside a preserve-unknown-fields object")
        else:
            out[key] = value
    if "properties" in out and "type" not in out:
        out["type"] = "object"
    return out


# Fields (paths under spec) whose model default the server must not fill in: the operator gives them
# another value when they are absent (cluster.image: the chart's KUBERL_DEFAULT_IMAGE, see
# kuberl_operator.reconcile._job_document), and a server default would make them look set by the user.
OPERATOR_DEFAULTS: tuple[tuple[str, ...], ...] = (("cluster", "image"),)


def _node_at(schema: Schema, path: tuple[str, ...]) -> Schema:
    for name in path:
        schema = schema["properties"][name]
    return schema


def _cel_list(names: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


def spec_validations() -> list[Schema]:
    """CEL rules the API server checks on `spec` (https://kubernetes.io/docs/reference/using-api/cel/):
    the cross-field rules of kuberl.spec.combinations that need no more than field presence and the
    algorithm's name, so `kubectl apply` refuses them at once. Each names its field as the operator does.
    `algorithm` is compared upper-cased because the models accept any case ("ppo")."""
    # From the algorithms' capabilities (kuberl.spec.capabilities), as the pydantic validation reads them.
    offline = supporting("offline_input")
    no_record = [
        n for n, m in CONFIG_MODELS.items() if not m.capabilities.offline_output and n not in offline
    ]
    multi_agent = supporting("multi_agent")
    algo = "self.algorithm.upperAscii()"
    return [
        {
            "rule": f"!({algo} in {_cel_list(offline)}) || has(self.input)",
            "fieldPath": ".input",
            "reason": "FieldValueRequired",
            "message": f"{', '.join(offline)} train from recorded experience: set input.uris",
        },
        {
            "rule": f"!has(self.input) || {algo} in {_cel_list(offline)} || {_CUSTOM_CEL}",
            "fieldPath": ".input",
            "reason": "FieldValueForbidden",
            "message": f"input is read only by {', '.join(offline)}; online algorithms learn from the env",
        },
        {
            "rule": f"!has(self.output) || !({algo} in {_cel_list(offline + no_record)})",
            "fieldPath": ".output",
            "reason": "FieldValueForbidden",
            "message": (
                f"{', '.join(offline + no_record)} record no transitions (offline algorithms never sample the "
                "env; ES and ARS keep only returns): drop output"
            ),
        },
        {
            "rule": f"!has(self.multiAgent) || {algo} in {_cel_list(multi_agent)} || {_CUSTOM_CEL}",
            "fieldPath": ".multiAgent",
            "reason": "FieldValueForbidden",
            "message": f"multiAgent runs with {', '.join(multi_agent)} only",
        },
        {
            "rule": "!has(self.multiAgent) || !has(self.external) || !has(self.external.enabled) "
            "|| !self.external.enabled",
            "fieldPath": ".external.enabled",
            "reason": "FieldValueForbidden",
            "message": "the policy server serves single-agent simulators: drop external or multiAgent",
        },
    ]


def config_keys() -> dict[str, tuple[str, ...]]:
    """Every key each built-in algorithm's config accepts at the top level, in every spelling."""
    return {
        name: tuple(
            key
            for field, spellings in field_spellings(model).items()
            if field not in model.refused_fields
            for key in spellings
        )
        for name, model in CONFIG_MODELS.items()
    }


def config_schema() -> Schema:
    """`spec.config`: open (custom algorithms keep any keys), with every key a built-in algorithm
    accepts declared so that config_key_validation's CEL can see it. The declarations carry no type
    (one key takes different values in different algorithms; the operator checks values) and no
    description (the CRD stays well under the 256 KiB that client-side `kubectl apply` can annotate)."""
    declared = sorted({key for keys in config_keys().values() for key in keys})
    return {
        "type": "object",
        _PRESERVE: True,
        "description": _config_description(),
        "properties": {key: {_PRESERVE: True, "nullable": True} for key in declared},
    }


def _cel_map(mapping: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': {v}" for k, v in mapping.items()) + "}"


def config_key_validation() -> Schema:
    """The rule that closes spec.config for the built-in algorithms: the number of keys (CEL's size()
    counts every key) equals the number of keys present that the algorithm accepts. The message names
    a declared key the algorithm does not take. Kubernetes shows rules neither undeclared keys nor keys
    set to null (only size() counts them), so for those the message says so and lists what the
    algorithm accepts; `kuberl render` and the operator's Valid condition name the key."""
    keys = config_keys()
    declared = sorted({k for ks in keys.values() for k in ks})
    for key in declared:  # has() below selects them as CEL identifiers
        if not _CEL_IDENTIFIER.match(key) or "__" in key or key in _CEL_RESERVED:
            raise ValueError(f"config key {key!r} cannot be named in a CEL rule")
    algo = "self.algorithm.upperAscii()"
    config = "dyn(self.config)"
    allowed = f"{_cel_map({name: _cel_list(ks) for name, ks in keys.items()})}[{algo}]"
    allowed_set = f"{_cel_map({n: _cel_map(dict.fromkeys(ks, 'true')) for n, ks in keys.items()})}[{algo}]"
    # The declared keys present, found with has(): iterating the config instead fails at run time when
    # it holds an undeclared key (and the server then prints `message`, which cannot name the key).
    present = "[" + ", ".join(f"has({config}.{k}) ? '{k}' : ''" for k in declared) + "]"
    foreign = f"{present}.filter(k, k != '' && !(k in {allowed_set}))"
    # One spelling of each field (the camelCase one) for the message.
    accepts = {
        name: ", ".join(
            s[1] if len(s) > 1 else s[0]
            for f, s in field_spellings(model).items()
            if f not in model.refused_fields
        )
        for name, model in CONFIG_MODELS.items()
    }
    return {
        "rule": (
            f"!has(self.config) || !({algo} in {_cel_list(list(keys))}) "
            f"|| size({config}) == {allowed}.filter(k, k in {config}).size()"
        ),
        "fieldPath": ".config",
        "reason": "FieldValueInvalid",
        # What the server says if the expression below cannot be evaluated.
        "message": "config holds a key the algorithm does not accept: `kuberl render JOB.yaml` names it",
        "messageExpression": (
            f"({foreign}.size() > 0 ? 'config.' + {foreign}[0] + ' is not a hyperparameter of ' + {algo} "
            ": 'config has a key that no built-in algorithm takes, or a null value (the API server hides both "
            "from rules: `kuberl render JOB.yaml` names the key; leave a key out for its default)') "
            f"+ '. ' + {algo} + ' accepts: ' + {_cel_map({n: repr(t) for n, t in accepts.items()})}[{algo}]"
        ),
    }


def spec_schema() -> Schema:
    raw = RLTrainingJobSpec.model_json_schema(by_alias=True)
    defs = raw.get("$defs", {})
    raw["properties"]["config"] = config_schema()
    schema = _convert(raw, defs)
    for path in OPERATOR_DEFAULTS:
        _node_at(schema, path).pop("default", None)
    schema["properties"]["algorithm"]["x-kubernetes-validations"] = [
        {
            "rule": f"self.upperAscii() in {_cel_list(ALGORITHMS)} || self.matches('{CUSTOM_ALGORITHM_PATTERN}')",
            "reason": "FieldValueInvalid",  # NotSupported is not among the reasons CEL rules may give
            "message": f"unknown algorithm; choose one of {', '.join(ALGORITHMS)}, or a custom one as module:Class",
        }
    ]
    schema["x-kubernetes-validations"] = [*spec_validations(), config_key_validation()]
    # ResourcesSpec's own cross-field rule (the models say it with the same field name and reason).
    _node_at(schema, ("resources",))["x-kubernetes-validations"] = [
        {
            "rule": "!has(self.localMode) || self.localMode != 'driver' "
            "|| (has(self.envRunners) && self.envRunners <= 1)",
            "fieldPath": ".localMode",
            "reason": "FieldValueInvalid",
            "message": "driver samples with one env runner in the driver process: set envRunners to 0 or 1",
        }
    ]
    return schema


def _without_defaults(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_defaults(n) for n in node]
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    return node


def status_schema() -> Schema:
    raw = RLTrainingJobStatus.model_json_schema(by_alias=True)
    # The status is exactly what the operator wrote: no server defaults there.
    schema = _without_defaults(_convert(raw, raw.get("$defs", {})))
    # The operator may add fields before the models learn them; never let the API server prune them.
    schema[_PRESERVE] = True
    return schema


def open_api_schema() -> Schema:
    return {
        "type": "object",
        "description": "An RL training run: kuberl reconciles it into a KubeRay RayJob running the trainer.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "kuberl.io/v1alpha1"},
            "kind": {"type": "string", "description": "RLTrainingJob"},
            # Only name and generateName may be constrained here. The name prefixes RayJob and pod names.
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "maxLength": MAX_NAME_LENGTH,
                        "pattern": _DNS_LABEL.pattern,
                    }
                },
            },
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }


PRINTER_COLUMNS: list[Schema] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Algorithm", "type": "string", "jsonPath": ".spec.algorithm"},
    {"name": "Env", "type": "string", "jsonPath": ".spec.env"},
    {"name": "Iteration", "type": "integer", "jsonPath": ".status.iteration"},
    {"name": "Return", "type": "number", "jsonPath": ".status.episodeReturnMean"},
    {"name": "Attempt", "type": "integer", "jsonPath": ".status.attempt", "priority": 1},
    {"name": "RayJob", "type": "string", "jsonPath": ".status.rayJobName", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> Schema:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of RLTrainingJob."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "kuberl", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": open_api_schema()},
                }
            ],
        },
    }


HEADER = (
    "# Generated by `python -m kuberl.spec.crd` from the pydantic models in kuberl.spec. Do not edit.\n"
    f"# Algorithms: {', '.join(ALGORITHMS)}\n"
)


def crd_yaml() -> str:
    """The CRD as a YAML document (what `kuberl crd` prints and crds/ holds)."""
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=110, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(crd_yaml())
