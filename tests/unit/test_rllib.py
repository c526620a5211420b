"""RLlib tuned-example files and `rllib train` habits (kuberl.spec.rllib, docs/rllib.md): every example in
examples/rllib/ converts into a valid job with the values RLlib's keys mean; refused keys are named with
the reason; the docs' mapping table is the module's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberl.spec import SpecError, load_job, parse_job
from kuberl.spec.load import load_document
from kuberl.spec.rllib import convert_document, is_rllib_experiment, mapping_markdown

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "rllib").glob("*.yaml"))


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else getattr(obj, part)
    return obj


# (example, {attribute path on the parsed spec: the value the RLlib key asks for}).
EXPECTED: dict[str, dict[str, Any]] = {
    "cartpole-ppo.yaml": {
        "algorithm": "PPO",
        "stop.episode_return_mean": 150,
        "stop.timesteps": 100000,
        "resources.env_runners": 1,
        "resources.envs_per_runner": 4,
        "config.minibatch_size": 128,  # sgd_minibatch_size
        "config.num_epochs": 6,  # num_sgd_iter
        "config.observation_filter": "MeanStdFilter",
        "config.model.fcnet_hiddens": [32],
        "config.model.vf_share_layers": True,
        "evaluation.interval": 5,
        "evaluation.episodes": 5,
        "evaluation.explore": False,
    },
    "cartpole-ppo-new-stack.yaml": {
        "resources.env_runners": 0,  # num_env_runners
        "resources.envs_per_runner": 8,  # num_envs_per_env_runner
        "resources.learners": 1,  # num_learners: 0 (the learner in the driver)
        "config.train_batch_size": 2048,  # train_batch_size_per_learner × 1
        "config.num_epochs": 10,
        "config.lambda_": 0.95,
        "stop.episode_return_mean": 450,  # env_runners/episode_return_mean
        "stop.timesteps": 200000,  # num_env_steps_sampled_lifetime
        "evaluation.timesteps": 1000,  # evaluation_duration_unit: timesteps
        "checkpoint.every_iterations": 10,
        "checkpoint.keep": 2,
    },
    "pendulum-ppo.yaml": {
        "env": "Pendulum-v1",
        "seed": 1,
        "config.lambda_": 0.1,
        "config.vf_clip_param": 10.0,
        "config.kl_coeff": 0.2,
        "config.model.fcnet_activation": "relu",
    },
    "cartpole-ppo-lstm.yaml": {
        "stop.iterations": 200,  # training_iteration
        "config.model.use_lstm": True,
        "config.model.lstm_cell_size": 32,
        "config.model.lstm_use_prev_action": True,
    },
    "cartpole-dqn.yaml": {
        "algorithm": "DQN",
        "config.n_step": 3,
        "config.buffer_size": 50000,  # replay_buffer_config.capacity
        "config.prioritized_replay": True,  # MultiAgentPrioritizedReplayBuffer
        "config.prioritized_replay_alpha": 0.6,
        "config.epsilon": [(0, 1.0), (10000, 0.02)],  # exploration_config: EpsilonGreedy
        "config.num_steps_sampled_before_learning_starts": 1000,
        "config.target_network_update_freq": 500,
    },
    "pendulum-sac.yaml": {
        "algorithm": "SAC",
        "config.replay_buffer_config.type": "PrioritizedReplayBuffer",
        "config.replay_buffer_config.capacity": 100000,
        "config.actor_lr": 0.0003,  # optimization.actor_learning_rate
        "config.alpha_lr": 0.0003,  # optimization.entropy_learning_rate
        "config.model.fcnet_hiddens": [256, 256],  # q_model_config == policy_model_config
        "config.target_entropy": "auto",
    },
    "cartpole-impala.yaml": {
        "algorithm": "IMPALA",
        "config.rollout_fragment_length": 50,
        "config.train_batch_size": 500,
        "config.grad_clip": 40.0,
        "resources.gpus_per_learner": 0,  # num_gpus
    },
    "cartpole-appo.yaml": {"algorithm": "APPO", "config.use_kl_loss": True, "config.clip_param": 0.3},
    "cartpole-a2c.yaml": {"algorithm": "A2C", "config.train_batch_size": 160, "config.use_gae": True},
    "pendulum-td3.yaml": {
        "algorithm": "TD3",
        "config.exploration_config.type": "GaussianNoise",
        "config.exploration_config.stddev": 0.1,
        "config.replay_buffer_config.type": "ReplayBuffer",  # MultiAgentReplayBuffer
    },
    "pendulum-ddpg.yaml": {
        "algorithm": "DDPG",
        "config.exploration_config.type": "OrnsteinUhlenbeckNoise",
        "config.exploration_config.final_scale": 0.02,
        "config.replay_buffer_config.capacity": 10000,
    },
}


def test_every_example_is_checked() -> None:
    assert len(EXAMPLES) >= 10
    assert {p.name for p in EXAMPLES} == set(EXPECTED)
    algorithms = {yaml.safe_load(p.read_text()).popitem()[1]["run"] for p in EXAMPLES}
    assert algorithms >= {"PPO", "DQN", "SAC", "IMPALA", "APPO", "A2C"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_converts_to_the_values_its_keys_mean(name: str) -> None:
    path = ROOT / "examples" / "rllib" / name
    assert is_rllib_experiment(yaml.safe_load(path.read_text()))
    job = load_job(path)  # what `kuberl run` reads: detected by shape, converted, validated
    assert job.metadata.name == path.stem
    for attr, value in EXPECTED[name].items():
        assert _get(job.spec, attr) == value, f"{name}: {attr}"


def _convert(config: dict[str, Any], *, run: str = "PPO", stop: dict[str, Any] | None = None) -> Any:
    doc, warnings = convert_document(
        {"exp": {"env": "CartPole-v1", "run": run, "stop": stop or {}, "config": config}}
    )
    return parse_job(doc), warnings


@pytest.mark.parametrize(
    ("run", "config", "key", "reason"),
    [
        ("PPO", {"framework": "tf"}, "exp.config.framework", "kuberl is PyTorch-only"),
        ("PPO", {"framework": "tf2"}, "exp.config.framework", "kuberl is PyTorch-only"),
        ("PPO", {"batch_mode": "complete_episodes"}, "exp.config.batch_mode", "truncate_episodes"),
        ("PPO", {"model": {"use_attention": True}}, "exp.config.model", "use_attention"),
        ("PPO", {"model": {"framestack": True}}, "exp.config.model", "FrameStackObservation"),
        ("PPO", {"lr": {"grid_search": [0.1, 0.01]}}, "exp.config.lr", "spec.tune"),
        ("PPO", {"no_such_key": 1}, "exp.config.no_such_key", "not a setting kuberl's PPO has"),
        ("PPO", {"buffer_size": 1000}, "exp.config.buffer_size", "not a setting kuberl's PPO has"),
        ("PPO", {"explore": False}, "exp.config.explore", "evaluation_config"),
        ("PPO", {"evaluation_duration": "auto"}, "exp.config.evaluation_duration", "give a number"),
        (
            "PPO",
            {"evaluation_parallel_to_training": "yes"},
            "exp.config.evaluation_parallel_to_training",
            "true or false",
        ),
        ("PPO", {"evaluation_config": {"lr": 0.1}}, "exp.config.evaluation_config", "explore and env_config"),
        ("PPO", {"horizon": 200}, "exp.config.horizon", "max_episode_steps"),
        ("PPO", {"num_gpus_per_env_runner": 1}, "exp.config.num_gpus_per_env_runner", "CPU"),
        ("PPO", {"exploration_config": {"type": "EpsilonGreedy"}}, "exp.config.exploration_config", "PPO"),
        ("PPO", {"num_atoms": 51}, "exp.config.num_atoms", "not a setting kuberl's PPO has"),
        ("DQN", {"hiddens": [256]}, "exp.config.hiddens", "fcnet_hiddens"),
        (
            "DQN",
            {"replay_buffer_config": {"type": "ReservoirReplayBuffer"}},
            "exp.config.replay_buffer_config",
            "type",
        ),
        ("IMPALA", {"vtrace": False}, "exp.config.vtrace", "V-trace"),
        (
            "TD3",
            {"exploration_config": {"type": "GaussianNoise", "random_timesteps": 1000}},
            "exp.config.exploration_config",
            "random_warmup",
        ),
    ],
)
def test_refused_keys_name_the_key_and_why(run: str, config: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(SpecError) as err:
        _convert(config, run=run)
    line = next((ln for ln in str(err.value).splitlines() if key in ln), "")
    assert reason in line, str(err.value)


def test_rainbow_keys_reach_dqn_config() -> None:
    rainbow = {"num_atoms": 51, "v_min": -5.0, "v_max": 5.0, "noisy": True, "sigma0": 0.4}
    job, warnings = _convert(rainbow, run="DQN")
    cfg = job.spec.config
    assert (cfg.num_atoms, cfg.v_min, cfg.v_max, cfg.noisy, cfg.sigma0) == (51, -5.0, 5.0, True, 0.4)
    assert warnings == []


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as err:
        _convert({"framework": "tf", "horizon": 100}, stop={"episode_len_mean": 100})
    text = str(err.value)
    for key in ("exp.config.framework", "exp.config.horizon", "exp.stop.episode_len_mean"):
        assert key in text, text


def test_keys_without_effect_are_accepted_with_a_warning() -> None:
    job, warnings = _convert({"log_level": "INFO", "num_cpus_for_main_process": 2, "framework": "torch"})
    assert job.spec.algorithm == "PPO"
    assert [w.split(":")[0] for w in warnings] == [
        "exp.config.log_level",
        "exp.config.num_cpus_for_main_process",
    ]


def test_experiment_shape_errors() -> None:
    two = {"a": {"run": "PPO", "env": "CartPole-v1"}, "b": {"run": "DQN", "env": "CartPole-v1"}}
    with pytest.raises(SpecError, match="2 experiments"):
        convert_document(two)
    with pytest.raises(SpecError, match=r"exp\.run: 'NOPE' is not a kuberl algorithm"):
        convert_document({"exp": {"run": "NOPE", "env": "CartPole-v1"}})
    with pytest.raises(SpecError, match=r"exp\.num_samples: 4: repeated trials are spec.tune"):
        convert_document({"exp": {"run": "PPO", "env": "CartPole-v1", "num_samples": 4}})
    with pytest.raises(SpecError, match=r"exp\.env: missing"):
        convert_document({"exp": {"run": "PPO"}})
    doc, _ = convert_document(
        {"Exp_Name": {"run": "ppo", "config": {"env": "CartPole-v1"}, "local_dir": "/tmp/r"}}
    )
    job = parse_job(doc)
    assert (job.metadata.name, job.spec.algorithm, job.spec.run_dir) == ("exp-name", "PPO", "/tmp/r/Exp_Name")


def test_callbacks_pass_through_as_an_import_path() -> None:
    job, _ = _convert({"callbacks": "examples.callbacks:Counter"})
    assert job.spec.config.callbacks == "examples.callbacks:Counter"


def test_learners_and_per_learner_batch() -> None:
    job, _ = _convert({"num_learners": 2, "train_batch_size_per_learner": 1000, "minibatch_size": 100})
    assert (job.spec.resources.learners, job.spec.config.train_batch_size) == (2, 2000)


@pytest.mark.parametrize("key", ["episode_reward_mean", "episodeRewardMean"])
def test_old_stop_name_in_job_files(key: str) -> None:
    doc = {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "x"},
        "spec": {"algorithm": "PPO", "env": "CartPole-v1", "stop": {key: 150}},
    }
    job = parse_job(doc)
    assert job.spec.stop.episode_return_mean == 150
    assert "episodeRewardMean" not in job.spec.stop.to_wire()
    doc["spec"]["stop"]["episodeReturnMean"] = 100  # type: ignore[index]
    with pytest.raises(SpecError, match="name the same criterion"):
        parse_job(doc)


def test_job_files_are_not_converted(tmp_path: Path) -> None:
    path = ROOT / "examples" / "ppo-job.yaml"
    assert not is_rllib_experiment(yaml.safe_load(path.read_text()))
    assert load_document(path) == yaml.safe_load(path.read_text())


def test_parallel_evaluation() -> None:
    job, _ = _convert({"evaluation_interval": 2, "evaluation_parallel_to_training": True})
    assert (job.spec.evaluation.interval, job.spec.evaluation.parallel_to_training) == (2, True)
    doc = yaml.safe_load((ROOT / "examples" / "ma-coop-ppo.yaml").read_text())
    doc["spec"]["evaluation"] = {"interval": 1, "parallelToTraining": True}
    with pytest.raises(
        SpecError, match=r"evaluation\.parallelToTraining: multiAgent evaluation runs in the driver"
    ):
        parse_job(doc)


@pytest.mark.parametrize("key", ["evaluation_num_env_runners", "evaluation_num_workers"])
def test_evaluation_runners(key: str) -> None:
    job, warnings = _convert({"num_env_runners": 2, key: 3, "evaluation_interval": 1})
    assert job.spec.evaluation.num_env_runners == 3
    assert not [w for w in warnings if key in w]
    # num_env_runners: 0 runs without Ray in kuberl: the evaluation stays in the driver.
    job, _ = _convert({"num_env_runners": 0, key: 1, "evaluation_interval": 1})
    assert job.spec.evaluation.num_env_runners == 0
    with pytest.raises(SpecError, match=rf"exp\.config\.{key}: -1 is not a whole number"):
        _convert({key: -1})


def test_multi_agent_refuses_evaluation_by_timesteps() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "ma-coop-ppo.yaml").read_text())
    doc["spec"]["evaluation"] = {"interval": 1, "timesteps": 100}
    with pytest.raises(SpecError, match=r"evaluation\.timesteps: multiAgent evaluation plays whole episodes"):
        parse_job(doc)


def test_docs_table_is_the_module() -> None:
    page = (ROOT / "docs" / "rllib.md").read_text()
    match = re.search(r"<!-- BEGIN mapping.*?-->\n(.*?)<!-- END mapping -->", page, re.S)
    assert match, "docs/rllib.md lost its generated mapping section"
    assert match.group(1) == mapping_markdown(), "docs/rllib.md is stale: python -m kuberl.spec.rllib"
