"""add_policy / remove_policy (RLlib's league API) on the multi-agent algorithm: the new policy acts in
the runners (driver and Ray actors), is frozen or trained as asked, survives a checkpoint, and a policy
the mapping still uses cannot be removed. The docs' league recipe (docs/multi-agent.md) runs here too."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.multi_agent import TWO_POLICIES, build_multi_agent, coop_doc, copy_weights, weights_equal

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT_SEAT = {"agent_0": "learner", "*": "snap"}


def test_frozen_snapshot_plays_trained_policy_learns_and_removal_needs_an_unused_policy(
    tmp_path: Path,
) -> None:
    algo = build_multi_agent(coop_doc(tmp_path, TWO_POLICIES, name="ma-league"))
    try:
        algo.train()
        policy = algo.add_policy("snap", from_policy="learner", policy_mapping=SNAPSHOT_SEAT)
        taken = copy_weights(algo.subs["learner"].get_weights())
        assert policy.policy_id == "snap"
        assert weights_equal(policy.get_weights(), taken)
        fixed_steps = algo.policy_steps["fixed"]
        result = algo.train()
        # It acted for agent_1 in the runners, instead of "fixed", and was not trained.
        assert result["policies"]["snap"]["agent_steps_total"] > 0
        assert result["policies"]["snap"]["trained"] is False
        assert algo.policy_steps["fixed"] == fixed_steps
        assert list(result["learner"]) == ["learner"]
        assert weights_equal(algo.subs["snap"].get_weights(), taken)
        assert not weights_equal(algo.subs["learner"].get_weights(), taken)

        with pytest.raises(ValueError, match=r"policy 'snap' is still mapped to agents agent_1"):
            algo.remove_policy("snap")
        # A trained newcomer: policies_to_train names it.
        algo.add_policy(
            "second",
            weights=taken,
            policy_mapping={"agent_0": "learner", "*": "second"},
            policies_to_train=["learner", "second"],
        )
        algo.remove_policy("snap")  # no agent maps to it any more
        assert "snap" not in algo.subs
        assert "snap" not in algo.ma_config.policies
        result = algo.train()
        assert sorted(result["learner"]) == ["learner", "second"]
        assert not weights_equal(algo.subs["second"].get_weights(), taken)
        assert "snap" not in result["policies"]
    finally:
        algo.stop()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda a: a.add_policy("fixed"), "policy 'fixed' exists already"),
        (lambda a: a.add_policy("a/b"), "policy id 'a/b'"),
        (lambda a: a.add_policy("x", from_policy="nope"), "from_policy='nope'"),
        (lambda a: a.add_policy("x", policy_mapping={"*": "ghost"}), "sends agent 'agent_0' to 'ghost'"),
        (lambda a: a.add_policy("x", policy_mapping={"*": "x"}, mapping_fn="m:f"), "not both"),
        (lambda a: a.add_policy("x", policies_to_train=["ghost"]), "policies_to_train ['ghost']"),
        (lambda a: a.remove_policy("ghost"), "no policy 'ghost'"),
        (lambda a: a.remove_policy("fixed"), "policy 'fixed' is still mapped to agents agent_1"),
    ],
)
def test_refusals_name_the_policy(tmp_path: Path, call: Any, message: str) -> None:
    algo = build_multi_agent(coop_doc(tmp_path, TWO_POLICIES, name="ma-league"))
    try:
        with pytest.raises(ValueError, match=re.escape(message)):
            call(algo)
    finally:
        algo.stop()


def test_checkpoint_round_trip_keeps_the_league(tmp_path: Path) -> None:
    algo = build_multi_agent(coop_doc(tmp_path, TWO_POLICIES, name="ma-league"))
    try:
        algo.add_policy("snap", policy_mapping=SNAPSHOT_SEAT)
        algo.remove_policy("fixed")
        algo.train()
        state = {pid: copy_weights(sub.get_weights()) for pid, sub in algo.subs.items()}
        checkpoint = algo.save()
    finally:
        algo.stop()
    restored = build_multi_agent(coop_doc(tmp_path / "again", TWO_POLICIES, name="ma-league"))
    try:
        restored.restore(checkpoint)
        assert sorted(restored.subs) == ["learner", "snap"]
        assert sorted(restored.ma_config.policies) == ["learner", "snap"]
        assert restored.ma_config.rules == tuple(SNAPSHOT_SEAT.items())
        for pid, weights in state.items():
            assert weights_equal(restored.subs[pid].get_weights(), weights), pid
        result = restored.train()
        assert result["policies"]["snap"]["agent_steps_total"] > 0
    finally:
        restored.stop()


@pytest.mark.usefixtures("ray_session")
def test_added_policy_reaches_ray_runners(tmp_path: Path) -> None:
    algo = build_multi_agent(
        coop_doc(tmp_path, TWO_POLICIES, name="ma-league", resources={"envRunners": 1, "envsPerRunner": 2})
    )
    try:
        algo.add_policy("snap", policy_mapping=SNAPSHOT_SEAT)
        taken = copy_weights(algo.subs["snap"].get_weights())
        result = algo.train()
        assert result["policies"]["snap"]["agent_steps_total"] > 0
        assert weights_equal(algo.subs["snap"].get_weights(), taken)
    finally:
        algo.stop()


def league_recipe() -> str:
    """The python block of docs/multi-agent.md's league section."""
    text = (ROOT / "docs" / "multi-agent.md").read_text()
    section = text.split("## League / self-play snapshots with `add_policy`", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1
    return str(blocks[0])


def test_docs_league_recipe_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Self-play league on tic-tac-toe: train, snapshot the learner via add_policy into player_2's seat,
    train on, checkpoint, restore: the snapshot's weights are the ones taken (the block asserts it)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(league_recipe(), "docs/multi-agent.md", "exec"), namespace)
    assert namespace["result"]["policies"]["main_v1"]["agent_steps_total"] > 0
    assert namespace["result"]["policies"]["main_v1"]["trained"] is False
    learner = namespace["algo"].subs["main"].get_weights()
    assert not weights_equal(learner, namespace["snapshot"]), "the learner trained on after the snapshot"
    assert "main_v1" not in namespace["restored"].subs
