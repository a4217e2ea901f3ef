"""Run the real ``__main__.py`` under Pulumi mocks for a stack file and record everything.

Each run gets a fresh event loop and fresh mocks: sharing them between runs is the
known source of flaky Pulumi Python tests (pulumi/pulumi#24338, #7663).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "__main__.py"
STACKS = ROOT / "stacks"


def stack_config(stack: str) -> dict[str, Any]:
    """The ``config:`` mapping of ``stacks/Pulumi.<stack>.yaml``."""
    document = yaml.safe_load((STACKS / f"Pulumi.{stack}.yaml").read_text())
    return dict(document.get("config") or {})


def example_stacks(role: str) -> list[str]:
    names = [p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS.glob("*.yaml")]
    return sorted(n for n in names if stack_config(n).get("ops-nats:role") == role)


_PASSWORD_SERIAL = itertools.count()  # distinct fake passwords across runs (hub vs edge)
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value


def reveal(value: Any) -> Any:
    """The value with every secret wrapper removed (what the resource will receive)."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


@dataclass
class Recorded:
    type: str
    name: str
    raw_inputs: dict[str, Any]  # secrets still wrapped

    @property
    def inputs(self) -> dict[str, Any]:
        return reveal(self.raw_inputs)


@dataclass
class StackOutput:
    value: Any
    secret: bool


@dataclass
class ProgramRun:
    resources: list[Recorded]
    outputs: dict[str, StackOutput]
    passwords: list[str] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> Recorded:
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
        return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs as outputs; give each RandomPassword a recognisable fake value."""

    def __init__(self, hub_outputs: dict[str, Any] | None, hub_secret_outputs: list[str]) -> None:
        self.resources: list[Recorded] = []
        self.passwords: list[str] = []
        self.hub_outputs = hub_outputs or {}
        self.hub_secret_outputs = hub_secret_outputs

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = f"FAKEPW{next(_PASSWORD_SERIAL):04d}x{args.name.replace('-', '')}"
            self.passwords.append(outputs["result"])
        if args.typ == "pulumi:pulumi:StackReference":
            outputs = {
                "name": args.inputs.get("name"),
                "outputs": self.hub_outputs,
                "secretOutputNames": self.hub_secret_outputs,
            }
        if args.typ == "kubernetes:core/v1:Namespace":
            outputs.setdefault("metadata", {}).setdefault("name", args.name)
        return f"{args.name}_id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


def _flat_config(config: dict[str, Any]) -> dict[str, str]:
    # Pulumi hands structured config values to the program as JSON text.
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


def run_program(
    stack: str,
    config: dict[str, Any] | None = None,
    *,
    hub_outputs: dict[str, Any] | None = None,
    hub_secret_outputs: list[str] | None = None,
) -> ProgramRun:
    """Run ``__main__.py`` as stack ``stack`` (config from its stack file unless given)."""
    loop = asyncio.new_event_loop()
    # A failing program's error reaches the caller through run_pulumi_func; the copies
    # Pulumi leaves in other futures would only be logged again at garbage collection.
    loop.set_exception_handler(lambda _loop, _context: None)
    asyncio.set_event_loop(loop)
    mocks = RecordingMocks(hub_outputs, hub_secret_outputs or [])
    pulumi.runtime.set_all_config(
        _flat_config(config if config is not None else stack_config(stack))
    )
    runtime_settings.ROOT.set(None)  # else the previous run's stack outputs linger
    pulumi.runtime.set_mocks(mocks, project="ops-nats", stack=stack, preview=False)
    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()
    resolved: dict[str, StackOutput] = {}

    async def resolve(outputs: dict[str, Any]) -> None:
        for key, value in outputs.items():
            output = pulumi.Output.from_input(value)
            resolved[key] = StackOutput(await output.future(), await output.is_secret())

    def program() -> None:
        runpy.run_path(str(MAIN), run_name="__main__")
        root = runtime_settings.get_root_resource()
        _sync_await(resolve(dict(root.outputs)))  # type: ignore[union-attr]

    try:
        _sync_await(run_pulumi_func(program))
    finally:
        # A failed program leaves registrations pending; end them on this loop, not later.
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        asyncio.set_event_loop(None)
    return ProgramRun(mocks.resources, resolved, mocks.passwords)


def hub_stack_outputs(run: ProgramRun) -> tuple[dict[str, Any], list[str]]:
    """A hub run's outputs as a StackReference to it would see them."""
    values = {k: o.value for k, o in run.outputs.items()}
    return values, [k for k, o in run.outputs.items() if o.secret]
