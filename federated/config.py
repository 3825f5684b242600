"""Typed configuration of a federated run (YAML under ``configs/fed_*.yml``).

One file describes a whole experiment: the data and how it is split into sites, the fixed
public inputs (normalizer, calibration), the model, the federation (rounds, sampling, timeouts,
strategy), local training, differential privacy and the privacy budget, and the simulated
faults (stragglers, malicious sites). Every run writes this config resolved (defaults filled in)
to its run directory; the ServerApp and every ClientApp read that one file, so a run is
reproducible from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from federated.gate import SitePublishConfig
from federated.site_window import WindowSelection
from modelling.config import CalibrationConfig, DataConfig, DataSource, ModelConfig
from morpheus_ext.config_io import StrictModel
from morpheus_ext.config_io import merge_overrides as merge_overrides  # re-exported

StrategyName = Literal["fedmedian", "fedavg", "fedtrimmedavg", "krum"]
AttackKind = Literal["scaled", "sign_flip", "random"]


class SiteSplitConfig(StrictModel):
    """How the training rows are divided between sites (the non-IID part of the experiment)."""

    method: Literal["site_column", "dirichlet", "window"] = "site_column"
    """``site_column``: one site per value of ``column`` (the synthetic generator's ``site``,
    whose per-site habits follow ``heterogeneity``). ``dirichlet``: any dataset; the rows of
    each value of ``column`` are dealt to the sites in Dirichlet(``alpha``) proportions.
    ``window``: no split at all: each site trains on its own training window (the SuperNode's
    ``window-dir``), selected as ``window:`` says; ``data.train`` is not used."""
    n_sites: int = Field(default=3, ge=1, le=64)
    column: str = "site"
    alpha: float = Field(default=0.5, gt=0)
    """Dirichlet concentration: small values give very unequal sites."""


class PublicPretrainConfig(StrictModel):
    """Non-private pretraining of the initial global model on the public sample.

    Why: under DP-SGD every step pays in noise, and the first rounds from a random
    initialisation spend most of the budget learning what any normal event looks like. The
    public sample (``public.source``: normal events of the same organisation, already used for
    the normalizer and calibration, outside the DP guarantee) teaches that for free; the sites'
    DP rounds then only fine-tune, at the same epsilon (docs/results.md, "Closing the AUPRC gap
    under DP"). Adam on MSE with early stopping on a seeded ``val_fraction`` of the sample
    (:func:`federated.pretrain.pretrain_on_public`). It replaces the seeded random
    initialisation only: a warm start (``initial_model``) already begins from trained weights,
    so the pretraining is skipped there (and recorded as such in ``fl_result.json``).
    """

    epochs: int = Field(default=200, ge=1)
    """Most epochs; early stopping (``patience``) ends it sooner (the 5k-event sample of
    configs/baselines.yml stops after ~128; 50 was still improving)."""
    batch_size: int = Field(default=256, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    patience: int = Field(default=4, ge=1)
    val_fraction: float = Field(default=0.15, gt=0, lt=1)
    """Share of the public rows held out for early stopping."""


class PublicCarveConfig(StrictModel):
    """Carve the public sample out of ``data.train``: a seeded fraction of its rows.

    Why: a dataset that comes as one file (NSL-KDD) has no separate public sample, and
    pretraining or fitting the normalizer on rows a site also trains on would put those rows
    outside the DP guarantee. The carved rows are removed from every site before the split
    (:func:`federated.site_split.carve_mask`), so the public sample and the sites' rows are
    disjoint by construction; the run records how many rows were carved and with which seed.
    """

    fraction: float = Field(gt=0, lt=1)
    """Share of the training source's rows (all labels, before ``fit_on``) made public."""
    seed: int = 0
    """Seed of the carve, independent of the run's ``seed`` (the same public rows whatever the
    model seed)."""


class PublicDataConfig(StrictModel):
    """Non-private data every party may see: it fits the normalizer and calibrates the model.

    Why: the encoder's centre/scale and the scoring threshold are published with the model,
    outside the DP guarantee. Fitting them on a public (or consented bootstrap) sample keeps
    every site's private rows behind DP-SGD only, and puts all sites in one feature space.
    Exactly one of ``source`` (a separate sample) and ``carve`` (rows carved out of
    ``data.train`` and withheld from the sites).
    """

    source: DataSource | None = None
    carve: PublicCarveConfig | None = None
    encoder: Path | None = None
    """A served ``dfp_encoder`` ONNX file: take the normalizer from it instead of fitting one
    on ``source``. The production choice: ``secureai model publish`` refuses a model trained
    with another normalizer than the served encoder's."""
    pretrain: PublicPretrainConfig | None = None
    """Pretrain the initial global model on the public sample (no privacy cost); ``None``:
    seeded random initial weights."""

    @model_validator(mode="after")
    def _one_sample(self) -> PublicDataConfig:
        if (self.source is None) == (self.carve is None):
            given = "both" if self.source is not None else "neither"
            raise ValueError(
                f"public: give exactly one of source (a separate public sample) and carve "
                f"(a fraction of data.train withheld from the sites); {given} given"
            )
        return self


class InitialModelConfig(StrictModel):
    """Start the global model from a version a Triton model repository serves (warm start).

    Real retraining continues from production: round 1 sends every site the served
    ``dfp_autoencoder`` weights (read from its ``model.onnx``, :mod:`federated.warm_start`)
    instead of a seeded random initialisation, and the run's normalizer is the served
    ``dfp_encoder``'s (``public.encoder`` may be left unset; if set it must be that file). The
    run refuses to start when the version's architecture or feature spec hash differs from the
    run's. The version (resolved to a number before the run) and the sha256 of its ONNX files
    are recorded as the run's ``initial_model`` (``fl_result.json``, ``run.json``, checkpoint and
    manifests).
    """

    repository: Path = Path("triton_model_repository")
    version: Annotated[int, Field(ge=1)] | Literal["served", "latest"] = "served"
    """``served``: what Triton serves (a rollback pin included); ``latest``: the highest
    version number; or a version number."""


class FederationConfig(StrictModel):
    rounds: int = Field(default=3, ge=1)
    fraction_train: float = Field(default=1.0, gt=0, le=1)
    """Fraction of connected sites sampled each round (partial participation)."""
    fraction_evaluate: float = Field(default=1.0, ge=0, le=1)
    min_train_clients: int = Field(default=2, ge=1)
    min_evaluate_clients: int = Field(default=2, ge=0)
    min_available_clients: int = Field(default=2, ge=1)
    """The server waits until this many sites are connected before sampling."""
    round_timeout_s: float = Field(default=300.0, gt=0)
    """Replies later than this are dropped, so a straggler cannot stall a round."""


class StrategyConfig(StrictModel):
    name: StrategyName = "fedmedian"
    trim_beta: float = Field(default=0.2, ge=0, lt=0.5)
    """FedTrimmedAvg: fraction cut from each tail."""
    krum_malicious: int = Field(default=1, ge=0)
    """Krum: number of malicious sites it must tolerate (needs n > 2f + 2)."""


class LocalTrainConfig(StrictModel):
    """What one site does with the global model in one round."""

    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=256, ge=1)
    """Expected batch size; with DP the batches are Poisson-sampled at rate 1/ceil(n/batch)."""
    lr: float = Field(default=2e-3, gt=0)
    threads: int = Field(default=1, ge=1)


class PrivacyConfig(StrictModel):
    """DP-SGD at every site (sample-level DP of that site's events), accounted with RDP."""

    enabled: bool = True
    target_epsilon: float = Field(default=3.0, gt=0)
    """Epsilon of the whole planned run (rounds x local epochs) at each site."""
    delta: float = Field(default=1e-5, gt=0, lt=1)
    max_grad_norm: float = Field(default=1.0, gt=0)
    grad_sample_mode: Literal["ghost", "hooks"] = "ghost"
    """``ghost``: Opacus ghost clipping (same clipped gradient, ~4x faster here)."""
    site_budget_epsilon: float = Field(default=10.0, gt=0)
    """Lifetime budget of a site over all runs recorded in its ledger (basic composition)."""
    ledger_dir: Path | None = None
    """Folder of the per-site ledgers; ``None``: ``<run_dir>/ledger`` (an experiment's own)."""


class StragglerConfig(StrictModel):
    """Simulated faults, applied by the ClientApp before it trains."""

    delays_s: dict[int, float] = Field(default_factory=dict)
    """Site index -> seconds it sleeps each round (longer than the round timeout: dropped)."""
    drop_sites: list[int] = Field(default_factory=list)
    """Sites that fail every round."""
    drop_probability: float = Field(default=0.0, ge=0, le=1)
    """Every site fails a given round with this probability (seeded)."""


class AttackConfig(StrictModel):
    """Malicious sites: they train honestly, then replace their update before sending it."""

    malicious_sites: list[int] = Field(default_factory=list)
    kind: AttackKind = "sign_flip"
    scale: float = Field(default=10.0, gt=0)
    """``scaled``: update x scale; ``sign_flip``: update x -scale; ``random``: Gaussian noise
    with scale x the honest update's RMS, per tensor."""


class MonitoringConfig(StrictModel):
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve Prometheus metrics over HTTP on 127.0.0.1:port while the run lasts."""
    metrics_host: str = "127.0.0.1"


class SimulationConfig(StrictModel):
    client_cpus: int = Field(default=1, ge=1)
    """Ray CPUs per ClientApp: with 2 cores, 1 runs two sites at a time."""
    timeout_s: float = Field(default=1800.0, gt=0)


class FLConfig(StrictModel):
    name: str = "fed"
    seed: int = 0
    data: DataConfig
    sites: SiteSplitConfig = Field(default_factory=SiteSplitConfig)
    window: WindowSelection = Field(default_factory=WindowSelection)
    """``sites.method: window``: which of a site's window rows it trains on."""
    publish: SitePublishConfig = Field(default_factory=SitePublishConfig)
    """``enabled``: each site gates and publishes the final model into its own repository."""
    public: PublicDataConfig
    initial_model: InitialModelConfig | None = None
    """``None`` (default): seeded random initial weights, as every run before warm start."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    federation: FederationConfig = Field(default_factory=FederationConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    local: LocalTrainConfig = Field(default_factory=LocalTrainConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    stragglers: StragglerConfig = Field(default_factory=StragglerConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    runs_dir: Path = Path("runs")

    @model_validator(mode="after")
    def _check_sites(self) -> FLConfig:
        """Site indices that do not exist would silently do nothing; name them instead."""
        n = self.sites.n_sites
        named = [
            *self.stragglers.delays_s,
            *self.stragglers.drop_sites,
            *self.attack.malicious_sites,
        ]
        bad = sorted({s for s in named if not 0 <= s < n})
        if bad:
            raise ValueError(f"site indices {bad} do not exist (sites are 0..{n - 1})")
        if self.data.train is None and self.sites.method != "window":
            raise ValueError(f"data.train is required with sites.method: {self.sites.method}")
        if self.public.carve is not None and (
            self.data.train is None or self.sites.method == "window"
        ):
            raise ValueError(
                "public.carve takes its rows from data.train, which sites.method: window does "
                "not use: give public.source instead"
            )
        if self.federation.min_available_clients > n:
            raise ValueError(
                f"federation.min_available_clients={self.federation.min_available_clients} "
                f"exceeds the {n} sites: the server would wait forever"
            )
        return self
