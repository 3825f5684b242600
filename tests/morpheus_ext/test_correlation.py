"""Cross-site correlation: keyed indicators (no raw value ever shared) and the Correlator."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from morpheus_ext.stages.postprocess.correlation import (
    CorrelationConfig,
    Correlator,
    correlation_key,
    indicator_message,
    indicators,
    notice_messages,
)
from morpheus_ext.stages.postprocess.incidents import IncidentConfig, IncidentTracker

KEY = b"org-wide-key-0123456789abcdef"
RAW = {
    "src_ip": ["45.33.12.7", "185.2.3.4"],
    "user_agent": ["python-requests/2.31"],
    "device": ["unknown"],
    "country": ["RU"],
}


def incident(site: str, iid: str, ip: str = "45.33.12.7", t: str = "2026-11-08T10:00:00Z") -> dict:
    return {
        "site": site,
        "incident_id": iid,
        "first_seen": t,
        "last_seen": t,
        "entities": ["alice"],
        "values": {**RAW, "src_ip": [ip]},
    }


def message(site: str, iid: str, **kw: str) -> dict:
    return indicator_message(incident(site, iid, **kw), KEY, ["src_ip"])


def test_indicators_are_keyed_and_deterministic() -> None:
    fields = ["src_ip", "user_agent+country"]
    inc = {"values": RAW}
    a = indicators(inc, KEY, fields)
    assert a == indicators(inc, KEY, fields)
    assert len(a) == 3  # two IPs, one (user agent, country) pair
    assert all(len(h) == 32 and int(h, 16) >= 0 for h in a)
    assert not set(a) & set(indicators(inc, b"another-key-0123456789", fields))
    # the same value under another field name is another indicator
    assert indicators({"values": {"src_ip": ["x"]}}, KEY, ["src_ip"]) != indicators(
        {"values": {"device": ["x"]}}, KEY, ["device"]
    )
    assert indicators({"values": {"device": ["x"]}}, KEY, ["device+country"]) == []


def test_no_raw_value_in_any_message() -> None:
    fields = ["src_ip", "user_agent", "device", "country", "user_agent+country"]
    msg = indicator_message({**incident("paris", "inc-1"), "values": RAW}, KEY, fields)
    text = json.dumps(msg)
    assert set(msg) == {"site", "incident_id", "first_seen", "last_seen", "indicators"}
    for values in RAW.values():
        for v in values:
            assert v not in text
    assert "alice" not in text and KEY.decode() not in text
    corr = Correlator(CorrelationConfig(enabled=True, fields=fields))
    corr.observe(msg)
    notices = corr.observe(
        indicator_message({**incident("tokyo", "inc-2"), "values": RAW}, KEY, fields)
    )
    out = json.dumps(notices) + b"".join(v for _, v in notice_messages(notices)).decode()
    assert notices and not any(v in out for values in RAW.values() for v in values)


def test_two_sites_make_a_campaign_one_site_does_not() -> None:
    corr = Correlator(CorrelationConfig(enabled=True))
    assert corr.observe(message("paris", "inc-1")) == []
    assert corr.observe(message("paris", "inc-2")) == []  # same site twice: no campaign
    notices = corr.observe(message("tokyo", "inc-3"))
    assert sorted((n["site"], n["incident_id"]) for n in notices) == [
        ("paris", "inc-1"),
        ("paris", "inc-2"),
        ("tokyo", "inc-3"),
    ]
    (cid,) = {n["campaign"]["campaign_id"] for n in notices}
    assert all(n["campaign"]["sites"] == 2 for n in notices)
    assert notices[0]["campaign"]["indicators"] == message("x", "y")["indicators"]
    assert corr.observe(message("tokyo", "inc-3")) == []  # a replay sends nothing again
    assert corr.observe(message("oslo", "inc-9", ip="8.8.8.8")) == []  # unrelated
    # a third site joins: every member hears again, under the same campaign id
    notices = corr.observe(message("berlin", "inc-4"))
    assert len(notices) == 4
    assert {n["campaign"]["campaign_id"] for n in notices} == {cid}
    assert {n["campaign"]["sites"] for n in notices} == {3}


def test_campaign_id_is_deterministic() -> None:
    def run(order: list[tuple[str, str]]) -> set[str]:
        corr = Correlator(CorrelationConfig(enabled=True))
        return {n["campaign"]["campaign_id"] for s, i in order for n in corr.observe(message(s, i))}

    assert run([("paris", "inc-1"), ("tokyo", "inc-2")]) == run(
        [("tokyo", "inc-2"), ("paris", "inc-1")]
    )


def test_window_expiry_and_bounded_state() -> None:
    corr = Correlator(CorrelationConfig(enabled=True, window_s=3600))
    assert corr.observe(message("paris", "inc-1", t="2026-11-08T00:00:00Z")) == []
    # seen again 2 h later at another site: outside the window, no campaign
    assert corr.observe(message("tokyo", "inc-2", t="2026-11-08T02:00:00Z")) == []
    assert len(corr) == 1, "the old incident was evicted"
    # a late message older than the window is dropped at once
    assert corr.observe(message("oslo", "inc-3", t="2026-11-08T00:10:00Z")) == []
    assert len(corr) == 1
    assert len(corr.observe(message("oslo", "inc-4", t="2026-11-08T02:30:00Z"))) == 2
    small = Correlator(CorrelationConfig(enabled=True, max_incidents=2))
    for i in range(5):
        small.observe(message("paris", f"inc-{i}", ip=f"10.0.0.{i}"))
    assert len(small) == 2 and len(small.index) == 2


def test_config_and_key() -> None:
    with pytest.raises(ValidationError):
        CorrelationConfig(fields=["src_ip+src_ip"])
    with pytest.raises(ValidationError):
        CorrelationConfig(min_sites=1)
    env = "SECUREAI_TEST_CORR_KEY"
    with pytest.raises(ValueError, match=f"\\${env}"):
        correlation_key(env)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(env, "short")
        with pytest.raises(ValueError, match="at least 16") as err:
            correlation_key(env)
        assert "short" not in str(err.value)
        mp.setenv(env, "x" * 32)
        assert CorrelationConfig(key_env=env).key() == b"x" * 32


def test_notice_raises_the_incident_severity() -> None:
    tracker = IncidentTracker(IncidentConfig(enabled=True, site="paris"))
    rec = {
        "event_id": "e1",
        "entity": "alice",
        "anomaly_score": 4.0,
        "threshold": 1.0,
        "is_anomaly": True,
        "reasons": [{"field": "country", "value": "RU", "z": 9.0}],
    }
    (before,) = tracker.observe([rec], times=[1_790_000_000.0], values={"src_ip": ["45.1.2.3"]})
    corr = Correlator(CorrelationConfig(enabled=True))
    corr.observe(indicator_message(before, KEY, ["src_ip"]))
    other = {**before, "site": "tokyo", "incident_id": "inc-0000000000000001"}
    notices = corr.observe(indicator_message(other, KEY, ["src_ip"]))
    mine = [n for n in notices if n["site"] == "paris"]
    after = tracker.set_campaign(mine[0]["incident_id"], mine[0]["campaign"])
    assert after is not None and after["revision"] > before["revision"]
    assert (before["severity"], after["severity"]) == ("medium", "high")
    assert tracker.set_campaign(mine[0]["incident_id"], mine[0]["campaign"]) is None
    # a restarted listener cannot know its last send was delivered: the same record again
    assert tracker.set_campaign(mine[0]["incident_id"], mine[0]["campaign"], again=True) == after


def test_a_common_indicator_links_nothing() -> None:
    corr = Correlator(CorrelationConfig(enabled=True, max_fanout=3))
    for i in range(4):
        corr.observe(message(f"site-{i % 2}", f"inc-{i}", ip="10.0.0.1"))  # e.g. a proxy
    assert corr.observe(message("site-2", "inc-9", ip="10.0.0.1")) == []
