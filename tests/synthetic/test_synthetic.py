"""Tests for the synthetic labelled security-log generator (synthetic).

Why these matter: every model and benchmark in the project is scored against these labels, so
the generator must be deterministic, hit the requested anomaly budget, keep the column contract
the featurizer relies on, and make population-mode vs entity-relative anomalies genuinely
different in how rare their values are.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from synthetic import (
    ANOMALY_KINDS,
    AUTH_COLUMNS,
    AUTH_KINDS,
    COLUMNS,
    NETFLOW_COLUMNS,
    NETFLOW_KINDS,
    NORMAL_APPS,
    RARE_COUNTRIES,
    RARE_DEVICES,
    SCRIPTED_USER_AGENTS,
    SyntheticConfig,
    generate,
    read_events,
    write_events,
)

N = 20_000
AUTH_ONLY = [c for c in AUTH_COLUMNS if c not in NETFLOW_COLUMNS]
NETFLOW_ONLY = [c for c in NETFLOW_COLUMNS if c not in AUTH_COLUMNS]


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    """Population-mode events shared by most tests (generation is the slow part)."""
    return generate(SyntheticConfig(n_events=N, seed=7))


@pytest.fixture(scope="module")
def relative_events() -> pd.DataFrame:
    """Entity-relative events, to contrast with the population-mode ones."""
    return generate(SyntheticConfig(n_events=N, seed=7, entity_relative=True))


def _normal(df: pd.DataFrame, event_type: str) -> pd.DataFrame:
    return df[(df["event_type"] == event_type) & (df["label"] == 0)]


def _anomalies(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    return df[df["anomaly_kind"] == kind]


def _max_site_tv(df: pd.DataFrame, column: str, event_type: str) -> float:
    """Largest total-variation distance of a column's distribution between two sites."""
    normal = _normal(df, event_type)
    dist = pd.crosstab(normal["site"], normal[column], normalize="index").to_numpy()
    pairs = [(i, j) for i in range(len(dist)) for j in range(i + 1, len(dist))]
    return max(0.5 * float(np.abs(dist[i] - dist[j]).sum()) for i, j in pairs)


# --- determinism and budget -------------------------------------------------------------------
def test_same_seed_gives_identical_frame() -> None:
    config = SyntheticConfig(n_events=5_000, seed=3)
    pd.testing.assert_frame_equal(generate(config), generate(config))


def test_different_seed_differs() -> None:
    a = generate(SyntheticConfig(n_events=5_000, seed=3))
    b = generate(SyntheticConfig(n_events=5_000, seed=4))
    assert not a.equals(b)
    assert (a["timestamp"] != b["timestamp"]).any()


def test_anomaly_rate_is_exact(events: pd.DataFrame) -> None:
    assert len(events) == N
    assert int(events["label"].sum()) == round(N * 0.02)
    assert abs(events["label"].mean() - 0.02) <= 0.003


@pytest.mark.parametrize("rate", [0.0, 0.005, 0.1])
def test_anomaly_rate_other_values(rate: float) -> None:
    df = generate(SyntheticConfig(n_events=10_000, anomaly_rate=rate, seed=1))
    assert int(df["label"].sum()) == round(10_000 * rate)


def test_all_kinds_present_in_equal_shares(events: pd.DataFrame) -> None:
    counts = events.loc[events["label"] == 1, "anomaly_kind"].value_counts()
    assert set(counts.index) == set(ANOMALY_KINDS)
    assert counts.max() - counts.min() <= 1


def test_auth_fraction_holds(events: pd.DataFrame) -> None:
    assert int((events["event_type"] == "auth").sum()) == round(N * 0.6)


def test_subset_of_kinds() -> None:
    df = generate(SyntheticConfig(n_events=5_000, anomaly_kinds=["port_scan"], seed=2))
    assert set(df.loc[df["label"] == 1, "anomaly_kind"]) == {"port_scan"}
    assert int(df["label"].sum()) == 100


# --- column contract --------------------------------------------------------------------------
def test_columns_and_dtypes(events: pd.DataFrame) -> None:
    assert list(events.columns) == list(COLUMNS)
    for name in ("src_port", "dst_port", "bytes_in", "bytes_out", "packets"):
        assert str(events[name].dtype) == "Int64"
    assert events["duration_ms"].dtype == np.float64
    assert events["label"].dtype == np.int64
    assert events["event_id"].is_unique
    assert events.index.equals(pd.RangeIndex(len(events)))


def test_sorted_iso_timestamps_in_window(events: pd.DataFrame) -> None:
    assert events["timestamp"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").all()
    ts = pd.to_datetime(events["timestamp"])
    assert ts.is_monotonic_increasing
    assert ts.min() >= pd.Timestamp("2026-11-01T00:00:00Z")
    assert ts.max() < pd.Timestamp("2026-11-08T00:00:00Z")


def test_columns_per_event_type(events: pd.DataFrame) -> None:
    auth = events[events["event_type"] == "auth"]
    net = events[events["event_type"] == "netflow"]
    assert set(events["event_type"]) == {"auth", "netflow"}
    assert auth[list(AUTH_COLUMNS)].notna().all().all()
    assert auth[NETFLOW_ONLY].isna().all().all()
    assert net[list(NETFLOW_COLUMNS)].notna().all().all()
    assert net[AUTH_ONLY].isna().all().all()
    assert events["site"].isin([f"site-{i}" for i in range(3)]).all()


def test_label_kind_consistency(events: pd.DataFrame) -> None:
    assert ((events["label"] == 1) == (events["anomaly_kind"] != "none")).all()
    kind_type = events.loc[events["label"] == 1, ["anomaly_kind", "event_type"]]
    assert kind_type[kind_type["event_type"] == "auth"]["anomaly_kind"].isin(AUTH_KINDS).all()
    assert kind_type[kind_type["event_type"] == "netflow"]["anomaly_kind"].isin(NETFLOW_KINDS).all()


def test_normal_traffic_is_plausible(events: pd.DataFrame) -> None:
    auth, net = _normal(events, "auth"), _normal(events, "netflow")
    assert 0.015 < (auth["result"] == "failure").mean() < 0.05
    tcp = net[net["protocol"] == "tcp"]
    assert (tcp["packets"] >= 3).all()
    assert ((tcp["src_port"] >= 49152) & (tcp["src_port"] <= 65535)).all()
    assert (net["bytes_out"] > 0).all() and (net["duration_ms"] >= 0).all()


# --- population-mode anomalies are rare in the population -----------------------------------
def test_brute_force_bursts(events: pd.DataFrame) -> None:
    bf = _anomalies(events, "brute_force")
    assert (bf["result"] == "failure").all() and (bf["auth_method"] == "password").all()
    assert bf["country"].isin(RARE_COUNTRIES).all()
    assert not _normal(events, "auth")["country"].isin(RARE_COUNTRIES).any()
    ts = pd.to_datetime(bf["timestamp"])
    per_ip = (
        bf.assign(ts=ts)
        .groupby("src_ip")
        .agg(n=("ts", "size"), span=("ts", lambda s: s.max() - s.min()), users=("user", "nunique"))
    )
    assert per_ip["n"].between(5, 20).all() and (per_ip["users"] == 1).all()
    assert (per_ip["span"] < pd.Timedelta(minutes=2)).all()


def test_impossible_travel_follows_home_login(events: pd.DataFrame) -> None:
    auth = events[events["event_type"] == "auth"].assign(ts=pd.to_datetime(events["timestamp"]))
    travel = auth[auth["anomaly_kind"] == "impossible_travel"]
    assert (travel["result"] == "success").all()
    assert travel["country"].isin(RARE_COUNTRIES).all()
    home = auth[(auth["label"] == 0) & (auth["result"] == "success")]
    for _, row in travel.head(20).iterrows():
        earlier = home[(home["user"] == row["user"]) & (home["ts"] < row["ts"])]
        assert (row["ts"] - earlier["ts"].max()) <= pd.Timedelta(minutes=40)


def test_new_device_is_unseen(events: pd.DataFrame) -> None:
    nd = _anomalies(events, "new_device")
    assert nd["device"].isin(RARE_DEVICES).all()
    normal = _normal(events, "auth")
    assert not normal["device"].isin(RARE_DEVICES).any()
    assert not normal["user_agent"].isin(set(nd["user_agent"])).any()


@pytest.mark.parametrize("heterogeneity", [0.5, 1.0])
def test_exfiltration_volume(events: pd.DataFrame, heterogeneity: float) -> None:
    if heterogeneity != 0.5:
        events = generate(SyntheticConfig(n_events=N, seed=7, heterogeneity=heterogeneity))
    normal = _normal(events, "netflow").assign(b=lambda d: d["bytes_out"].astype(float))
    exfil = _anomalies(events, "exfiltration").assign(b=lambda d: d["bytes_out"].astype(float))
    assert (exfil["b"] >= 50 * normal["b"].median() * 0.99).all()
    site_q99 = normal.groupby("site")["b"].quantile(0.99)
    site_median = exfil.groupby("site")["b"].median()
    assert (site_median > site_q99.reindex(site_median.index)).all()
    assert exfil["b"].median() > normal["b"].quantile(0.99)


def test_port_scan_shape(events: pd.DataFrame) -> None:
    scan = _anomalies(events, "port_scan")
    assert (scan["packets"] == 1).all() and scan["tcp_flags"].isin(["S", "R"]).all()
    assert (scan["bytes_out"] <= 64).all()
    per_host = scan.groupby("src_host")["dst_port"].nunique()
    assert (per_host >= 10).all()
    normal = _normal(events, "netflow")
    assert not ((normal["packets"] == 1) & (normal["protocol"] == "tcp")).any()


def test_unusual_hour_often_rare_app_or_failure(events: pd.DataFrame) -> None:
    uh = _anomalies(events, "unusual_hour")
    normal_apps = set(_normal(events, "auth")["dst_app"])
    odd = ~uh["dst_app"].isin(normal_apps) | (uh["result"] == "failure")
    assert odd.mean() > 0.5


# --- entity-relative anomalies use population-common values ----------------------------------
@pytest.mark.parametrize(
    ("kinds", "column"),
    [
        (sorted(AUTH_KINDS), "country"),
        (["new_device"], "device"),
        (["new_device"], "user_agent"),
        (sorted(AUTH_KINDS), "auth_method"),
    ],
)
def test_entity_relative_injected_values_are_common(
    relative_events: pd.DataFrame, kinds: list[str], column: str
) -> None:
    """The value that makes the event odd for the user is >= 1% of normal logins."""
    share = _normal(relative_events, "auth")[column].value_counts(normalize=True)
    anomalous = relative_events[relative_events["anomaly_kind"].isin(kinds)]
    assert len(anomalous) > 0
    assert (anomalous[column].map(share).fillna(0.0) >= 0.01).all()


def test_entity_relative_uses_no_population_rare_value(relative_events: pd.DataFrame) -> None:
    """Unlike population mode, nothing here is rare for the company as a whole."""
    auth = relative_events[relative_events["anomaly_kind"].isin(AUTH_KINDS)]
    assert not auth["country"].isin(RARE_COUNTRIES).any()
    assert not auth["device"].isin([*RARE_DEVICES, "unknown"]).any()
    assert auth["dst_app"].isin(NORMAL_APPS).all()
    assert not auth["user_agent"].isin(SCRIPTED_USER_AGENTS).any()
    normal = _normal(relative_events, "auth")
    assert auth["src_host"].isin(set(normal["src_host"])).mean() > 0.5


def test_population_mode_uses_rare_values(events: pd.DataFrame) -> None:
    """The contrast case: population-mode anomalies mostly carry a never-normal value."""
    auth = events[events["anomaly_kind"].isin(AUTH_KINDS)]
    rare = (
        auth["country"].isin(RARE_COUNTRIES)
        | auth["device"].isin([*RARE_DEVICES, "unknown"])
        | ~auth["dst_app"].isin(NORMAL_APPS)
        | (auth["result"] == "failure")
    )
    assert rare.mean() > 0.8


def test_entity_relative_new_for_the_user(relative_events: pd.DataFrame) -> None:
    normal = _normal(relative_events, "auth")
    seen_dev = set(zip(normal["user"], normal["device"], strict=True))
    nd = _anomalies(relative_events, "new_device")
    assert not any(pair in seen_dev for pair in zip(nd["user"], nd["device"], strict=True))
    seen_country = set(zip(normal["user"], normal["country"], strict=True))
    it = _anomalies(relative_events, "impossible_travel")
    assert not any(p in seen_country for p in zip(it["user"], it["country"], strict=True))


def test_entity_relative_exfiltration(relative_events: pd.DataFrame) -> None:
    normal = _normal(relative_events, "netflow")
    exfil = _anomalies(relative_events, "exfiltration")
    host_median = normal.groupby("src_host")["bytes_out"].median().astype(float)
    ratio = exfil["bytes_out"].astype(float) / exfil["src_host"].map(host_median)
    assert ratio.between(20, 80).all()
    big = normal.loc[normal["src_host"].str.startswith("fs-"), "bytes_out"].astype(float)
    assert exfil["bytes_out"].astype(float).median() < big.quantile(0.9)
    assert (exfil["dst_port"] == 443).all()


def test_entity_relative_port_scan_looks_routine(relative_events: pd.DataFrame) -> None:
    normal = _normal(relative_events, "netflow")
    scan = _anomalies(relative_events, "port_scan")
    assert scan["dst_port"].isin(set(normal["dst_port"])).all()
    assert scan["dst_ip"].isin(set(normal["dst_ip"])).all()
    assert (scan["packets"] > 1).all()
    usual = set(zip(normal["src_host"], normal["dst_port"], strict=True))
    assert not any(p in usual for p in zip(scan["src_host"], scan["dst_port"], strict=True))


# --- heterogeneity ----------------------------------------------------------------------------
def test_heterogeneity_controls_site_divergence() -> None:
    iid = generate(SyntheticConfig(n_events=N, heterogeneity=0.0, seed=5))
    non_iid = generate(SyntheticConfig(n_events=N, heterogeneity=1.0, seed=5))
    for column, event_type in [("dst_app", "auth"), ("country", "auth"), ("dst_port", "netflow")]:
        low = _max_site_tv(iid, column, event_type)
        high = _max_site_tv(non_iid, column, event_type)
        assert high > low + 0.25, (column, low, high)
    assert _max_site_tv(iid, "dst_app", "auth") < 0.25


# --- I/O --------------------------------------------------------------------------------------
def test_jsonl_round_trip_omits_nulls(events: pd.DataFrame, tmp_path: Path) -> None:
    small = events.iloc[:3000].reset_index(drop=True)
    path = write_events(small, tmp_path / "ev.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(small)
    for record in lines:
        present = set(record)
        if record["event_type"] == "auth":
            assert not present & set(NETFLOW_ONLY)
        else:
            assert not present & set(AUTH_ONLY)
        assert None not in record.values()
    pd.testing.assert_frame_equal(read_events(path), small)


def test_parquet_round_trip(events: pd.DataFrame, tmp_path: Path) -> None:
    path = write_events(events, tmp_path / "sub" / "ev.parquet")
    pd.testing.assert_frame_equal(read_events(path), events)


def test_bad_suffix_is_rejected(events: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.jsonl or \.parquet"):
        write_events(events.head(), tmp_path / "ev.csv")
    with pytest.raises(ValueError, match=r"\.jsonl or \.parquet"):
        read_events(tmp_path / "ev.json")


# --- config validation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {"anomaly_kinds": ["sql_injection"]},
        {"heterogeneity": 1.5},
        {"start": "yesterday-ish"},
        {"unknown_field": 1},
        {"auth_fraction": 0.0, "anomaly_kinds": ["brute_force"]},
        {"n_events": 0},
    ],
)
def test_invalid_config_rejected(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SyntheticConfig(**overrides)


def test_tiny_and_single_site_configs_work() -> None:
    for er in (False, True):
        df = generate(
            SyntheticConfig(
                n_events=50, n_sites=1, n_users=2, n_hosts=1, anomaly_rate=0.2, entity_relative=er
            )
        )
        assert len(df) == 50 and int(df["label"].sum()) == 10


def test_generate_100k_is_vectorised() -> None:
    """Not a timing assertion; 100k events take ~0.25 s on a laptop-class CPU."""
    df = generate(SyntheticConfig(n_events=100_000))
    assert len(df) == 100_000


# --- CLI --------------------------------------------------------------------------------------
def _cli() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "synthetic_logs.py"
    spec = importlib.util.spec_from_file_location("synthetic_logs_cli", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ev.parquet"
    assert (
        _cli().main(["--events", "2000", "--sites", "2", "--entity-relative", "--out", str(out)])
        == 0
    )
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "2000 events" in summary[0]
    df = read_events(out)
    assert len(df) == 2000 and set(df["site"]) == {"site-0", "site-1"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "-1", "--out", "x.jsonl"],
        ["--events", "100", "--out", "x.csv"],
        ["--anomaly-rate", "abc", "--out", "x.jsonl"],
        ["--events", "100"],
    ],
)
def test_cli_errors_are_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _cli().main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_population_seed_keeps_the_organisation_across_event_seeds() -> None:
    """Train on one week, stream the next: same users at the same sites, other events."""
    from synthetic import SyntheticConfig, generate

    week1 = generate(SyntheticConfig(n_events=20_000, seed=0))
    week2 = generate(SyntheticConfig(n_events=20_000, seed=1, population_seed=0))
    other = generate(SyntheticConfig(n_events=20_000, seed=1))
    pairs = [
        set(zip(df["user"].dropna(), df["site"][df["user"].notna()], strict=True))
        for df in (week1, week2, other)
    ]
    assert len(pairs[0] & pairs[1]) / len(pairs[1]) > 0.95
    assert len(pairs[0] & pairs[2]) / len(pairs[2]) < 0.95
    assert not week1["event_id"].equals(week2["event_id"]) or not week1["timestamp"].equals(
        week2["timestamp"]
    )
