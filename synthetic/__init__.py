"""Synthetic, labelled security logs (auth + netflow) for training and evaluating detectors.

Why this exists: real security logs with trustworthy anomaly labels are scarce and sensitive,
yet every stage of the pipeline (featurizer, autoencoder, federated retraining, benchmarks)
needs data whose ground truth is known. This module fabricates a small enterprise: sites with
their own country and timezone, users with habits (devices, apps, working hours) and hosts
with traffic profiles, then injects six kinds of labelled attacks.

Two knobs matter for the experiments:

* ``heterogeneity`` blends a shared distribution with site-specific ones (apps, devices,
  ports, traffic volume, user countries/timezones), so 0 gives IID sites and 1 gives strongly
  non-IID sites, which is what federated learning has to cope with.
* ``entity_relative`` switches the anomalies from "rare in the whole population" (a
  population-level autoencoder should catch them) to "common in the population but new for
  this user/host" (only per-entity baselines should catch them).

Everything is vectorised numpy driven by one ``numpy.random.default_rng(seed)``, so the same
config always gives the same DataFrame and 100k events take well under a second.

Dtypes of ``generate()``'s DataFrame (chosen so that a null means "not applicable to this event
type" and nothing else): string columns are ``object`` holding ``str`` or ``None``; the integer
netflow columns (``src_port``, ``dst_port``, ``bytes_in``, ``bytes_out``, ``packets``) are
pandas nullable ``Int64`` (``<NA>`` on auth rows); ``duration_ms`` is ``float64`` (NaN on auth
rows); ``label`` is ``int64``. ``tcp_flags`` is ``""`` (not null) for udp/icmp flows and ICMP
flows carry port 0, so netflow rows never have nulls in netflow columns.

Layout, one concern per module: ``schema`` (columns, kinds), ``catalogue`` (what the
enterprise is made of), ``config``, ``sampling`` (vectorised helpers), ``timelines``,
``population`` (sites, hosts, users), ``normal_traffic``, ``attacks_auth``,
``attacks_netflow``, ``generate`` (assembly) and ``events_io`` (files).

Example:

>>> from synthetic import SyntheticConfig, generate
>>> df = generate(SyntheticConfig(n_events=500, seed=1))
>>> len(df), int(df["label"].sum()) > 0
(500, True)
"""

from synthetic.catalogue import (
    APPS,
    AUTH_METHODS,
    DESK_DEVICES,
    DEVICE_USER_AGENTS,
    DEVICES,
    MOBILE_DEVICES,
    NIGHT_SHIFT_SHARE,
    NORMAL_APPS,
    NORMAL_FAILURE_RATE,
    PORTS,
    RARE_APPS,
    RARE_COUNTRIES,
    RARE_DEVICES,
    ROLES,
    SCRIPTED_USER_AGENTS,
    SITE_CATALOGUE,
    UNUSUAL_PORTS,
    WEEKEND_WEIGHT,
)
from synthetic.config import SyntheticConfig, event_type_counts, kind_counts
from synthetic.events_io import read_events, write_events
from synthetic.generate import generate
from synthetic.schema import (
    ANOMALY_KINDS,
    AUTH_COLUMNS,
    AUTH_KINDS,
    COLUMNS,
    COMMON_COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LABEL_COLUMNS,
    NETFLOW_COLUMNS,
    NETFLOW_KINDS,
    STR_COLUMNS,
)

__all__ = [
    "ANOMALY_KINDS",
    "APPS",
    "AUTH_COLUMNS",
    "AUTH_KINDS",
    "AUTH_METHODS",
    "COLUMNS",
    "COMMON_COLUMNS",
    "DESK_DEVICES",
    "DEVICES",
    "DEVICE_USER_AGENTS",
    "FLOAT_COLUMNS",
    "INT_COLUMNS",
    "LABEL_COLUMNS",
    "MOBILE_DEVICES",
    "NETFLOW_COLUMNS",
    "NETFLOW_KINDS",
    "NIGHT_SHIFT_SHARE",
    "NORMAL_APPS",
    "NORMAL_FAILURE_RATE",
    "PORTS",
    "RARE_APPS",
    "RARE_COUNTRIES",
    "RARE_DEVICES",
    "ROLES",
    "SCRIPTED_USER_AGENTS",
    "SITE_CATALOGUE",
    "STR_COLUMNS",
    "UNUSUAL_PORTS",
    "WEEKEND_WEIGHT",
    "SyntheticConfig",
    "event_type_counts",
    "generate",
    "kind_counts",
    "read_events",
    "write_events",
]
