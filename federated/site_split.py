"""Which training rows belong to which site, and the run's public (non-private) inputs.

The split is the centralized baseline's own (``modelling.centralized``): the same featurized rows,
the same ``fit_on`` filter and the same train/validation permutation for the same seed; the
sites then partition those rows. So "centralized vs federated" compares training procedures on
identical data, never different data.

Two ways to make sites:

* ``site_column``: one site per value of a column, e.g. the synthetic generator's ``site``,
  whose habits (apps, devices, ports, volumes, countries) differ with ``heterogeneity``.
* ``dirichlet``: any dataset; for every value of a categorical column the rows are dealt to the
  sites in proportions drawn from Dirichlet(alpha), the usual label/feature-skew benchmark.

The public sample is either a separate source (``public.source``) or carved out of the training
source (``public.carve``): a seeded fraction of its rows (:func:`carve_mask`) becomes public and
is removed from the rows the sites get, before the train/validation split, so no site row is
ever public.

>>> from synthetic import SyntheticConfig
>>> from modelling.config import DataConfig, DataSource
>>> from federated.config import FLConfig, PublicDataConfig, SiteSplitConfig
>>> src = DataSource(synthetic=SyntheticConfig(n_events=3000, n_sites=3, seed=0))
>>> cfg = FLConfig(data=DataConfig(train=src), public=PublicDataConfig(source=src),
...                sites=SiteSplitConfig(n_sites=3))
>>> data = load_federated_data(cfg)
>>> data.names, [len(r) for r in data.train_rows]
(['site-0', 'site-1', 'site-2'], [913, 818, 768])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from federated.config import FLConfig, PublicCarveConfig, SiteSplitConfig
from modelling.centralized import load_source, split_rows
from modelling.checkpoint import normalizer_from_encoder
from modelling.config import DataConfig, DataSource
from morpheus_ext.feature_spec import FeatureSpec, load_spec
from morpheus_ext.normalizer import Normalizer
from morpheus_ext.stages.preprocess.featurizer import Featurizer


@dataclass(frozen=True)
class FederatedData:
    """Featurized (not yet normalized) training rows and each site's share of them."""

    spec: FeatureSpec
    tensor: np.ndarray
    names: list[str]
    train_rows: list[np.ndarray]
    """Per site: row indices into ``tensor`` used for local training."""
    val_rows: list[np.ndarray]
    """Per site: row indices into ``tensor`` of its validation split (never leaves the site)."""
    info: dict[str, object]

    def site_train(self, site: int) -> np.ndarray:
        return self.tensor[self.train_rows[site]]

    def site_val(self, site: int) -> np.ndarray:
        return self.tensor[self.val_rows[site]]


@dataclass(frozen=True)
class PublicInputs:
    """Fixed inputs of a run, computed once by the server from the public sample."""

    normalizer: Normalizer
    raw: np.ndarray
    """The public sample's featurized rows (ONNX parity checks feed these)."""
    normalized: np.ndarray
    """The public sample, normalized: calibration and the server's public loss."""
    info: dict[str, object]


def _fit_mask(labels: np.ndarray | None, n: int, fit_on: str) -> np.ndarray:
    if fit_on == "normal" and labels is not None:
        return labels == 0
    return np.ones(n, dtype=bool)


def carve_mask(n: int, carve: PublicCarveConfig) -> np.ndarray:
    """Which of the training source's ``n`` featurized rows are public: ``round(fraction * n)``
    rows drawn by a generator of ``carve.seed`` alone (same rows whatever the run's seed)."""
    k = round(carve.fraction * n)
    if not 0 < k < n:
        raise ValueError(f"public.carve: fraction {carve.fraction} of {n} rows carves {k}")
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(carve.seed).permutation(n)[:k]] = True
    return mask


def carve_info(mask: np.ndarray, carve: PublicCarveConfig) -> dict[str, object]:
    """What the run records about the carve: enough to recompute and check the public rows."""
    rows = np.flatnonzero(mask)
    return {
        "fraction": carve.fraction,
        "seed": carve.seed,
        "source_rows": len(mask),
        "carved_rows": len(rows),
        "rows_sha256": hashlib.sha256(rows.astype("<i8").tobytes()).hexdigest(),
    }


def site_assignment(
    values: np.ndarray, split: SiteSplitConfig, seed: int
) -> tuple[list[str], np.ndarray]:
    """Site names and each row's site index (rows are the ones eligible for training)."""
    if split.method == "site_column":
        names = sorted({str(v) for v in values})
        if len(names) != split.n_sites:
            raise ValueError(
                f"column {split.column!r} has {len(names)} values {names[:8]}, but "
                f"sites.n_sites is {split.n_sites}: make them agree (or use method: dirichlet)"
            )
        index = {n: i for i, n in enumerate(names)}
        return names, np.array([index[str(v)] for v in values], dtype=np.int64)
    rng = np.random.default_rng(seed)
    site = np.empty(len(values), dtype=np.int64)
    keys = np.array([str(v) for v in values], dtype=object)
    for key in sorted(set(keys.tolist())):
        rows = np.flatnonzero(keys == key)
        rng.shuffle(rows)
        share = rng.dirichlet(np.full(split.n_sites, split.alpha))
        cuts = (np.cumsum(share)[:-1] * len(rows)).astype(np.int64)
        for s, part in enumerate(np.split(rows, cuts)):
            site[part] = s
    return [f"site-{i}" for i in range(split.n_sites)], site


def _load(
    data: DataConfig, split: SiteSplitConfig, seed: int, carve: PublicCarveConfig | None = None
) -> FederatedData:
    spec = load_spec(data.spec)
    if data.train is None:
        raise ValueError("this run's sites train on their windows: there is no split to load")
    frame, data_info = load_source(data.train, spec)
    batch = Featurizer(spec).transform(frame)
    tensor = np.asarray(batch.tensor)
    labels = Featurizer(spec).labels(batch.frame)
    eligible = _fit_mask(labels, len(tensor), data.fit_on)
    public = None if carve is None else carve_mask(len(tensor), carve)
    if public is not None:
        eligible &= ~public  # public rows never reach a site
    fit_rows = np.flatnonzero(eligible)
    tr, va = split_rows(len(fit_rows), data.val_fraction, seed)
    if split.column not in batch.frame.columns:
        raise ValueError(f"sites.column {split.column!r} is not a column of the training data")
    column = batch.frame[split.column].to_numpy()[fit_rows]
    names, site = site_assignment(column, split, seed)
    train_rows = [fit_rows[tr][site[tr] == s] for s in range(len(names))]
    val_rows = [fit_rows[va][site[va] == s] for s in range(len(names))]
    empty = [names[s] for s in range(len(names)) if len(train_rows[s]) == 0]
    if empty:
        raise ValueError(f"sites {empty} got no training rows; lower n_sites or raise alpha")
    info: dict[str, object] = {
        "train": data_info,
        "rejected_rows": len(batch.rejects),
        "split": split.model_dump(mode="json"),
        "sites": {
            n: {"train_rows": len(train_rows[s]), "val_rows": len(val_rows[s])}
            for s, n in enumerate(names)
        },
    }
    if carve is not None and public is not None:
        info["public_carve"] = carve_info(public, carve)
    return FederatedData(spec, tensor, names, train_rows, val_rows, info)


@lru_cache(maxsize=4)
def _load_cached(key: str) -> FederatedData:
    doc = json.loads(key)
    return _load(
        DataConfig.model_validate(doc["data"]),
        SiteSplitConfig.model_validate(doc["sites"]),
        int(doc["seed"]),
        None if doc["carve"] is None else PublicCarveConfig.model_validate(doc["carve"]),
    )


def load_federated_data(config: FLConfig) -> FederatedData:
    """The run's site split. Cached per process: a simulated ClientApp (a long-lived Ray
    actor) featurizes its data once, not once per message."""
    key = json.dumps(
        {
            "data": config.data.model_dump(mode="json"),
            "sites": config.sites.model_dump(mode="json"),
            "seed": config.seed,
            "carve": None if config.public.carve is None else config.public.carve.model_dump(),
        },
        sort_keys=True,
    )
    return _load_cached(key)


def public_inputs(config: FLConfig, spec: FeatureSpec, encoder: Path | None) -> PublicInputs:
    """The run's public inputs from ``public.source``, or from the rows ``public.carve`` takes
    out of ``data.train`` (the ones :func:`load_federated_data` withholds from the sites)."""
    if config.public.carve is not None:
        if config.data.train is None:
            raise ValueError("public.carve needs data.train")
        return fit_public_inputs(
            config.data.train, spec, config.data.fit_on, encoder, config.public.carve
        )
    if config.public.source is None:
        raise ValueError("public: neither source nor carve is set")
    return fit_public_inputs(config.public.source, spec, config.data.fit_on, encoder)


def fit_public_inputs(
    source: DataSource,
    spec: FeatureSpec,
    fit_on: str,
    encoder: Path | None = None,
    carve: PublicCarveConfig | None = None,
) -> PublicInputs:
    """The public sample (rows labelled normal when ``fit_on: normal``) and the run's normalizer:
    the served encoder's when ``encoder`` is given, else fitted on the sample. With ``carve``,
    ``source`` is the training source and only its carved rows are the sample."""
    frame, info = load_source(source, spec)
    featurizer = Featurizer(spec)
    batch = featurizer.transform(frame)
    tensor = np.asarray(batch.tensor)
    keep = _fit_mask(featurizer.labels(batch.frame), len(tensor), fit_on)
    carved = None if carve is None else carve_mask(len(tensor), carve)
    if carved is not None:
        keep &= carved
    rows = tensor[keep]
    if len(rows) == 0:
        raise ValueError("the public sample has no usable rows")
    if encoder is not None:
        normalizer = normalizer_from_encoder(encoder)
        fitted = f"served encoder {encoder}"
    else:
        normalizer = Normalizer.fit(rows, spec.layout)
        fitted = "fitted on the public sample"
    info_out: dict[str, object] = {"source": info, "rows": len(rows), "normalizer": fitted}
    if carve is not None and carved is not None:
        info_out["carve"] = carve_info(carved, carve)
    return PublicInputs(normalizer, rows, normalizer.transform(rows), info_out)
