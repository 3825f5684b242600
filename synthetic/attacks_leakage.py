"""Labelled leakage: logins whose URL, log message or user agent carries a planted secret.

Opt-in (``anomaly_kinds: [..., leakage]``; not among the default kinds, so default datasets
stay as they were). Each event is an ordinary login of a user from one of their devices, plus
one secret of a type from :data:`LEAK_TYPES` (the leakage detector's types) in a plausible
field: ``url`` (a new column: the request URL) or ``message`` (a new column: a log line), or
the ``user_agent``. Ground truth, in columns of their own: ``leak_type``, ``leak_field`` and
``leak_span`` (``"start:end"`` of the secret inside that field, so tests and the evaluation can
cut the secret out and check it appears nowhere). Columns other events do not have are null
there.
"""

from __future__ import annotations

import base64
import json
import string

import numpy as np

from synthetic.normal_traffic import (
    _auth_block,
    _Block,
    _Ctx,
    _methods,
    _user_times,
    _usual_device_cols,
)
from synthetic.sampling import _categorical, _pick
from synthetic.schema import Rng

LEAK_TYPES: tuple[str, ...] = (
    "aws_access_key",
    "github_token",
    "slack_token",
    "stripe_key",
    "jwt",
    "basic_auth",
    "private_key",
    "password_param",
    "card_number",
    "ssn",
    "email_password",
    "high_entropy",
)
LEAK_COLUMNS: tuple[str, ...] = ("url", "message", "leak_type", "leak_field", "leak_span")
_ALNUM = np.array(list(string.ascii_letters + string.digits))
_UPPER_DIGITS = np.array(list(string.ascii_uppercase + string.digits))
_HOSTS = ("portal.corp.example", "git.corp.example", "sso.corp.example", "api.corp.example")


def _chars(rng: Rng, n: int, alphabet: np.ndarray = _ALNUM) -> str:
    return "".join(rng.choice(alphabet, size=n).tolist())


def _mixed(rng: Rng, n: int) -> str:
    """Random letters and digits with at least one upper, one lower, one digit (a token)."""
    body = _chars(rng, n - 3)
    return (
        body
        + _chars(rng, 1, np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ")))
        + (
            _chars(rng, 1, np.array(list("abcdefghijkmnopqrstuvwxyz")))
            + _chars(rng, 1, np.array(list("23456789")))
        )
    )


def _luhn_digit(payload: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _secret(rng: Rng, kind: str, user: str, ua: str) -> tuple[str, str, str]:
    """(field, field value, secret) for one planted secret of ``kind``."""
    host = _HOSTS[int(rng.integers(len(_HOSTS)))]
    if kind == "aws_access_key":
        s = "AKIA" + _chars(rng, 16, _UPPER_DIGITS)
        return "message", f"s3 upload failed: aws_access_key_id {s} denied", s
    if kind == "github_token":
        s = "ghp_" + _chars(rng, 36)
        return "url", f"https://{host}/api/v3/user?token={s}", s
    if kind == "slack_token":
        s = (
            f"xoxb-{rng.integers(10**11, 10**12)}-{rng.integers(10**12, 10**13)}-"
            + _chars(rng, 24).lower()
        )
        return "message", f"alert webhook posting with {s}", s
    if kind == "stripe_key":
        s = "sk_live_" + _chars(rng, 24)
        return "message", f"billing: stripe client init with {s} failed", s
    if kind == "jwt":
        head = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        issued = int(rng.integers(1_700_000_000, 1_800_000_000))
        body = _b64url(json.dumps({"sub": user, "iat": issued}).encode())
        s = f"{head}.{body}.{_b64url(rng.bytes(32))}"
        return "url", f"https://{host}/sso/callback?id_token={s}&state=1", s
    if kind == "basic_auth":
        s = _mixed(rng, 14)
        return "url", f"https://{user}:{s}@{host}/login", s
    if kind == "private_key":
        raw = base64.b64encode(rng.bytes(360)).decode()
        body = "\n".join(raw[i : i + 64] for i in range(0, len(raw), 64))
        kind_name = ("RSA ", "EC ", "OPENSSH ", "")[int(rng.integers(4))]
        value = (
            f"config dump: -----BEGIN {kind_name}PRIVATE KEY-----\n{body}\n"
            f"-----END {kind_name}PRIVATE KEY-----"
        )
        return "message", value, body
    if kind == "password_param":
        s = _mixed(rng, 11) + "!"
        return "url", f"https://{host}/login?user={user}&password={s}&next=/home", s
    if kind == "card_number":
        payload = ("4", "51", "55", "37")[int(rng.integers(4))]
        payload += _chars(rng, 15 - len(payload), np.array(list(string.digits)))
        digits = payload + _luhn_digit(payload)
        sep = (" ", "-", "")[int(rng.integers(3))]
        s = sep.join(digits[i : i + 4] for i in range(0, 16, 4))
        return "message", f"payment form submitted with card {s}", s
    if kind == "ssn":
        s = f"{rng.integers(1, 666):03d}-{rng.integers(1, 100):02d}-{rng.integers(1, 10000):04d}"
        return "message", f"hr-portal profile update, ssn {s}", s
    if kind == "email_password":
        s = _mixed(rng, 9) + "#"
        return "message", f"pasted into search: {user}@corp.example:{s}", s
    if kind == "high_entropy":
        s = _mixed(rng, 32)
        return "user_agent", f"{ua} (deploy {s})", s
    raise ValueError(f"unknown leak type {kind!r}")


def _leakage(ctx: _Ctx, n: int) -> _Block:
    """``n`` ordinary logins, each carrying one planted secret (types in turn, shuffled)."""
    rng, pop = ctx.rng, ctx.pop
    users = pop.users
    u = _categorical(rng, users.activity, n)
    app = users.apps.items[u, _pick(rng, users.apps.cum, u, users.apps.n_valid)]
    dev = _usual_device_cols(rng, users, u)
    t = _user_times(rng, ctx.tl, users, u)
    kinds = np.array(LEAK_TYPES, dtype=object)[rng.permutation(np.arange(n) % len(LEAK_TYPES))]
    cols: dict[str, np.ndarray] = {c: np.full(n, None, dtype=object) for c in LEAK_COLUMNS}
    ua = dev["user_agent"].copy()
    names = users.name[u]
    for i, kind in enumerate(kinds.tolist()):
        where, value, secret = _secret(rng, kind, str(names[i]), str(ua[i]))
        start = value.index(secret)
        if where == "user_agent":
            ua[i] = value
        else:
            cols[where][i] = value
        cols["leak_type"][i], cols["leak_field"][i] = kind, where
        cols["leak_span"][i] = f"{start}:{start + len(secret)}"
    dev["user_agent"] = ua
    return _auth_block(
        pop, "leakage", u, t, app, _methods(rng, app), result=np.full(n, "success"), **dev, **cols
    )


def planted_secrets(frame: object) -> list[str]:
    """Every planted secret of a generated frame (cut out of its field by ``leak_span``).

    >>> from synthetic import SyntheticConfig, generate
    >>> df = generate(SyntheticConfig(n_events=2000, anomaly_rate=0.02, seed=3,
    ...                               anomaly_kinds=["leakage"]))
    >>> secrets = planted_secrets(df)
    >>> len(secrets), sorted(set(df["leak_type"].dropna())) == sorted(LEAK_TYPES)
    (40, True)
    """
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    if "leak_span" not in frame.columns:
        return []
    rows = frame[frame["leak_span"].notna()]
    out = []
    for field, span, row in zip(
        rows["leak_field"], rows["leak_span"], rows.itertuples(), strict=True
    ):
        start, end = (int(x) for x in str(span).split(":"))
        out.append(str(getattr(row, str(field)))[start:end])
    return out
