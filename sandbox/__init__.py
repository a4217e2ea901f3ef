"""Local mode: the stack files in ``stacks/`` as real nats-server processes on 127.0.0.1.

The configs come from the same value builders the chart gets (``components.chart_values``)
through a mirror of chart 1.2.4's config templates, the streams from the same stream code
(``components.stream_config`` + ``components.jetstream``). Nothing here imports Pulumi.

Modules, each with one job (pure ones first):

- ``server_config``  chart values -> nats.conf dict/text; loopback rewrite (pure)
- ``stacks``         stack files -> validated ``StackSet`` (one hub, unique edges)
- ``plan``           ``StackSet`` -> ``Plan``: server names, ports, dirs, configs (pure)
- ``state``          state dir: passwords in 0600 files, ``state.json`` with pids
- ``processes``      nats-server binary, free/busy ports, start/stop by pid
- ``monitor``        HTTP monitoring reads (/healthz, /leafz, /jsz...)
- ``hub_health``     is the hub ready; which lone straggler to restart (judging pure)
- ``topology``       ``Topology``: boot, attach, stop/start servers, targets, streams
- ``events``         publish, live subscribe, count events in a stream, system pings
- ``verify``         the runbook's daily checks as a ``VerifyReport``
- ``cli``/``output`` ``python -m sandbox`` and its tables

Typical use from other commands (``outage``, ``bench``)::

    from sandbox.stacks import load_stacks
    from sandbox.topology import Topology
    from sandbox import events

    topo = Topology.boot(load_stacks(Path("stacks")), Path(".sandbox"))  # or .attach()
    topo.stop_hub(); ...; topo.start_hub()
    target = topo.hub_target("app")
    async with events.connected(target) as hub:
        counts = await events.wait_for_ids(hub, target, "ops", "ops.edge-a.x", ids, start,
                                           timeout=30)
    topo.down()
"""
