"""The policy server's episode bookkeeping (kuberl.external.episodes): pure, no HTTP, no torch."""

from __future__ import annotations

import numpy as np
import pytest

from kuberl.core.returns import gae
from kuberl.core.sample_batch import Columns
from kuberl.external.episodes import EpisodeBook, EpisodeError, fragments_to_columns


def o(x: float) -> np.ndarray:
    return np.array([x, 0.0], dtype=np.float32)


def act(book: EpisodeBook, eid: str, x: float, *, now: float = 0.0, logp: float | None = -0.5) -> None:
    dist = np.zeros(2, np.float32) if logp is not None else None
    book.act(eid, obs=o(x), action=np.asarray(1), logp=logp, dist_inputs=dist, now=now)


def test_steps_complete_when_the_next_observation_arrives() -> None:
    book = EpisodeBook()
    eid = book.start(None, training_enabled=True, now=0.0)
    act(book, eid, 0)
    book.log_returns(eid, 0.5, now=0)
    book.log_returns(eid, 0.5, now=0)  # several calls add up
    assert book.ready_steps == 0  # the reward may still grow until the next observation
    act(book, eid, 1)
    book.log_returns(eid, 2.0, now=0)
    assert book.ready_steps == 1
    assert book.end(eid, obs=o(2), truncated=False, now=0) == (3.0, 2)
    taken = book.take_batch()
    assert taken.episode_returns == [3.0]
    assert taken.episode_lengths == [2]
    [frag] = taken.fragments
    assert [s.reward for s in frag.steps] == [1.0, 2.0]
    assert [float(s.next_obs[0]) for s in frag.steps] == [1.0, 2.0]  # type: ignore[index]
    assert [(s.terminated, s.truncated) for s in frag.steps] == [(False, False), (True, False)]
    assert eid not in book.open


def test_running_episode_is_cut_at_the_batch_boundary_and_bootstraps_from_its_next_observation() -> None:
    book = EpisodeBook()
    eid = book.start("sim-1", training_enabled=True, now=0)
    for t in range(4):
        act(book, eid, t)
        book.log_returns(eid, 1.0, now=0)
    # Steps 0-2 are complete; step 3 waits for its next observation.
    first = book.take_batch()
    cols = fragments_to_columns(first.fragments, dist_dim=2)
    assert cols[Columns.REWARDS].shape == (3, 1)
    assert cols[Columns.TRUNCATEDS][:, 0].tolist() == [False, False, True]  # cut: truncated
    assert not cols[Columns.TERMINATEDS].any()
    assert cols[Columns.NEXT_OBS][-1, 0, 0] == 3.0  # V(next obs) bootstraps the cut
    assert first.episode_returns == []  # the episode is not over
    # GAE stops at the cut and bootstraps there: with V ≡ 0 except V(next obs at the cut) = 10.
    values = np.zeros((3, 1), np.float32)
    next_values = np.array([[0.0], [0.0], [10.0]], np.float32)
    adv, _ = gae(
        cols[Columns.REWARDS],
        values,
        next_values,
        cols[Columns.TERMINATEDS],
        cols[Columns.TRUNCATEDS],
        gamma=0.5,
        lambda_=1.0,
    )
    assert adv[:, 0].tolist() == pytest.approx([1 + 0.5 + 0.25 * (1 + 5), 1 + 0.5 * (1 + 5), 1 + 5])
    # The episode goes on: its next fragment starts with step 3.
    book.end(eid, obs=o(9), truncated=True, now=0)
    second = book.take_batch()
    [frag] = second.fragments
    assert len(frag.steps) == 1
    assert float(frag.steps[0].obs[0]) == 3.0
    assert (frag.steps[0].terminated, frag.steps[0].truncated) == (False, True)  # time limit: bootstrapped
    assert second.episode_returns == [4.0]
    assert second.episode_lengths == [4]


def test_fragments_of_many_episodes_lie_end_to_end_in_one_lane() -> None:
    book = EpisodeBook()
    a = book.start("a", training_enabled=True, now=0)
    b = book.start("b", training_enabled=True, now=0)
    act(book, a, 0)
    act(book, b, 100)
    act(book, a, 1)
    book.end(a, obs=o(2), truncated=False, now=0)
    act(book, b, 101)
    act(book, b, 102)
    cols = fragments_to_columns(book.take_batch().fragments, dist_dim=2)
    assert cols[Columns.OBS][:, 0, 0].tolist() == [0, 1, 100, 101]
    assert cols[Columns.TERMINATEDS][:, 0].tolist() == [False, True, False, False]
    assert cols[Columns.TRUNCATEDS][:, 0].tolist() == [False, False, False, True]


def test_a_vanished_client_loses_nothing_it_sent() -> None:
    book = EpisodeBook()
    eid = book.start(None, training_enabled=True, now=0)
    act(book, eid, 0, now=1)
    book.log_returns(eid, 1.0, now=1)
    act(book, eid, 1, now=2)
    book.log_returns(eid, 7.0, now=2)  # the last message before the client disappeared
    assert book.expire(now=30, idle_timeout=60) == []
    assert book.expire(now=63, idle_timeout=60) == [eid]
    assert eid not in book.open
    assert book.abandoned_total == 1
    taken = book.take_batch()
    [frag] = taken.fragments
    assert [s.reward for s in frag.steps] == [1.0, 7.0]  # both rewards, the pending step's included
    last = frag.steps[-1]
    assert (last.terminated, last.truncated, last.next_obs) == (False, True, None)
    cols = fragments_to_columns(taken.fragments, dist_dim=2)
    assert cols[Columns.NEXT_OBS][-1, 0, 0] == 1.0  # no next observation: V(obs) stands in
    assert taken.episode_returns == []  # it never finished: not an episode return
    with pytest.raises(EpisodeError) as err:
        book.log_returns(eid, 1.0, now=64)
    assert err.value.status == 404


def test_training_disabled_episodes_are_not_trained_on() -> None:
    book = EpisodeBook()
    eid = book.start(None, training_enabled=False, now=0)
    act(book, eid, 0)
    book.log_returns(eid, 1.0, now=0)
    act(book, eid, 1)
    assert book.end(eid, obs=o(2), truncated=False, now=0) == (1.0, 2)
    assert book.ready_steps == 0
    taken = book.take_batch()
    assert taken.fragments == []
    assert taken.episode_returns == []


def test_client_chosen_actions_are_marked_for_the_trainer_to_score() -> None:
    book = EpisodeBook()
    eid = book.start(None, training_enabled=True, now=0)
    act(book, eid, 0, logp=None)
    act(book, eid, 1, logp=-0.1)
    book.end(eid, obs=o(2), truncated=False, now=0)
    cols = fragments_to_columns(book.take_batch().fragments, dist_dim=2)
    assert cols["needs_logp"][:, 0].tolist() == [True, False]
    assert cols[Columns.ACTION_LOGP][:, 0].tolist() == pytest.approx([0.0, -0.1])


def test_state_errors_carry_their_http_status() -> None:
    book = EpisodeBook(max_open_episodes=1)
    book.start("x", training_enabled=True, now=0)
    with pytest.raises(EpisodeError) as dup:
        book.start("x", training_enabled=True, now=0)
    assert dup.value.status == 409
    with pytest.raises(EpisodeError) as full:
        book.start("y", training_enabled=True, now=0)
    assert full.value.status == 429
    with pytest.raises(EpisodeError) as unknown:
        act(book, "nope", 0)
    assert unknown.value.status == 404
    # A reward before the first action counts towards the return, not towards any step.
    book.log_returns("x", 2.0, now=0)
    assert book.end("x", obs=o(0), truncated=False, now=0) == (2.0, 0)
    assert book.take_batch().fragments == []


def test_recording_parts_keep_episodes_whole_across_cuts() -> None:
    from kuberl.external.recording import episode_parts

    book = EpisodeBook()
    a = book.start("a", training_enabled=True, now=0)
    b = book.start("b", training_enabled=True, now=0)
    for x in range(3):
        act(book, a, x)
        book.log_returns(a, 1.0, now=0)
    act(book, b, 10, logp=None)  # client-chosen: no behaviour log-prob
    book.end(b, obs=o(11), truncated=True, now=0)
    taken = book.take_batch()  # "a" is cut after 2 completed steps; "b" ended
    assert [(f.episode_id, f.cut) for f in taken.fragments] == [("b", False), ("a", True)]
    cols = fragments_to_columns(taken.fragments, dist_dim=2)
    parts = episode_parts(taken.fragments, cols)
    assert [(p.episode_id, p.ends) for p in parts] == [("b", True), ("a", False)]
    pb, pa = parts
    assert pb.columns[Columns.TRUNCATEDS][:, 0].tolist() == [True]  # a real end stays marked
    assert np.isnan(pb.columns[Columns.ACTION_LOGP][0, 0])  # unknown behaviour policy
    # The training batch marks the cut truncated (GAE bootstraps there); the recording does not.
    assert cols[Columns.TRUNCATEDS][:, 0].tolist() == [True, False, True]
    assert pa.columns[Columns.TRUNCATEDS][:, 0].tolist() == [False, False]
    assert pa.columns[Columns.ACTION_LOGP][:, 0].tolist() == [-0.5, -0.5]
    assert pa.columns[Columns.NEXT_OBS][:, 0, 0].tolist() == [1.0, 2.0]
