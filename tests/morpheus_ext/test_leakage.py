"""The leakage detector: each type found and masked, look-alikes not, nothing ever echoed."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morpheus_ext.stages.postprocess.leakage import (
    TYPE_NAMES,
    LeakageConfig,
    LeakageDetector,
    annotate,
)

DETECTOR = LeakageDetector(LeakageConfig(enabled=True))
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi"
    "aWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"

# (type, carrier text, the secret inside it)
CASES = [
    ("aws_access_key", "deploy with AKIAIOSFODNN7EXAMPLE now", "AKIAIOSFODNN7EXAMPLE"),
    (
        "github_token",
        "git/2.43 token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
    ),
    (
        "slack_token",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    (
        "stripe_key",
        "charge via sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    ),
    ("jwt", f"/api/me?access={JWT}&x=1", JWT),
    ("basic_auth", "https://deploy:Tr0ub4dor3xyz@git.example.com/repo.git", "Tr0ub4dor3xyz"),
    (
        "private_key",
        f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----",
        PEM_BODY,
    ),
    ("password_param", "/login?user=bob&password=Summer2026!&next=/", "Summer2026!"),
    ("card_number", "paid with 4111 1111 1111 1111 today", "4111 1111 1111 1111"),
    ("ssn", "applicant ssn 123-45-6789 on file", "123-45-6789"),
    ("email_password", "combo alice.smith@example.org:Winter#2026 leaked", "Winter#2026"),
    (
        "high_entropy",
        "MyAgent/1.0 (k=Zx8Qp2Lm9Rt5Vw3Ky7Hb4Nc6Jd1Fg0Ss)",
        "Zx8Qp2Lm9Rt5Vw3Ky7Hb4Nc6Jd1Fg0Ss",
    ),
]


def test_every_type_has_a_case() -> None:
    assert sorted(c[0] for c in CASES) == sorted(TYPE_NAMES)


@pytest.mark.parametrize(("kind", "text", "secret"), CASES, ids=[c[0] for c in CASES])
def test_each_type_is_found_and_masked(kind: str, text: str, secret: str) -> None:
    masked, spans = DETECTOR.mask(text)
    assert [s.type.name for s in spans] == [kind]
    assert secret not in masked
    assert f"[REDACTED:{kind}]" in masked


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # Luhn-invalid
        "order 4111111111111112 shipped",
        "1730448000000",  # epoch milliseconds
        "2026-11-01T08:15:02.123Z",
        "evt-000012345",
        "000-12-3456",  # never an SSN
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/130.0.0.0 Safari/537.36",
        "python-requests/2.31.0",
        "https://wiki.example.com/display/ENG/Onboarding+checklist?page=2",
        "scp alice@host.example.com:/var/log/app.log .",
        "d41d8cd98f00b204e9800998ecf8427e",  # a hex digest: no upper case
        "auth_method=password",  # the word, not a secret
        "https://wiki.corp.example/display/ENG/Page+876?version=3",  # a path of words
    ],
)
def test_look_alikes_are_not_flagged(text: str) -> None:
    assert DETECTOR.mask(text) == (text, [])


def test_a_card_among_other_digit_groups_is_still_found() -> None:
    masked = DETECTOR.mask("ref 7 4111 1111 1111 1111 2 end")[0]
    assert masked == "ref 7 [REDACTED:card_number] 2 end"


def test_types_can_be_turned_off() -> None:
    detector = LeakageDetector(LeakageConfig(enabled=True, types={"ssn": False}))
    assert detector.mask("ssn 123-45-6789")[1] == []
    with pytest.raises(ValueError, match="unknown leakage types"):
        LeakageConfig(types={"nope": True})


def test_scan_masks_the_frame_and_reports_type_and_field_only() -> None:
    frame = pd.DataFrame(
        {
            "user": ["alice", "bob", "carol"],
            "url": [CASES[7][1], "/home", CASES[7][1]],
            "n": [1, 2, 3],
            "mixed": [1, "ssn 123-45-6789", None],
        }
    )
    scan = DETECTOR.scan(frame)
    assert scan.rows.tolist() == [0, 1, 2]
    assert [[(f.type, f.field) for f in row] for row in scan.findings] == [
        [("password_param", "url")],
        [("ssn", "mixed")],
        [("password_param", "url")],
    ]
    assert "Summer2026!" not in scan.frame.to_string()
    assert scan.frame["mixed"].tolist()[0] == 1 and frame["url"][0] == CASES[7][1]  # a copy
    assert scan.secrets_of(2) == [("password_param", "Summer2026!")] and scan.secrets_of(5) == []
    assert list(scan.at(pd.Series([2, 3]).to_numpy())) == [0]


def test_scan_of_a_clean_batch_returns_the_same_frame() -> None:
    frame = pd.DataFrame({"url": ["/home", "/about"]})
    assert DETECTOR.scan(frame).frame is frame


def test_fields_and_exclusions() -> None:
    frame = pd.DataFrame({"a": ["ssn 123-45-6789"], "b": ["ssn 123-45-6789"]})
    only_a = LeakageDetector(LeakageConfig(enabled=True, fields=["a", "zz"]))
    assert [f.field for f in only_a.scan(frame).findings[0]] == ["a"]
    not_a = LeakageDetector(LeakageConfig(enabled=True, exclude_fields=["a"]))
    assert [f.field for f in not_a.scan(frame).findings[0]] == ["b"]


def test_raw_bytes_are_masked_including_json_escaped_secrets() -> None:
    pem = CASES[6][1]
    raw = b'{"message": "' + pem.encode().replace(b"\n", b"\\n") + b'", "x": 1}'
    # the pattern masks the escaped block itself; the known secret too where escaped
    out = DETECTOR.mask_bytes(raw, known=[("private_key", PEM_BODY)])
    assert PEM_BODY.encode() not in out
    binary = b"\xff\xfe key AKIAIOSFODNN7EXAMPLE \xff"
    masked = DETECTOR.mask_bytes(binary)
    assert b"AKIAIOSFODNN7EXAMPLE" not in masked and masked.startswith(b"\xff\xfe key ")


def test_annotate_adds_reason_in_words_before_the_models() -> None:
    finding = DETECTOR.scan(pd.DataFrame({"url": [CASES[0][1]]})).findings[0][0]
    record = annotate({"reasons": [{"field": "country", "value": "KP", "z": 3.0}]}, [finding])
    assert record["is_leak"] is True
    assert record["leakage"] == [{"type": "aws_access_key", "field": "url"}]
    assert record["reasons"][0] == {
        "field": "url",
        "value": "deploy with [REDACTED:aws_access_key] now",
        "text": "url carries an AWS access key (masked)",
        "leakage": "aws_access_key",
    }
    assert record["reasons"][1]["field"] == "country"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises_and_masking_is_stable(text: str) -> None:
    masked, spans = DETECTOR.mask(text)
    for s in spans:
        assert text[s.start : s.end] not in masked or len(text[s.start : s.end]) < 4
    assert DETECTOR.mask(masked)[1] == []  # what was masked stays masked, nothing new appears
    raw = text.encode("utf-8", "surrogatepass")
    assert len(DETECTOR.mask_bytes(raw)) >= len(raw) or DETECTOR.mask(text)[1]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CASES), st.text(max_size=40), st.text(max_size=40))
def test_a_secret_in_any_context_never_survives(case: tuple[str, str, str], a: str, b: str) -> None:
    _, text, secret = case
    masked = DETECTOR.mask(f"{a} {text} {b}")[0]
    assert secret not in masked


def test_scan_with_raw_events_looks_only_at_candidates_and_finds_the_same() -> None:
    frame = pd.DataFrame(
        {"url": ["/home", CASES[7][1], "/about", "x"], "m": ["a", "b", CASES[0][1], "c"]}
    )
    raw = [json.dumps(r).encode() for r in frame.to_dict(orient="records")]
    assert DETECTOR.candidates(raw).tolist() == [1, 2]
    with_raw, without = DETECTOR.scan(frame, raw), DETECTOR.scan(frame)
    assert with_raw.rows.tolist() == without.rows.tolist() == [1, 2]
    assert with_raw.findings == without.findings
    assert with_raw.frame.equals(without.frame)
    escaped = [b'{"m": "deploy with AKIAIOSFODNN7EXAMPL\\u0045 now"}']  # hint hidden by \u
    assert DETECTOR.candidates(escaped).tolist() == [0]
    assert len(DETECTOR.candidates([b'{"m": "hello"}'] * 3)) == 0


def test_normal_synthetic_events_carry_nothing() -> None:
    from synthetic import SyntheticConfig, generate

    events = generate(SyntheticConfig(n_events=20_000, seed=4))  # default kinds, 2% anomalies
    scan = DETECTOR.scan(events)
    assert len(scan.rows) == 0 and scan.frame is events


values = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(max_size=60),
    st.sampled_from([c[1] for c in CASES]),
    st.lists(st.text(max_size=5), max_size=2),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(values, values), min_size=1, max_size=300))
def test_scan_never_raises_on_hostile_columns(rows: list[tuple[object, object]]) -> None:
    frame = pd.DataFrame(rows, columns=["a", "b"])
    raw = [json.dumps([repr(a), repr(b)]).encode() for a, b in rows]
    for scan in (DETECTOR.scan(frame), DETECTOR.scan(frame, raw)):
        assert scan.frame.shape == frame.shape
        shown = " ".join(str(v) for col in ("a", "b") for v in scan.frame[col].tolist())
        for _, text, secret in CASES:
            if any(text == v for row in rows for v in row):
                assert secret not in shown


@pytest.mark.parametrize("distinct", [40, 300])
def test_a_batch_finds_the_same_with_few_or_many_distinct_values(distinct: int) -> None:
    """A batch (over ``SMALL_SCAN`` rows) prefilters its distinct values in Python when they
    are few, with Arrow's RE2 when many: the same findings either way."""
    secrets = [text for _, text, _ in CASES]
    plain = [f"/page/{i % distinct}" for i in range(1000)]
    url = [
        secrets[i // 97] if i % 97 == 5 and i // 97 < len(secrets) else v
        for i, v in enumerate(plain)
    ]
    frame = pd.DataFrame({"url": url, "user": [f"u{i % 7}" for i in range(1000)]})
    scan = DETECTOR.scan(frame)
    want = [i for i, v in enumerate(url) if v in secrets]
    assert scan.rows.tolist() == want and len(want) > 5
    one_by_one = [DETECTOR.scan(frame.iloc[[i]]).findings[0] for i in want]
    assert [[(f.type, f.field) for f in row] for row in scan.findings] == [
        [(f.type, f.field) for f in row] for row in one_by_one
    ]
