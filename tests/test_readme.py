"""The README is the operator's manual: its reference and commands must match the code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from components.settings import StackSettings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def config_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        key = prefix + to_camel(name)
        yield key
        for candidate in (*getattr(field.annotation, "__args__", ()), field.annotation):
            nested = isinstance(candidate, type) and issubclass(candidate, BaseModel)
            if nested and not key.startswith("images."):
                yield from config_keys(candidate, key + ".")


def test_every_config_key_is_in_the_reference_table() -> None:
    documented = set(re.findall(r"^\| `([A-Za-z.]+)` \|", README, flags=re.MULTILINE))
    assert set(config_keys(StackSettings)) - documented == set()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in README


def test_readme_gives_the_real_cluster_path() -> None:
    for step in ("pulumi login", "pulumi stack select", "pulumi up", "--show-secrets"):
        assert step in README
