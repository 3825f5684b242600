r"""Leakage detector: secrets and personal data carried in event fields, found and masked.

The autoencoder says an event is *unusual*; this stage says an event *carries something it
must not*: credentials and tokens (AWS access keys, GitHub/Slack/Stripe tokens, JWTs,
basic-auth in URLs, ``password=`` parameters), private keys (PEM blocks), card numbers
(Luhn-valid), SSN-shaped numbers, e-mail + password pairs and high-entropy secrets. It runs on
the decoded batch *before* the featurizer, and replaces every secret it finds by
``[REDACTED:<type>]`` in the frame itself, so nothing downstream (the model, the reasons'
values, fingerprint baselines and their checkpoints, reject reasons, logs) ever holds it; the
pipeline masks the same secrets in dead letters (:meth:`LeakageDetector.mask_bytes`).

Patterns come from Yelp's ``detect-secrets`` plugins where it has one (its curated,
maintained regular expressions and its JWT and entropy checks); what it lacks (Luhn card
numbers, SSNs, e-mail + password pairs, query-string passwords without quotes, the full
span of a PEM block) is a small layer here (docs/triage.md says why).

Cost is kept off the common case: per string column only the *distinct* values of a batch
are looked at, a single combined RE2 prefilter (Arrow, in C++) picks the few that could hold
anything, and only those reach the Python patterns.

Example:

>>> import pandas as pd
>>> detector = LeakageDetector(LeakageConfig(enabled=True))
>>> frame = pd.DataFrame({
...     "event_id": ["e1", "e2"],
...     "url": ["https://bob:hunter2hunter2@git.example.com/x", "/home"],
...     "user_agent": ["curl/8.4.0", "deploy key AKIAIOSFODNN7EXAMPLE"]})
>>> scan = detector.scan(frame)
>>> scan.frame["url"][0], scan.frame["user_agent"][1]
('https://bob:[REDACTED:basic_auth]@git.example.com/x', 'deploy key [REDACTED:aws_access_key]')
>>> [(f.type, f.field) for row in scan.findings for f in row]
[('basic_auth', 'url'), ('aws_access_key', 'user_agent')]
>>> detector.mask_text("4111 1111 1111 1111 or 4111 1111 1111 1112 (Luhn-invalid)")
'[REDACTED:card_number] or 4111 1111 1111 1112 (Luhn-invalid)'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import DENYLIST as KEYWORDS
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.stripe import StripeDetector
from pydantic import Field, field_validator

from morpheus_ext.config_io import StrictModel

log = logging.getLogger(__name__)

MASK = "[REDACTED:{}]"
"""How a secret is replaced everywhere: the whole secret span, nothing of it kept (a kept
prefix/suffix such as ``AKIA****MPLE`` reveals most of a short password), the type in clear."""
_MASKED = r"(?!\[REDACTED:)"  # a value already masked is not a secret again
SMALL_SCAN = 256
"""Up to this many rows a column is prefiltered in Python (Arrow's fixed cost per call, ~0.3 ms
per column, is more than the work)."""
VALUE_CHARS = 200
"""Masked field values quoted in reasons are cut to this many characters."""


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only).

    >>> luhn_ok("4111111111111111"), luhn_ok("4111111111111112")
    (True, False)
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_CARD_PREFIX = re.compile(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5)")
"""Issuer prefixes of Visa, Mastercard, Amex, Discover: a Luhn-valid 16-digit order id or a
13-digit epoch in milliseconds (which starts with 1) is not a card."""


def _card(text: str) -> bool:
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


_DIGIT_RUN = re.compile(r"(?<![\w.])\d+(?:[ -]\d+)*(?!\w)")
_DIGITS = re.compile(r"\d+")


def _card_spans(text: str) -> list[tuple[int, int]]:
    """Card numbers in ``text``: within each run of digit groups (``4111 1111 ...``, single
    spaces or dashes between), the first contiguous groups of 13-19 digits that pass
    :func:`_card`, then on after them (so a card next to a house number is still found)."""
    spans: list[tuple[int, int]] = []
    for run in _DIGIT_RUN.finditer(text):
        groups = [
            (g.start() + run.start(), g.end() + run.start()) for g in _DIGITS.finditer(run.group())
        ]
        i = 0
        while i < len(groups):
            end, digits = None, 0
            for j in range(i, len(groups)):
                digits += groups[j][1] - groups[j][0]
                if digits > 19:
                    break
                if digits >= 13 and _card(text[groups[i][0] : groups[j][1]]):
                    end = j
                    break
            if end is None:
                i += 1
                continue
            spans.append((groups[i][0], groups[end][1]))
            i = end + 1
    return spans


_ENTROPY = Base64HighEntropyString()


_PATH_WORD = re.compile(r"(?:^|[/+])(?:[a-z]{3,}|[A-Z]{3,}|[A-Z][a-z]{2,})(?=[/+]|$)")
"""A word between ``/`` or ``+`` (``display/ENG/Page+12``): a path or a query, not a secret
(base64 pieces between slashes are rarely one word in one case)."""


def _high_entropy(limit: float) -> Callable[[str], bool]:
    """detect-secrets' Shannon entropy over the base64 charset, above ``limit``, for a token
    that mixes upper case, lower case and digits (words and hex ids do not) and is not a path
    of words."""

    def check(token: str) -> bool:
        return (
            not _PATH_WORD.search(token)
            and any(c.isdigit() for c in token)
            and any(c.isupper() for c in token)
            and any(c.islower() for c in token)
            and _ENTROPY.calculate_shannon_entropy(token) > limit
        )

    return check


def _jwt(token: str) -> bool:
    return bool(JwtTokenDetector.is_formally_valid(token))


def _private_key(block: str) -> bool:
    return any(p.search(block) for p in PrivateKeyDetector.denylist)


@dataclass(frozen=True)
class LeakType:
    """One kind of secret: how to find it, which part is the secret, how to say it."""

    name: str
    words: str
    """How a reason names it: "url carries {words} (masked)"."""
    patterns: tuple[re.Pattern[str], ...]
    hint: str
    """An RE2 pattern every value holding this type matches (the vectorised prefilter)."""
    group: int = 0
    """The group that is the secret (masked); 0: the whole match."""
    check: Callable[[str], bool] | None = None
    source: str = "own"
    finder: Callable[[str], list[tuple[int, int]]] | None = None
    """Finds the spans itself (instead of ``patterns``)."""


def _leak_types(entropy_limit: float) -> tuple[LeakType, ...]:
    """Every type, in precedence order: a span claimed by an earlier type is not re-reported
    (a JWT is not also a high-entropy string)."""
    keywords = "|".join((*KEYWORDS, "token", "access_?token", "auth_?token"))
    return (
        LeakType(
            "private_key",
            "a private key",
            (
                re.compile(
                    r"(?:-----)?BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?(?:-----)?[\s\S]*?"
                    r"(?:END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?(?:-----)?|(?=[\"']|\Z))"
                ),
            ),
            "PRIVATE KEY",
            check=_private_key,
            source="detect-secrets PrivateKeyDetector (headers); span: own",
        ),
        LeakType(
            "jwt",
            "a JSON Web Token",
            # the library's pattern ends lazily (the signature stays out); greedy here, so the
            # signature is masked too
            (re.compile(JwtTokenDetector.denylist[0].pattern.replace("*?", "*")),),
            "eyJ",
            check=_jwt,
            source="detect-secrets JwtTokenDetector",
        ),
        LeakType(
            "aws_access_key",
            "an AWS access key",
            (AWSKeyDetector.denylist[0],),
            "A3T|AKIA|ASIA|ABIA|ACCA",
            source="detect-secrets AWSKeyDetector",
        ),
        LeakType(
            "github_token",
            "a GitHub token",
            tuple(GitHubTokenDetector.denylist),
            "gh[pousr]_",
            source="detect-secrets GitHubTokenDetector",
        ),
        LeakType(
            "slack_token",
            "a Slack token",
            tuple(SlackDetector.denylist),
            "xox|hooks.slack.com",
            source="detect-secrets SlackDetector",
        ),
        LeakType(
            "stripe_key",
            "a Stripe secret key",
            tuple(StripeDetector.denylist),
            "k_live_",
            source="detect-secrets StripeDetector",
        ),
        LeakType(
            "basic_auth",
            "basic-auth credentials",
            tuple(BasicAuthDetector.denylist),
            "://[^\\s/@:]+:[^\\s/@:]+@",
            group=1,
            source="detect-secrets BasicAuthDetector",
        ),
        LeakType(
            "email_password",
            "an e-mail and password pair",
            (
                re.compile(
                    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                    r"\s*[:|;]\s*" + _MASKED + r"(?!\d+(?:\s|$))([^\s\"'/@][^\s\"']{5,})"
                ),
            ),
            r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\s*[:|;]",
            group=1,
        ),
        LeakType(
            "password_param",
            "a password parameter",
            (
                re.compile(
                    r"(?i)(?:^|(?<=[\s?&;,{(\"']))[\w.-]*(?:" + keywords + r")[\w.-]*[\"']?"
                    r"\s*[=:]\s*[\"']?" + _MASKED + r"([^\s&;,\"'}]{4,})"
                ),
            ),
            r"(?:pass|pwd|secret|key|token|contrase)[\w.-]*[\"']?\s*[=:]",
            group=1,
            source="keywords from detect-secrets KeywordDetector; pattern: own",
        ),
        LeakType(
            "card_number",
            "a card number",
            (),
            r"\d(?:[ -]?\d){12}",
            finder=_card_spans,
        ),
        LeakType(
            "ssn",
            "an SSN-shaped number",
            (re.compile(r"(?<![\w.-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])"),),
            r"\d{3}-\d{2}-\d{4}",
        ),
        LeakType(
            "high_entropy",
            "a high-entropy secret",
            (re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{20,}={0,2}"),),
            r"[A-Za-z0-9+/_=-]{20,}",
            check=_high_entropy(entropy_limit),
            source="detect-secrets Base64HighEntropyString entropy",
        ),
    )


_WORDS = {t.name: t.words for t in _leak_types(4.0)}
TYPE_NAMES: tuple[str, ...] = tuple(_WORDS)


class LeakageConfig(StrictModel):
    """The leakage stage's knobs (``leakage:`` in the pipeline and demo configs)."""

    enabled: bool = False
    fields: list[str] | None = None
    """String fields scanned; None: every string field of the event (the spec's and the raw
    event's others: a secret in a field the model ignores still leaks into dead letters)."""
    exclude_fields: list[str] = Field(default_factory=list)
    types: dict[str, bool] = Field(default_factory=dict)
    """Per type, on or off (types not named: on). Names: :data:`TYPE_NAMES`."""
    min_length: int = Field(8, ge=1)
    """Values shorter than this are not scanned (no type fits in fewer characters)."""
    entropy_limit: float = Field(4.0, gt=0)
    """Shannon entropy (bits per character) above which a 20+ character mixed token is a
    secret; detect-secrets' default for whole files is 4.5, which a 20-character token can
    never reach (log2 20 = 4.32)."""

    @field_validator("types")
    @classmethod
    def _known(cls, value: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(value) - set(TYPE_NAMES))
        if unknown:
            raise ValueError(f"unknown leakage types {unknown}; choose from {list(TYPE_NAMES)}")
        return value


@dataclass(frozen=True)
class Finding:
    """A secret found in one field of one event: its type and the field, never the secret."""

    type: str
    field: str
    value: str
    """The field's whole value, masked (and cut to :data:`VALUE_CHARS`), for the reason."""


@dataclass
class LeakScan:
    """One batch scanned: the masked frame and, per row with findings, what was found."""

    frame: pd.DataFrame
    rows: np.ndarray
    """Positions (in the frame) of the rows with findings, ascending."""
    findings: list[list[Finding]]
    secrets: list[list[tuple[str, str]]] = field(default_factory=list)
    """Per row of :attr:`rows`, (type, raw secret) pairs: in memory only, to mask the row's
    dead letter."""

    def at(self, positions: np.ndarray) -> dict[int, list[Finding]]:
        """Findings keyed by index into ``positions`` (e.g. the featurizer's accepted rows)."""
        if not len(self.rows):
            return {}
        where = np.searchsorted(self.rows, positions)
        where = np.minimum(where, len(self.rows) - 1)
        hit = np.flatnonzero(self.rows[where] == positions)
        return {int(i): self.findings[int(where[i])] for i in hit}

    def secrets_of(self, position: int) -> list[tuple[str, str]]:
        i = int(np.searchsorted(self.rows, position))
        if i < len(self.rows) and self.rows[i] == position and self.secrets:
            return self.secrets[i]
        return []


@dataclass(frozen=True)
class _Span:
    type: LeakType
    start: int
    end: int


class LeakageDetector:
    """Finds and masks secrets in strings, in whole batches (:meth:`scan`) and in raw bytes."""

    def __init__(self, config: LeakageConfig | None = None) -> None:
        self.config = config or LeakageConfig(enabled=True)
        self.types = tuple(
            t for t in _leak_types(self.config.entropy_limit) if self.config.types.get(t.name, True)
        )
        self.prefilter = "(?i)" + "|".join(f"(?:{t.hint})" for t in self.types)
        self._prefilter = re.compile(self.prefilter)
        self._raw_prefilter = self.prefilter + r"|\\"

    # ------------------------------------------------------------------ strings
    def spans(self, text: str) -> list[_Span]:
        """The secrets in ``text``, as non-overlapping spans, in text order."""
        found: list[_Span] = []
        for kind in self.types:
            if kind.finder is not None:
                for start, end in kind.finder(text):
                    if not any(s.start < end and start < s.end for s in found):
                        found.append(_Span(kind, start, end))
            for pattern in kind.patterns:
                for m in pattern.finditer(text):
                    group = kind.group if kind.group <= (pattern.groups or 0) else 0
                    start, end = m.span(group)
                    if start < 0 or end <= start:
                        continue
                    if kind.check is not None and not kind.check(m.group(group)):
                        continue
                    if any(s.start < end and start < s.end for s in found):
                        continue
                    found.append(_Span(kind, start, end))
        return sorted(found, key=lambda s: s.start)

    def mask(self, text: str) -> tuple[str, list[_Span]]:
        spans = self.spans(text) if self._prefilter.search(text) else []
        if not spans:
            return text, spans
        out, at = [], 0
        for s in spans:
            out += [text[at : s.start], MASK.format(s.type.name)]
            at = s.end
        out.append(text[at:])
        return "".join(out), spans

    def mask_text(self, text: str, known: Sequence[tuple[str, str]] = ()) -> str:
        """``text`` with its secrets masked; ``known`` (type, secret) pairs (found in the
        decoded event) are masked also where they appear JSON-escaped (a PEM block's
        ``\\n``), which the patterns would not match in the raw text."""
        for kind, secret in sorted(known, key=lambda k: len(k[1]), reverse=True):
            spelled = orjson.dumps(secret).decode()[1:-1]
            for form in dict.fromkeys((secret, spelled)):
                text = text.replace(form, MASK.format(kind))
        return self.mask(text)[0]

    def mask_bytes(self, value: bytes, known: Sequence[tuple[str, str]] = ()) -> bytes:
        """Raw bytes (a dead letter's copy of the event) with their secrets masked. Bytes that
        are not UTF-8 are read as Latin-1 (one character per byte), so an ASCII secret in a
        binary value is masked too and the other bytes come back unchanged."""
        try:
            return self.mask_text(value.decode("utf-8"), known).encode("utf-8")
        except UnicodeDecodeError:
            return self.mask_text(value.decode("latin-1"), known).encode("latin-1", "replace")

    # ------------------------------------------------------------------ batches
    def candidates(self, raw: Sequence[bytes]) -> np.ndarray:
        """Positions of the raw events (JSON text) the prefilter matches: one RE2 pass over
        the batch (~1.2 us/event), so the rows without any hint (nearly all) cost nothing
        more. A backslash makes an event a candidate too: a JSON escape (``\\/``,
        ``\\u0041``) could hide a hint from the raw text that the decoded value has."""
        try:
            hit = pc.match_substring_regex(pa.array(raw, pa.binary()), self._raw_prefilter)
            return np.flatnonzero(hit.to_numpy(zero_copy_only=False))
        except (pa.ArrowException, ValueError):  # not a string RE2 can read: scan them all
            return np.arange(len(raw), dtype=np.int64)

    def scan(self, frame: pd.DataFrame, raw: Sequence[bytes] | None = None) -> LeakScan:
        """Mask every secret in the string columns of ``frame`` (a copy where any is found).

        ``raw``: each row's event as received (JSON); then only the rows :meth:`candidates`
        picks are looked at. Per column: the distinct values (dictionary encoding), the RE2
        prefilter over those, the patterns over the few that pass; rows take their value's
        result by index.
        """
        if raw is not None and self.config.fields is None:  # named fields: cheaper per column
            rows = self.candidates(raw)
            if not len(rows):
                return LeakScan(frame, np.zeros(0, dtype=np.int64), [])
            if len(rows) < len(frame):
                sub = self.scan(frame.iloc[rows])
                if not len(sub.rows):
                    return LeakScan(frame, sub.rows, [])
                columns = {}
                for name in dict.fromkeys(f.field for row in sub.findings for f in row):
                    whole = frame[name].to_numpy(dtype=object, copy=True)
                    whole[rows] = sub.frame[name].to_numpy(dtype=object)
                    columns[name] = pd.Series(whole, index=frame.index, name=name)
                out = frame.assign(**columns)
                return LeakScan(out, rows[sub.rows], sub.findings, sub.secrets)
        per_row: dict[int, list[Finding]] = {}
        secrets: dict[int, list[tuple[str, str]]] = {}
        masked_cols: dict[str, pd.Series] = {}
        for name in self._columns(frame):
            col = frame[name]
            found = self._hits(col)
            if found is None:
                continue
            indices, texts = found
            results: dict[int, tuple[str, list[_Span], str]] = {}
            for u, text in texts.items():
                masked, spans = self.mask(text)
                if spans:
                    results[u] = (masked, spans, text)
            if not results:
                continue
            codes = np.fromiter(results, dtype=np.int64, count=len(results))
            rows = np.flatnonzero(np.isin(indices, codes))
            values = col.to_numpy(dtype=object, copy=True)
            for r in rows.tolist():
                masked, spans, text = results[int(indices[r])]
                values[r] = masked
                shown = masked[:VALUE_CHARS]
                seen = per_row.setdefault(r, [])
                for s in spans:
                    if not any(f.type == s.type.name and f.field == name for f in seen):
                        seen.append(Finding(s.type.name, str(name), shown))
                secrets.setdefault(r, []).extend(
                    (s.type.name, text[s.start : s.end]) for s in spans
                )
            masked_cols[name] = pd.Series(values, index=col.index, name=col.name)
        if not per_row:
            return LeakScan(frame, np.zeros(0, dtype=np.int64), [])
        frame = frame.assign(**{str(k): v for k, v in masked_cols.items()})
        order = sorted(per_row)
        if log.isEnabledFor(logging.DEBUG):  # types and fields only, never a value
            counts: dict[str, int] = {}
            for r in order:
                for f in per_row[r]:
                    counts[f.type] = counts.get(f.type, 0) + 1
            log.debug("leakage: %d of %d events carry secrets %s", len(order), len(frame), counts)
        return LeakScan(
            frame,
            np.asarray(order, dtype=np.int64),
            [per_row[r] for r in order],
            [secrets[r] for r in order],
        )

    def _hits(self, col: pd.Series) -> tuple[np.ndarray, dict[int, str]] | None:
        """(per row, the index of its distinct value, -1: not a string; the distinct values
        the prefilter passes, by index), None when none does. A few rows (the candidates of
        raw events): plain Python; a batch: Arrow's dictionary encoding, then the prefilter
        over the distinct values, in Python for a few of them (RE2 in Arrow recompiles the
        prefilter on every call, ~1 ms: 0.25 us per event of a 4,096-event batch)."""
        if len(col) <= SMALL_SCAN:
            codes: dict[str, int] = {}
            idx = np.array(
                [codes.setdefault(v, len(codes)) if isinstance(v, str) else -1 for v in col],
                dtype=np.int64,
            )
            passed = {
                i: v
                for v, i in codes.items()
                if len(v) >= self.config.min_length and self._prefilter.search(v)
            }
            return (idx, passed) if passed else None
        encoded = _dictionary(col)
        if encoded is None:
            return None
        indices, uniques = encoded
        if len(uniques) <= SMALL_SCAN:  # Arrow compiles the prefilter per call (~1 ms)
            passed = {
                i: v
                for i, v in enumerate(uniques.to_pylist())
                if len(v) >= self.config.min_length and self._prefilter.search(v)
            }
            return (indices, passed) if passed else None
        candidates = pc.and_(
            pc.greater_equal(pc.utf8_length(uniques), self.config.min_length),
            pc.match_substring_regex(uniques, self.prefilter),
        )
        hits = np.flatnonzero(candidates.to_numpy(zero_copy_only=False))
        if not len(hits):
            return None
        return indices, {int(u): uniques[int(u)].as_py() for u in hits}

    def _columns(self, frame: pd.DataFrame) -> list[Any]:
        names = self.config.fields
        cols = list(frame.columns) if names is None else [c for c in names if c in frame.columns]
        skip = set(self.config.exclude_fields)
        return [c for c in cols if c not in skip and frame[c].dtype == object]


def _dictionary(col: pd.Series) -> tuple[np.ndarray, pa.StringArray] | None:
    """(index per row, -1: not a string; the distinct strings) of an object column."""
    try:
        arr = pa.array(col, type=pa.string(), from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):  # mixed types: only the strings
        values = col.to_numpy(dtype=object)
        is_str = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
        if not is_str.any():
            return None
        arr = pa.array([v if s else None for v, s in zip(values, is_str, strict=True)], pa.string())
    encoded = arr.dictionary_encode()
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    indices = np.where(pc.is_null(encoded.indices).to_numpy(zero_copy_only=False), -1, indices)
    return indices.astype(np.int64), encoded.dictionary


def leakage_detector(config: LeakageConfig | None) -> LeakageDetector | None:
    """The detector a run's ``leakage:`` section asks for (None: no section, or disabled)."""
    return LeakageDetector(config) if config is not None and config.enabled else None


# --------------------------------------------------------------------------- records
def leak_reason(finding: Finding) -> dict[str, Any]:
    """The reason a finding adds to its record (first among the record's reasons)."""
    return {
        "field": finding.field,
        "value": finding.value,
        "text": f"{finding.field} carries {_WORDS[finding.type]} (masked)",
        "leakage": finding.type,
    }


def annotate(record: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    """Add a record's findings: ``is_leak``, ``leakage`` and the reasons in words (first)."""
    record["reasons"] = [leak_reason(f) for f in findings] + list(record["reasons"])
    record["is_leak"] = True
    record["leakage"] = [{"type": f.type, "field": f.field} for f in findings]
    return record
