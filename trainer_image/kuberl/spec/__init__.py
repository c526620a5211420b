"""The RLTrainingJob contract: pydantic models shared by the trainer and the operator.

Importing this package never imports torch or ray (the operator depends on it).
"""

from kuberl.spec.algorithms import (
    ALGORITHMS,
    CONFIG_MODELS,
    AlgorithmConfigBase,
    ModelConfig,
    PPOConfig,
    capabilities,
)
from kuberl.spec.capabilities import FEATURES, Capabilities
from kuberl.spec.cluster import ClusterSpec, HeadGroupSpec, Toleration, WorkerGroupSpec
from kuberl.spec.common import CheckpointSpec, EvaluationSpec, MetricsSpec, ResourcesSpec, SecretRef, StopSpec
from kuberl.spec.errors import SpecError, from_validation_error
from kuberl.spec.job import (
    API_VERSION,
    CATEGORIES,
    GROUP,
    KIND,
    PHASES,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    Condition,
    ObjectMeta,
    RLTrainingJob,
    RLTrainingJobSpec,
    RLTrainingJobStatus,
)
from kuberl.spec.load import apply_overrides, load_job, parse_job, parse_spec, read_document

__all__ = [
    "ALGORITHMS",
    "API_VERSION",
    "CATEGORIES",
    "CONFIG_MODELS",
    "FEATURES",
    "GROUP",
    "KIND",
    "PHASES",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "AlgorithmConfigBase",
    "Capabilities",
    "CheckpointSpec",
    "ClusterSpec",
    "Condition",
    "EvaluationSpec",
    "HeadGroupSpec",
    "MetricsSpec",
    "ModelConfig",
    "ObjectMeta",
    "PPOConfig",
    "RLTrainingJob",
    "RLTrainingJobSpec",
    "RLTrainingJobStatus",
    "ResourcesSpec",
    "SecretRef",
    "SpecError",
    "StopSpec",
    "Toleration",
    "WorkerGroupSpec",
    "apply_overrides",
    "capabilities",
    "from_validation_error",
    "load_job",
    "parse_job",
    "parse_spec",
    "read_document",
]
