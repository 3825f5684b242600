"""Feature specs: which columns of an event become which slots of the 256-dim EVENT_TENSOR.

A spec is a small YAML file (see ``morpheus_ext/specs/``) validated by pydantic. Resolving it
against the tensor width gives a :class:`TensorLayout` — an ordered list of fields, each owning a
contiguous slice of the tensor. The layout, not the YAML text, is what the models are trained on,
so the spec *hash* is computed from the resolved layout: two YAML files that resolve to the same
layout share a hash, and any change that moves a slot changes it. Every served model version
records the hash it was trained with, and serving refuses a mismatch.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import ConfigDict, Field, field_validator

from morpheus_ext.config_io import StrictModel
from morpheus_ext.errors import SecureAIError

TENSOR_WIDTH = 256
SPECS_DIR = Path(__file__).parent / "specs"
TIME_FEATURE_DIMS: dict[str, int] = {"hour": 2, "weekday": 2}
"""Time features are cyclic (sin, cos) so 23:00 and 01:00 are close."""


class SpecError(SecureAIError, ValueError):
    """A feature spec that cannot be loaded or resolved (message is user-facing)."""


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoricalField(_Strict):
    """A categorical column hashed into ``buckets`` one-hot slots (auto-sized when omitted)."""

    name: str
    buckets: int | None = Field(default=None, ge=2)
    required: bool = True


class NumericField(_Strict):
    """A numeric column; ``log1p`` is sign(x)*log1p(|x|): it tames heavy tails (bytes, counts)."""

    name: str
    transform: Literal["log1p", "identity"] = "log1p"
    required: bool = True


class LabelSpec(_Strict):
    """Where the ground truth lives; never a feature. ``normal`` lists the values meaning benign."""

    column: str
    normal: list[str | int] = Field(default_factory=lambda: list[str | int]([0, "normal"]))


class FeatureSpec(_Strict):
    """The YAML document. Lists may hold glob patterns: ``"*"`` means every declared column
    not used elsewhere (needs ``columns``, e.g. for headerless CSV files such as NSL-KDD)."""

    name: str
    version: int = Field(ge=1)
    description: str = ""
    columns: list[str] | None = None
    event_id: str | None = None
    timestamp: str | None = None
    entity: list[str] = Field(default_factory=list)
    label: LabelSpec | None = None
    exclude: list[str] = Field(default_factory=list)
    required: list[str] = Field(default_factory=list)
    time_features: list[Literal["hour", "weekday"]] = Field(default_factory=list)
    numeric: list[str | NumericField] = Field(default_factory=list)
    categorical: list[str | CategoricalField] = Field(default_factory=list)
    tensor_width: int = Field(default=TENSOR_WIDTH, ge=8, le=65536)
    """Width of the EVENT_TENSOR (256 by default); a wide file (more features than that) needs
    a wider tensor: the models, the ONNX graphs and the Triton configs all follow it."""

    @field_validator("time_features")
    @classmethod
    def _unique_time(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("time_features must not repeat")
        return v

    @cached_property
    def layout(self) -> TensorLayout:
        return resolve_layout(self)

    @property
    def spec_hash(self) -> str:
        return self.layout.spec_hash

    @property
    def label_column(self) -> str | None:
        return self.label.column if self.label else None


class FieldSlot(_Strict):
    """One field of the layout: a contiguous slice ``[offset, offset + width)`` of the tensor."""

    name: str
    kind: Literal["numeric", "time", "categorical"]
    offset: int
    width: int
    required: bool = True
    transform: str | None = None

    @property
    def stop(self) -> int:
        return self.offset + self.width


class TensorLayout(_Strict):
    """The resolved, hashable layout. Slots after the last field (if any) are zero padding."""

    spec_name: str
    spec_version: int
    width: int
    timestamp: str | None
    fields: list[FieldSlot]

    @cached_property
    def spec_hash(self) -> str:
        """sha256 of the canonical layout JSON (cached: the model is frozen, and records,
        baselines and checks ask for it every batch)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def used_width(self) -> int:
        return self.fields[-1].stop if self.fields else 0

    def field_index(self) -> list[int]:
        """For each tensor slot, the index of its field (-1 for padding)."""
        owner = [-1] * self.width
        for i, f in enumerate(self.fields):
            owner[f.offset : f.stop] = [i] * f.width
        return owner


def _expand(items: list[str], available: list[str] | None, taken: set[str], what: str) -> list[str]:
    names: list[str] = []
    for item in items:
        if any(ch in item for ch in "*?["):
            if available is None:
                raise SpecError(
                    f"{what}: pattern {item!r} needs the spec's `columns` list (the file's "
                    "column names; `secureai spec draft FILE` writes them from its header)"
                )
            names += [c for c in available if fnmatch.fnmatch(c, item) and c not in taken]
        else:
            names.append(item)
        taken.update(names)
    return names


def resolve_layout(spec: FeatureSpec) -> TensorLayout:
    """Assign tensor slots: numeric (1 each), time (2 each), then categorical buckets.

    Categoricals without an explicit ``buckets`` share the dims left over equally, so the whole
    tensor is used and a field's slice is never split (reasons map a slot back to one field).
    """
    reserved = {spec.event_id, spec.timestamp, spec.label_column, *spec.exclude, *spec.entity}
    taken: set[str] = {r for r in reserved if r}
    # Explicit names are claimed first so a "*" elsewhere does not swallow them.
    for entry in [*spec.numeric, *spec.categorical]:
        if isinstance(entry, str) and not any(ch in entry for ch in "*?["):
            taken.add(entry)
        elif not isinstance(entry, str):
            taken.add(entry.name)

    def fields_of(
        entries: list[str | NumericField] | list[str | CategoricalField], kind: str
    ) -> list[NumericField | CategoricalField]:
        out: list[NumericField | CategoricalField] = []
        for entry in entries:
            if isinstance(entry, str):
                if any(ch in entry for ch in "*?["):
                    names = _expand([entry], spec.columns, taken, kind)
                else:
                    names = [entry]
                for n in names:
                    out.append(
                        NumericField(name=n) if kind == "numeric" else CategoricalField(name=n)
                    )
            else:
                out.append(entry)
        return out

    numeric = fields_of(spec.numeric, "numeric")
    categorical = fields_of(spec.categorical, "categorical")
    names = [f.name for f in [*numeric, *categorical]]
    roles: dict[str | None, str] = {
        spec.label_column: "the label column",
        spec.event_id: "the event id",
        spec.timestamp: "the timestamp",
        **{c: "an entity column" for c in spec.entity},
        **{c: "excluded" for c in spec.exclude},
    }
    clash = [n for n in names if n in roles]
    if clash:
        raise SpecError(
            f"spec {spec.name}: {clash[0]!r} is {roles[clash[0]]} and cannot also be a feature "
            "(remove it from numeric/categorical)"
        )
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SpecError(f"spec {spec.name}: fields declared twice: {sorted(dupes)}")

    slots: list[FieldSlot] = []
    offset = 0
    for nf in numeric:
        assert isinstance(nf, NumericField)
        slots.append(
            FieldSlot(
                name=nf.name,
                kind="numeric",
                offset=offset,
                width=1,
                required=nf.required,
                transform=nf.transform,
            )
        )
        offset += 1
    if spec.time_features and not spec.timestamp:
        raise SpecError(f"spec {spec.name}: time_features need a `timestamp` column")
    for tf in spec.time_features:
        slots.append(FieldSlot(name=tf, kind="time", offset=offset, width=TIME_FEATURE_DIMS[tf]))
        offset += TIME_FEATURE_DIMS[tf]

    fixed = sum(c.buckets or 0 for c in categorical if isinstance(c, CategoricalField))
    auto = [c for c in categorical if isinstance(c, CategoricalField) and c.buckets is None]
    left = spec.tensor_width - offset - fixed
    if not numeric and not categorical and not spec.time_features:
        raise SpecError(
            f"spec {spec.name}: no features: list `numeric`, `categorical` or `time_features` "
            "(a `*` pattern matched no column?); `secureai spec draft FILE` proposes them"
        )
    if left < 0 or (auto and left < 2 * len(auto)):
        need = offset + fixed + 2 * len(auto)
        wider = -(-need // 64) * 64
        raise SpecError(
            f"spec {spec.name}: {offset} numeric/time dims + {fixed} fixed buckets leave "
            f"{left} of {spec.tensor_width} dims for {len(auto)} auto-sized categoricals "
            f"(each needs >= 2): set `tensor_width: {wider}` (or more) in the spec, give the "
            "categoricals fewer `buckets`, or drop features with `exclude`"
        )
    share, extra = divmod(left, len(auto)) if auto else (0, 0)
    for c in categorical:
        assert isinstance(c, CategoricalField)
        if c.buckets is None:
            width = share + (1 if extra > 0 else 0)
            extra -= 1
        else:
            width = c.buckets
        slots.append(
            FieldSlot(
                name=c.name, kind="categorical", offset=offset, width=width, required=c.required
            )
        )
        offset += width
    return TensorLayout(
        spec_name=spec.name,
        spec_version=spec.version,
        width=spec.tensor_width,
        timestamp=spec.timestamp,
        fields=slots,
    )


def load_spec(name_or_path: str | Path) -> FeatureSpec:
    """Load a spec by file path or by the name of a shipped spec (``auth``, ``nsl_kdd`` ...)."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SPECS_DIR / f"{name_or_path}.yml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in SPECS_DIR.glob("*.yml")))
        raise SpecError(f"feature spec not found: {name_or_path} (shipped specs: {shipped})")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        from morpheus_ext.config_io import yaml_problem

        raise SpecError(f"invalid feature spec {path}: {yaml_problem(exc)}") from exc
    try:
        spec = FeatureSpec.model_validate(doc)
        _ = spec.layout  # resolve now so errors surface at load time
    except SpecError:
        raise
    except Exception as exc:  # yaml or pydantic: both user-facing
        first = str(exc).strip().splitlines()
        raise SpecError(f"invalid feature spec {path}: {' '.join(first[:3])}") from exc
    return spec
