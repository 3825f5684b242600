"""Feature specs: shipped specs resolve to the full tensor; the hash follows the layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from morpheus_ext.feature_spec import SPECS_DIR, FeatureSpec, SpecError, load_spec

SHIPPED = ["auth", "netflow", "security_events", "nsl_kdd"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_fill_the_tensor_with_contiguous_fields(name: str) -> None:
    spec = load_spec(name)
    layout = spec.layout
    assert layout.width == 256
    assert layout.used_width == 256
    offset = 0
    for f in layout.fields:
        assert f.offset == offset and f.width >= 1
        offset = f.stop
    assert len(set(layout.field_names)) == len(layout.fields)


def test_nsl_kdd_pattern_expands_to_every_other_column() -> None:
    spec = load_spec("nsl_kdd")
    kinds = {f.name: f.kind for f in spec.layout.fields}
    assert sum(k == "numeric" for k in kinds.values()) == 38
    assert kinds["service"] == kinds["flag"] == kinds["protocol_type"] == "categorical"
    assert "label" not in kinds and "difficulty" not in kinds


def test_hash_is_stable_and_follows_the_layout(tmp_path: Path) -> None:
    text = (SPECS_DIR / "netflow.yml").read_text()
    same = tmp_path / "same.yml"
    same.write_text("# a comment changes nothing\n" + text)
    assert load_spec(same).spec_hash == load_spec("netflow").spec_hash
    moved = tmp_path / "moved.yml"
    moved.write_text(text.replace("{name: protocol, buckets: 8}", "{name: protocol, buckets: 9}"))
    assert load_spec(moved).spec_hash != load_spec("netflow").spec_hash
    bumped = tmp_path / "bumped.yml"
    bumped.write_text(text.replace("version: 1", "version: 2"))
    assert load_spec(bumped).spec_hash != load_spec("netflow").spec_hash


def test_spec_errors_are_one_readable_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="feature spec not found: nope"):
        load_spec("nope")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nversion: 1\nnumeric: ['*']\n")
    with pytest.raises(SpecError, match="needs the spec's `columns`"):
        load_spec(bad)
    typo = tmp_path / "typo.yml"
    typo.write_text("name: x\nversion: 1\ncategoricals: [a]\n")
    with pytest.raises(SpecError, match="invalid feature spec"):
        load_spec(typo)


def test_too_many_fixed_buckets_is_refused() -> None:
    spec = FeatureSpec(name="x", version=1, categorical=[{"name": "a", "buckets": 300}])
    with pytest.raises(SpecError, match="leave"):
        _ = spec.layout
