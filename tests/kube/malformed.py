"""Malformed RLTrainingJobs, generated systematically from one valid job: wrong types, unknown fields,
bad enums, out-of-range numbers, missing required fields, bad cross-field combinations and bad
algorithm config keys. Each case names the field that its error must name.

`SERVER_CASES` are refused by the API server itself (schema, strict field validation, CEL), so
`kubectl apply` fails at once; `OPERATOR_CASES` are what a structural schema cannot express
(the values in `spec.config`, checked against the algorithm's own model, and rules that need the
models' logic): the server stores them and the operator marks the job Failed with a Valid=False
condition whose message starts with the field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

_DROP = object()


@dataclass(frozen=True)
class Case:
    id: str
    changes: dict[str, Any]  # dotted path (from the document root) → new value, or _DROP to remove it
    field: str  # the path the error must name

    def document(self, name: str) -> dict[str, Any]:
        doc = base_job(name)
        for path, value in self.changes.items():
            *parents, last = path.split(".")
            node = doc
            for part in parents:
                node = node.setdefault(part, {})
            if value is _DROP:
                node.pop(last, None)
            else:
                node[last] = value
        return doc


def base_job(name: str) -> dict[str, Any]:
    """A valid job (accepted by the server and the operator); every case changes one thing."""
    return copy.deepcopy(
        {
            "apiVersion": "kuberl.io/v1alpha1",
            "kind": "RLTrainingJob",
            "metadata": {"name": name},
            "spec": {
                "algorithm": "PPO",
                "env": "CartPole-v1",
                "config": {"train_batch_size": 512, "minibatch_size": 128},
                "stop": {"timesteps": 10000},
                "resources": {"envRunners": 1, "envsPerRunner": 4},
                "backoffLimit": 0,
            },
        }
    )


def _c(id: str, field: str, **changes: Any) -> Case:
    return Case(id=id, changes={k.replace("__", "."): v for k, v in changes.items()}, field=field)


SERVER_CASES: list[Case] = [
    # wrong types
    _c("type-algorithm", "spec.algorithm", spec__algorithm=5),
    _c("type-env", "spec.env", spec__env=["CartPole-v1"]),
    _c("type-seed", "spec.seed", spec__seed="zero"),
    _c("type-envrunners", "spec.resources.envRunners", spec__resources__envRunners="two"),
    _c("type-cpus-per-runner", "spec.resources.cpusPerRunner", spec__resources__cpusPerRunner="one"),
    _c("type-timesteps-float", "spec.stop.timesteps", spec__stop__timesteps=1.5),
    _c("type-suspend", "spec.suspend", spec__suspend="yes"),
    _c("type-backofflimit", "spec.backoffLimit", spec__backoffLimit="3"),
    _c("type-checkpoint", "spec.checkpoint", spec__checkpoint="s3://bucket/x"),
    _c("type-envconfig", "spec.envConfig", spec__envConfig=[1, 2]),
    _c("type-tolerations", "spec.cluster.tolerations", spec__cluster__tolerations={"key": "gpu"}),
    _c("type-nodeselector-value", "spec.cluster.nodeSelector", spec__cluster__nodeSelector={"pool": 1}),
    _c("type-config", "spec.config", spec__config=["lr", 0.1]),
    # unknown fields (refused under strict field validation, pruned otherwise)
    _c("unknown-spec", "spec.learningRate", spec__learningRate=0.1),
    _c("unknown-resources", "spec.resources.gpus", spec__resources__gpus=1),
    _c("unknown-checkpoint", "spec.checkpoint.url", spec__checkpoint={"url": "s3://my-bucket/x"}),
    _c("unknown-cluster-head", "spec.cluster.head.cpus", spec__cluster__head={"cpus": "2"}),
    _c("unknown-stop", "spec.stop.maxSteps", spec__stop__maxSteps=10),
    _c("unknown-toplevel", "specs", specs={"algorithm": "PPO"}),
    # bad enums
    _c("enum-algorithm", "spec.algorithm", spec__algorithm="PPO2"),
    _c("enum-pull-policy", "spec.cluster.imagePullPolicy", spec__cluster__imagePullPolicy="Sometimes"),
    _c(
        "enum-toleration-operator",
        "spec.cluster.tolerations[0].operator",
        spec__cluster__tolerations=[{"key": "gpu", "operator": "Maybe"}],
    ),
    _c(
        "enum-output-compression",
        "spec.output.compression",
        spec__output={"uri": "s3://my-bucket/out", "compression": "rar"},
    ),
    _c("enum-local-mode", "spec.resources.localMode", spec__resources__localMode="ray"),
    # out of range
    _c("range-envrunners", "spec.resources.envRunners", spec__resources__envRunners=-1),
    _c("range-envs-per-runner", "spec.resources.envsPerRunner", spec__resources__envsPerRunner=0),
    _c("range-cpus-per-runner", "spec.resources.cpusPerRunner", spec__resources__cpusPerRunner=0),
    _c("range-gpus", "spec.resources.gpusPerLearner", spec__resources__gpusPerLearner=-0.5),
    _c("range-backofflimit", "spec.backoffLimit", spec__backoffLimit=-1),
    _c("range-deadline", "spec.activeDeadlineSeconds", spec__activeDeadlineSeconds=0),
    _c("range-seed", "spec.seed", spec__seed=-1),
    _c("range-iterations", "spec.stop.iterations", spec__stop__iterations=0),
    _c("range-name-length", "metadata.name", metadata__name="a" * 41),
    _c("range-name-not-dns-label", "metadata.name", metadata__name="ppo.cartpole"),
    # missing required fields
    _c("missing-algorithm", "spec.algorithm", spec__algorithm=_DROP),
    _c("missing-env", "spec.env", spec__env=_DROP),
    _c("missing-spec", "spec", spec=_DROP),
    # cross-field combinations (CEL)
    _c("combo-bc-without-input", "spec.input", spec__algorithm="BC", spec__config={}),
    _c("combo-ppo-with-input", "spec.input", spec__input={"uris": ["s3://my-bucket/data"]}),
    _c(
        "combo-cql-with-output",
        "spec.output",
        spec__algorithm="CQL",
        spec__config={},
        spec__input={"uris": ["s3://my-bucket/data"]},
        spec__output={"uri": "s3://my-bucket/out"},
    ),
    _c(
        "combo-es-with-output",
        "spec.output",
        spec__algorithm="ES",
        spec__config={},
        spec__output={"uri": "s3://my-bucket/out"},
    ),
    _c(
        "combo-multiagent-impala",
        "spec.multiAgent",
        spec__algorithm="IMPALA",
        spec__config={},
        spec__env="pettingzoo.mpe:simple_spread_v3",
        spec__multiAgent={},
    ),
    _c(
        "combo-driver-many-runners",
        "spec.resources.localMode",
        spec__resources={"envRunners": 3, "localMode": "driver"},
    ),
    _c(
        "combo-multiagent-external",
        "spec.external.enabled",
        spec__env="pettingzoo.mpe:simple_spread_v3",
        spec__multiAgent={},
        spec__external={"enabled": True},
    ),
    # config keys the built-in algorithm's model does not take (kuberl.spec.crd.config_key_validation):
    # one that another algorithm takes is named; one no algorithm takes is invisible to CEL.
    _c("config-other-algorithms-key", "config.buffer_size", spec__config={"buffer_size": 10000}),
    _c(
        "config-unknown-key",
        "spec.config",
        spec__config={"train_batch_size": 512, "learning_rate": 0.1},
    ),
]

OPERATOR_CASES: list[Case] = [
    # bad algorithm config values (the server checks config's keys, the operator their values)
    _c("config-type", "spec.config.lr", spec__config={"lr": "fast"}),
    _c("config-range", "spec.config.num_epochs", spec__config={"num_epochs": 0}),
    _c(
        "config-minibatch-over-batch",
        "spec.config",
        spec__config={"train_batch_size": 256, "minibatch_size": 1024},
    ),
    # rules that need the models' logic
    _c("env-id", "spec.env", spec__env="not a valid id!"),
    _c("resume-value", "spec.resume", spec__resume="sometimes"),
    _c("metrics-port-on-ray-gcs", "spec.metrics.port", spec__metrics={"port": 6379}),
    _c("policy-server-on-metrics-port", "spec.external.port", spec__external={"enabled": True, "port": 8080}),
    _c(
        "learners-unsupported",
        "spec.resources.learners",
        spec__algorithm="APPO",
        spec__config={},
        spec__resources={"learners": 2},
    ),
    _c("learner-pods-with-one-learner", "spec.cluster.learners", spec__cluster={"learners": {"cpu": "2"}}),
]
