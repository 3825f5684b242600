"""What the ServerApp and the ClientApps agree on: run-config keys, record keys, the normalizer
on the wire.

The normalizer travels inside every train/evaluate message (256 centres + 256 scales), so a
site never needs the server's files: all sites train in the one feature space the server fixed
for the run, whatever machine they run on.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord

from federated.config import FLConfig
from morpheus_ext.config_io import load_config
from morpheus_ext.normalizer import Normalizer

# Keys of the Flower app's run config (federated/app/pyproject.toml, [tool.flwr.app.config]).
RUN_CONFIG_PATH = "config-path"
RUN_DIR = "run-dir"
# Keys of a SuperNode's node config (--node-config).
NODE_SITE = "partition-id"
NODE_LEDGER_DIR = "ledger-dir"
NODE_SITE_NAME = "site-name"
"""The site's name: its ledger file and its label in metrics (default ``site-<partition-id>``)."""
NODE_WINDOW_DIR = "window-dir"
"""The site's training window (``sites.method: window``): its own events, on its own disk."""
NODE_REPOSITORY = "repository"
"""The site's model repository, where ``query.publish`` gates and publishes the final model."""
NODE_TRITON_URL = "triton-url"
"""Optional: the site's Triton (HTTP) to confirm a published version with."""
# Keys inside the messages.
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
FL_RUN_ID = "fl-run-id"
WINDOW_END = "window-end-ms"
"""When the run started (epoch ms): every message of the run reads the window as of then."""
PUBLISH_ACTION = "publish"
"""``query.publish``: the final global model, for each site to gate and publish locally."""
PRIVACY = "privacy"
"""In a ``query.publish`` reply: the site's privacy report for the run (what a plain ``query``
answers), so a run that publishes needs no separate round trip for it."""


def normalizer_to_record(normalizer: Normalizer, record: ConfigRecord) -> ConfigRecord:
    record["norm-center"] = [float(v) for v in normalizer.center]
    record["norm-scale"] = [float(v) for v in normalizer.scale]
    record["norm-clip"] = float(normalizer.clip)
    return record


def normalizer_from_record(record: ConfigRecord) -> Normalizer:
    return Normalizer(
        np.asarray(record["norm-center"], dtype=np.float32),
        np.asarray(record["norm-scale"], dtype=np.float32),
        float(record["norm-clip"]),  # type: ignore[arg-type]
    )


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> FLConfig:
    return load_config(path, FLConfig)


def load_run_config(path: str | Path) -> FLConfig:
    """The run's resolved config, parsed once per process (and again if the file changes)."""
    p = Path(path)
    return _load(str(p), p.stat().st_mtime_ns)
