"""Which hub server local mode restarts: a lone straggler, never a cluster without quorum."""

from __future__ import annotations

from sandbox.hub_health import Stragglers

STUCK = "JetStream is not current with the meta leader"


def test_a_lone_straggler_is_restarted_once_it_has_been_unready_for_the_patience():
    watch = Stragglers(patience=20.0)
    problems = {"nats-0": "", "nats-1": STUCK, "nats-2": ""}
    assert watch.due(problems, now=100.0) == []
    assert watch.due(problems, now=119.9) == []
    assert watch.due(problems, now=120.0) == ["nats-1"]
    # Restarted: its clock starts over.
    assert watch.due(problems, now=121.0) == []


def test_nobody_is_restarted_while_a_majority_is_unready():
    watch = Stragglers(patience=5.0)
    no_quorum = {"nats-0": "", "nats-1": STUCK, "nats-2": "no meta leader known"}
    for now in (0.0, 10.0, 100.0):
        assert watch.due(no_quorum, now) == []
    # Quorum is back: the straggler's clock starts only now.
    one_left = {"nats-0": "", "nats-1": STUCK, "nats-2": ""}
    assert watch.due(one_left, now=101.0) == []
    assert watch.due(one_left, now=106.0) == ["nats-1"]


def test_a_server_that_recovers_on_its_own_is_left_alone():
    watch = Stragglers(patience=5.0)
    watch.due({"nats-0": "", "nats-1": STUCK, "nats-2": ""}, now=0.0)
    watch.due({"nats-0": "", "nats-1": "", "nats-2": ""}, now=3.0)
    assert watch.due({"nats-0": "", "nats-1": STUCK, "nats-2": ""}, now=6.0) == []
    assert watch.due({"nats-0": "", "nats-1": STUCK, "nats-2": ""}, now=11.0) == ["nats-1"]


def test_each_server_is_restarted_at_most_max_restarts_times():
    watch = Stragglers(patience=1.0, max_restarts=2)
    problems = {"nats-0": "", "nats-1": STUCK, "nats-2": ""}
    restarted = [name for now in range(0, 20) for name in watch.due(problems, float(now))]
    assert restarted == ["nats-1", "nats-1"]


def test_a_single_server_hub_is_never_restarted():
    watch = Stragglers(patience=1.0)
    assert [watch.due({"nats-0": STUCK}, float(now)) for now in range(5)] == [[]] * 5
