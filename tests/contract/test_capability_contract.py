"""The capability contract (issue #12 §3): for every algorithm × feature, validation accepts the job
**iff** a tiny run of it succeeds.

The two sides:
- *accepted*: what `kuberl run` checks before it writes anything (exit 2 otherwise): the spec's
  validation (`parse_job`, the same code `kuberl render` and the operator run) and, for action-space
  kinds, preflight's check of the env's spaces (the only part that needs the env built; the operator
  cannot see an env's spaces, so it leaves that check to the pod).
- *works*: one training iteration, in-process (`trainer.run_job`, in-driver sampling) — or, for a
  sample, `kuberl run` as a subprocess.

An accepted job must train. A refused one is run with every capability rule lifted (the algorithm
claims every feature, and the cross-field rules of kuberl.spec.combinations are switched off), and must
then fail: a refusal of something that works is a mismatch, unless UNSOUND says why the run, though
it ends, does not do what the job asks (it silently ignores the feature).

Cost: CI runs the deterministic subset CI_SUBSET (every algorithm plain, every feature on the algorithms
it is most likely to break, refused ones included; 42 in-process runs, ~51 s here (reward_norm on PPO, DQN
and IMPALA added 1.1 s, 2026-12-04), plus PPO on two DDP
learners: one Ray start, 51 s at load 21 on this 2-core machine; DQN on two learners joins that Ray:
18 + 47 s for the two at load 7, 2026-12-03) plus two `kuberl run` subprocesses
(~40 s) and one server-side dry run of every combination (~7 s); `KUBERL_CONTRACT=full` runs the whole
cross product: learners > 1 on every algorithm, the offline algorithms on recorded data.
"""

from __future__ import annotations

import _thread
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberl import PolicyClient
from kuberl.spec import ALGORITHMS, SpecError, parse_job
from kuberl.spec.algorithms import CONFIG_MODELS, capabilities
from kuberl.spec.capabilities import ALL_SPACES
from tests.cli import kuberl
from tests.fixtures.kube import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CAPS = capabilities()
FULL = os.environ.get("KUBERL_CONTRACT") == "full"

MA_ENV = "kuberl.multi_agent.envs:coop_match"
# A tiny run takes 0.1-9 s here; one that has not ended after this long waits for experience forever.
HANG_S = 60.0
# Each action-space kind's env: Gymnasium's for Discrete and Box, tests/contract/action_envs.py for the rest.
ACTION_ENVS = {
    "discrete": "CartPole-v1",
    "box": "Pendulum-v1",
    "multi_discrete": "tests.contract.action_envs:multi_discrete",
    "multi_binary": "tests.contract.action_envs:multi_binary",
    "tuple": "tests.contract.action_envs:tuple_space",
    "dict": "tests.contract.action_envs:dict_space",
}
# The spec edit that turns each other feature on.
FEATURE_EDITS: dict[str, dict[str, Any]] = {
    "lstm": {"config": {"model": {"useLstm": True}}},
    "filter": {"config": {"observationFilter": "MeanStdFilter"}},
    "reward_norm": {"config": {"normalizeRewards": True}},
    "output": {"output": {"uri": "{run_dir}/recorded"}},
    "input": {"input": {"uris": ["{data}"]}},
    "multi_agent": {"multiAgent": {}},
    "external": {"external": {"enabled": True, "insecure": True, "port": 0}},
    "learners": {"resources": {"learners": 2}},
}
FEATURES = [*ACTION_ENVS, *FEATURE_EDITS]

# normalizeRewards with the rules lifted: the env runners scale the rewards, but these training steps do not
# learn from them as they are sampled (kuberl.spec.combinations.capability_problems says so in one line).
REWARD_NORM_IGNORED: dict[str, str] = {
    **{
        a: "keeps the scaled rewards in its replay buffer, each at the scale of when it was sampled, while "
        "the statistics keep moving: its targets would mix reward scales"
        for a in ("DQN", "APEX", "SAC", "TD3", "DDPG", "APEX_DDPG")
    },
    **{
        a: "trains on recorded experience and never samples the env: it would ignore the flag"
        for a in ("BC", "MARWIL", "CQL")
    },
    **{
        a: "ranks perturbed policies by their raw episode returns: it would ignore the flag"
        for a in ("ES", "ARS")
    },
    **{
        a: "broadcasts no reward statistics to its asynchronous runners, so each would scale by the few steps "
        "since its last weights, not by the statistics it checkpoints"
        for a in ("IMPALA", "APPO")
    },
    "A3C": "computes gradients in its runners on rewards scaled by statistics reset with every request, and "
    "never merges them: the statistics it checkpoints would stay empty",
}

# Refused although a run with the rules lifted ends without an error: the run would not do what the job
# asks. Each entry says what it would silently do instead; these are the spec being right. (The trainer
# itself refuses spec.input, spec.output, MeanStdFilter and model.useLstm where its training step would
# ignore them or get them wrong — kuberl.algorithms.base.Algorithm.check_experience_features — so those
# lifted runs fail and need no entry here. Its normalizeRewards rule is the capability's, lifted here, hence
# REWARD_NORM_IGNORED.)
UNSOUND: dict[tuple[str, str], str] = {
    **{
        (a, "multi_agent"): f"{a} trains every agent of spec.env jointly: as a multiAgent policy's algorithm "
        "it would ignore the policies and their mapping"
        for a in ALGORITHMS
        if CAPS[a].joint_agents
    },
    **{(a, "reward_norm"): f"{a} {why}" for a, why in REWARD_NORM_IGNORED.items()},
}

# CI's share: every algorithm that samples an env plain (its default env's kind), and every feature on
# a few algorithms that accept it and a few that refuse it, data-parallel learners on PPO and on DQN (one
# Ray start: the second run joins it; DQN's replayed minibatches, priorities and target updates through
# the group) and an offline algorithm asked to record (refused by the trainer before its input is read).
# Only in the full run: the offline algorithms training on recorded data (Ray Data reads their input:
# 40-200 s a run on a loaded 2-core machine) and learners > 1 on every other algorithm.
OFFLINE = {a for a in ALGORITHMS if CAPS[a].offline_input}
CI_SUBSET: set[tuple[str, str]] = {
    *(
        (a, "discrete" if "discrete" in CAPS[a].action_spaces else "box")
        for a in ALGORITHMS
        if a not in OFFLINE
    ),
    ("PPO", "box"),
    ("DQN", "box"),
    ("DDPG", "discrete"),
    ("APEX_DDPG", "discrete"),
    ("APEX_DDPG", "filter"),
    ("PPO", "multi_discrete"),
    ("DQN", "multi_discrete"),
    ("PPO", "multi_binary"),
    ("PPO", "tuple"),
    ("PPO", "dict"),
    ("ES", "multi_discrete"),
    ("ES", "dict"),
    ("PPO", "lstm"),
    ("DQN", "lstm"),
    ("A2C", "filter"),
    ("PPO", "reward_norm"),
    ("DQN", "reward_norm"),
    ("IMPALA", "reward_norm"),
    ("SAC", "filter"),
    ("PPO", "output"),
    ("DQN", "output"),
    ("ES", "output"),
    ("PPO", "input"),
    ("PPO", "multi_agent"),
    ("DQN", "multi_agent"),
    ("IMPALA", "multi_agent"),
    ("A2C", "external"),
    ("DQN", "external"),
    ("SAC", "external"),
    ("CQL", "output"),
    ("PPO", "learners"),
    ("DQN", "learners"),
}
# Data recorded for the offline algorithms, by action-space kind (CI trains none of them on data).
RECORDED_KINDS = ("discrete", "box") if FULL else ()


def default_kind(algorithm: str) -> str:
    return "discrete" if "discrete" in CAPS[algorithm].action_spaces else "box"


def document(algorithm: str, feature: str, run_dir: Path, data: dict[str, Path]) -> dict[str, Any]:
    """The smallest job of `algorithm` with `feature` on: one iteration, in the driver, no metrics port."""
    kind = feature if feature in ACTION_ENVS else default_kind(algorithm)
    spec: dict[str, Any] = {
        "algorithm": algorithm,
        "env": ACTION_ENVS[kind],
        "runDir": str(run_dir),
        "seed": 0,
        "stop": {"timesteps": 1},
        "metrics": {"enabled": False},
        "resources": {"envRunners": 0, "envsPerRunner": 2},
        "config": dict(SMALL.get(algorithm, {})),
    }
    if CAPS[algorithm].offline_input and kind in data:
        spec["input"] = {"uris": [str(data[kind])]}
    edit = FEATURE_EDITS.get(feature, {})
    for key, value in edit.items():
        text = (
            yaml.safe_dump(value)
            .replace("{run_dir}", str(run_dir))
            .replace("{data}", str(data.get(kind, "")))
        )
        value = yaml.safe_load(text)
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    if feature == "multi_agent":
        spec["env"] = MA_ENV
        spec["envConfig"] = {"agents": 2, "max_steps": 10, "continuous": kind == "box"}
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "contract"},
        "spec": spec,
    }


# The replay algorithms learn from the first sample on: no learning-starts or random warm-up (their defaults,
# 500-50,000 env steps, outlast the one iteration, and a run that never takes a gradient step cannot show
# that the learner works with the feature), on small replayed minibatches.
REPLAY_NOW = {"num_steps_sampled_before_learning_starts": 0, "train_batch_size": 32}
# Iterations small enough for a 2-core CI machine (the defaults of PPO and the offline ones are larger).
# The off-policy actor-critics take one gradient step per env step: 8-step fragments on the 2 envs (16).
# APEX and APEX_DDPG: an iteration lasts until 1,000 env steps arrived by default; 32 here.
SMALL: dict[str, dict[str, Any]] = {
    "PPO": {"train_batch_size": 128, "minibatch_size": 64, "num_epochs": 1},
    "A2C": {"train_batch_size": 64},
    "BC": {"updates_per_iteration": 2},
    "MARWIL": {"updates_per_iteration": 2},
    "CQL": {"updates_per_iteration": 2},
    "DQN": REPLAY_NOW,
    "QMIX": REPLAY_NOW,
    "VDN": REPLAY_NOW,
    **{a: {**REPLAY_NOW, "rollout_fragment_length": 8} for a in ("SAC", "TD3", "DDPG")},
    **{a: {**REPLAY_NOW, "min_sample_timesteps_per_iteration": 32} for a in ("APEX", "APEX_DDPG")},
}


def refusal(doc: dict[str, Any]) -> dict[str, str]:
    """What `kuberl run` refuses before writing anything: the spec, then the env's action spaces."""
    from kuberl.core.env_factory import EnvError, check_env
    from kuberl.core.multi_agent.env import probe_spaces
    from kuberl.preflight import check_action_spaces

    try:
        job = parse_job(doc)
        if job.spec.config.capabilities.joint_agents:  # QMIX, VDN: the trainer's preflight probes this way
            from kuberl.core.multi_agent.joint import probe_joint

            spaces = [a for _, a in probe_joint(job.spec.env, job.spec.env_config)]
        elif job.spec.multi_agent is not None:
            spaces = [a for _, a in probe_spaces(job.spec.env, job.spec.env_config).values()]
        else:
            spaces = [check_env(job.spec.env, job.spec.env_config)[1]]
        check_action_spaces(job, spaces)
    except EnvError as exc:  # as the trainer's preflight reports it
        return {"spec.env": str(exc)}
    except SpecError as err:
        return dict(err.problems)
    return {}


def train(doc: dict[str, Any]) -> str | None:
    """One tiny run in-process; None if it ended with a result, else the error. External jobs get a
    simulator client (a thread with kuberl's PolicyClient) once the policy server is up."""
    from kuberl.trainer import run_job

    stop = threading.Event()
    clients: list[threading.Thread] = []
    hung: list[str] = []
    stop_watchdogs: list[threading.Timer] = []

    def on_start(algo: Any) -> None:
        def give_up() -> None:
            """A run that has not ended (it waits for experience nothing sends, or spins) has failed:
            cut its waits short, then stop it as a second Ctrl-C would (the trainer's GracefulStop)."""
            hung.append(f"the run had not ended after {HANG_S} s")
            algo.interrupt()
            for _ in range(2):
                if stop.wait(5):
                    return
                _thread.interrupt_main()

        watchdog = threading.Timer(HANG_S, give_up)
        watchdog.daemon = True
        watchdog.start()
        stop_watchdogs.append(watchdog)
        url = getattr(getattr(algo, "runners", None), "url", None)
        if url is None:
            return

        def simulate() -> None:
            import gymnasium as gym

            env = gym.make(doc["spec"]["env"])
            with PolicyClient(url, token=None) as client:
                while not stop.is_set():
                    obs, _ = env.reset()
                    episode = client.start_episode()
                    term = trunc = False
                    while not (term or trunc) and not stop.is_set():
                        obs, reward, term, trunc, _ = env.step(client.get_action(episode, obs))
                        client.log_returns(episode, float(reward))
                    client.end_episode(episode, obs, truncated=trunc and not term)

        thread = threading.Thread(target=simulate, daemon=True)
        thread.start()
        clients.append(thread)

    try:
        outcome = run_job(parse_job(doc), on_start=on_start)
    except Exception as exc:  # the finding itself: any failure of the run is reported, not raised
        return hung[0] if hung else f"{type(exc).__name__}: {exc}"[:400]
    except KeyboardInterrupt:
        if not hung:
            raise
        return hung[0]
    finally:
        stop.set()
        for watchdog in stop_watchdogs:
            watchdog.cancel()
        for thread in clients:
            thread.join(timeout=10)
    if hung:
        return hung[0]
    if outcome.result is None or outcome.last_checkpoint is None:
        return f"ended without a result or checkpoint ({outcome.stopped_by})"
    if not outcome.result.get("num_env_steps_trained_lifetime"):
        # A run that never reached its learner has not shown that the learner works with the feature.
        return "ended without a learner update (num_env_steps_trained_lifetime is 0)"
    return None


@contextmanager
def rules_lifted(algorithm: str) -> Iterator[None]:
    """Every capability flag on for `algorithm` (its kind of masking and of input kept), and the
    cross-field rules off: what the trainer does with a job nothing refused."""
    import kuberl.spec.combinations as combinations

    config = CONFIG_MODELS[algorithm]
    caps = config.capabilities
    claimed = replace(
        caps,
        action_spaces=ALL_SPACES,
        external=True,
        multi_agent=True,
        recurrent=True,
        observation_filter=True,
        reward_normalization=True,
        offline_output=True,
        multi_learner=True,
    )
    saved = combinations.combination_problems
    type.__setattr__(config, "capabilities", claimed)
    combinations.combination_problems = lambda spec: []  # type: ignore[assignment]  # lifted, restored below
    try:
        yield
    finally:
        type.__setattr__(config, "capabilities", caps)
        combinations.combination_problems = saved


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Recorded experience for the offline algorithms, one data set per action-space kind they take,
    written by a tiny run with `spec.output` (that run is itself the output feature working); the kinds
    not recorded get paths only (a refused `input` is never read)."""
    root = tmp_path_factory.mktemp("contract-data")
    recorded = {kind: root / kind / "data" for kind in ACTION_ENVS}
    for kind, algorithm in (("discrete", "PPO"), ("box", "SAC")):
        if kind not in RECORDED_KINDS:
            continue
        doc = document(algorithm, kind, root / kind, {})
        doc["spec"]["output"] = {"uri": str(root / kind / "data")}
        doc["spec"]["stop"] = {"timesteps": 400}
        assert train(doc) is None
        recorded[kind] = root / kind / "data"
    return recorded


def combinations_to_check() -> list[Any]:
    params = []
    for algorithm in ALGORITHMS:
        for feature in FEATURES:
            ci = (algorithm, feature) in CI_SUBSET
            params.append(
                pytest.param(
                    algorithm,
                    feature,
                    id=f"{algorithm}-{feature}",
                    marks=()
                    if ci or FULL
                    else pytest.mark.skip(reason="full run only: KUBERL_CONTRACT=full"),
                )
            )
    return params


@pytest.mark.parametrize(("algorithm", "feature"), combinations_to_check())
def test_accepted_iff_a_tiny_run_succeeds(
    algorithm: str, feature: str, tmp_path: Path, data: dict[str, Path]
) -> None:
    doc = document(algorithm, feature, tmp_path / "run", data)
    problems = refusal(doc)
    if not problems:
        error = train(doc)
        assert error is None, f"{algorithm} with {feature}: accepted, but the run failed: {error}"
        return
    with rules_lifted(algorithm):
        still = refusal(doc)
        error = train(doc) if not still else "; ".join(f"{k}: {v}" for k, v in still.items())
    if error is None:
        assert (algorithm, feature) in UNSOUND, (
            f"{algorithm} with {feature}: refused ({problems}), yet it trains with the rules lifted"
        )


@pytest.mark.parametrize(
    ("algorithm", "feature"),
    [("PPO", "lstm"), ("DQN", "external")],
    ids=["accepted", "refused"],
)
def test_kuberl_run_agrees(algorithm: str, feature: str, tmp_path: Path) -> None:
    """The same verdict through the CLI users (and the operator's pod) run: exit 0 and a checkpoint for
    an accepted job, exit 2 naming the field and nothing written for a refused one."""
    doc = document(algorithm, feature, tmp_path / "run", {})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    problems = refusal(doc)
    proc = kuberl("run", str(path), cwd=tmp_path)
    if not problems:
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert list((tmp_path / "run").rglob("manifest.json")), "no checkpoint written"
    else:
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        assert any(field in proc.stderr for field in problems), (problems, proc.stderr[-1000:])
        assert not (tmp_path / "run").exists(), "a refused job wrote its run directory"


@pytest.mark.kube
def test_the_servers_cel_rules_refuse_only_what_the_spec_refuses(
    kube: ControlPlane, kuberl_crds: list[str], kube_namespace: str, tmp_path: Path
) -> None:
    """`kubectl apply` (the CRD's CEL rules, a cheap subset of the spec's) never refuses a combination
    that validation accepts, and names the same field when it refuses. Every combination, by server-side
    dry run against the real kube-apiserver (about 0.2 s for all of them)."""
    data = {kind: tmp_path / kind for kind in ACTION_ENVS}
    path = kube.client.path("rltrainingjobs", kube_namespace) + "?fieldValidation=Strict&dryRun=All"
    refused_by_server = 0
    for algorithm in ALGORITHMS:
        for feature in FEATURES:
            doc = document(algorithm, feature, tmp_path / "run", data)
            doc["metadata"]["name"] = f"{algorithm}-{feature}".lower().replace("_", "-")
            code, obj = kube.client.request("POST", path, doc)
            try:
                parse_job(doc)
                problems: dict[str, str] = {}
            except SpecError as err:
                problems = dict(err.problems)
            if code == 201:
                continue
            refused_by_server += 1
            assert code == 422, (algorithm, feature, code, obj)
            fields = {c.get("field") for c in obj["details"]["causes"]}
            assert problems, (
                f"{algorithm} with {feature}: the server refuses ({obj['message']}), the spec accepts"
            )
            assert fields & set(problems), (algorithm, feature, fields, problems)
    assert refused_by_server, "no combination reached a CEL rule: the check would prove nothing"
