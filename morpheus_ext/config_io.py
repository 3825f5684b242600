"""Loading YAML configs into pydantic models, every problem one line (no training imports).

Torch-free, so the lean serving image (``secureai run``, ``secureai serve-api``) can load its
configs; :mod:`pipelines.config` re-exports everything here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from morpheus_ext.errors import SecureAIError


class StrictModel(BaseModel):
    """The base of every config model: an unknown key is an error, not silently ignored (a typo
    in a YAML file must fail loading with the key's name, never run with a default)."""

    model_config = ConfigDict(extra="forbid")


class ConfigError(SecureAIError, ValueError):
    """A config that cannot be loaded (message is one user-facing line)."""


C = TypeVar("C", bound=BaseModel)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """``line L, column C: <problem>`` of a YAML error (1-based, as editors count).

    >>> try:
    ...     yaml.safe_load("a: 1  # fine")
    ...     yaml.safe_load("a: [1, 2")
    ... except yaml.YAMLError as exc:
    ...     print(yaml_problem(exc)[:45])
    {'a': 1}
    line 1, column 9: not valid YAML (while parsi
    """
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    what = ": ".join(str(x) for x in (context, problem) if x) or str(exc).splitlines()[0]
    if mark is None:
        return f"not valid YAML ({what})"
    return f"line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({what})"


def load_config(path: str | Path, model: type[C]) -> C:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
        config = model.model_validate(doc)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {yaml_problem(exc)}") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {where}: {err['msg']}") from exc
    return config


def dump_config(config: BaseModel, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    return path


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base`` (how experiments and ``--set`` vary
    one config).

    >>> merge_overrides({"train": {"epochs": 100, "lr": 0.002}}, {"train": {"epochs": 5}})
    {'train': {'epochs': 5, 'lr': 0.002}}
    """
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    return out
