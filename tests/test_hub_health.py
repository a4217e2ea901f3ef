"""Which hub server local mode restarts: a lone straggler, never a cluster without quorum."""

from __future__ import annotations

from sandbox.hub_health import ServerView, Stragglers, server_problem

STUCK = "JetStream is not current with the meta leader"
OK = {"status": "ok"}
# The meta leader nats-2's /jsz view, as nats-server 2.10 reports it (active in ns).
LEADER = {
    "leader": "nats-2",
    "cluster_size": 3,
    "replicas": [
        {"name": "nats-0", "current": True, "active": 693_547_485},
        {"name": "nats-1", "current": True, "active": 8_699_512_895},
    ],
}


def view(name, *, health=OK, routes=2, meta=None, streams=()):
    jsz = {
        "meta_cluster": meta if meta is not None else {"leader": "nats-2", "cluster_size": 3},
        "account_details": [{"name": "APP", "stream_detail": list(streams)}],
    }
    return ServerView(name=name, health=health, routes=routes, jsz=jsz)


# ---------------------------------------------------------------- what makes a server unready


def test_a_server_current_with_a_leader_it_answers_is_ready():
    stream = {"name": "ops", "cluster": {"leader": "nats-0"}}
    assert server_problem(view("nats-0", streams=[stream]), 3, LEADER) == ""


def test_a_server_that_does_not_answer_or_fails_healthz_is_unready():
    assert server_problem(view("nats-0", health=None), 3, LEADER) == (
        "monitoring port not answering"
    )
    unhealthy = {"status": "unavailable", "error": STUCK}
    assert server_problem(view("nats-0", health=unhealthy), 3, LEADER) == STUCK


def test_a_server_missing_a_route_or_a_meta_leader_is_unready():
    assert server_problem(view("nats-0", routes=1), 3, LEADER) == "1 of 2 cluster routes"
    no_leader = view("nats-0", meta={"cluster_size": 2})
    assert server_problem(no_leader, 3, None) == ("no meta leader known (meta group of 2 of 3)")


def test_a_follower_the_meta_leader_has_not_heard_from_is_unready():
    # healthz alone still says ok for a follower whose raft loop hangs.
    assert server_problem(view("nats-1"), 3, LEADER) == (
        "the meta leader has not heard from it for 9s"
    )


def test_a_server_outside_the_meta_group_is_unready():
    two = {"leader": "nats-2", "replicas": [{"name": "nats-1", "active": 1}]}
    assert server_problem(view("nats-0"), 3, two) == (
        "outside the JetStream meta group ['nats-1', 'nats-2']"
    )


def test_a_server_holding_a_stream_without_a_leader_is_unready():
    electing = {"name": "ops", "cluster": {"raft_group": "S-R3F-x", "replicas": []}}
    assert server_problem(view("nats-0", streams=[electing]), 3, LEADER) == (
        "no leader yet for stream APP > ops"
    )


def test_a_single_server_hub_needs_no_routes_or_meta_group():
    assert server_problem(view("nats-0", routes=0, meta={}), 1, None) == ""


# ---------------------------------------------------------------- which servers are restarted


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
