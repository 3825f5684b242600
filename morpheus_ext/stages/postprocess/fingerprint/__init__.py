"""Digital fingerprinting: per-entity baselines beside the shared model, and reasons in words.

The global autoencoder says "unusual for the population"; these baselines say "unusual for
this user / host" (a country never seen for alice, 40x a host's usual upload) from a few hundred
bytes of counters per entity, learned from the stream itself. See docs/fingerprinting.md.

Site-local by design: nothing here is ever part of a federated update.
"""

from morpheus_ext.stages.postprocess.fingerprint.baselines import CheckpointError, EntityBaselines
from morpheus_ext.stages.postprocess.fingerprint.config import FingerprintConfig
from morpheus_ext.stages.postprocess.fingerprint.scoring import FingerprintScores

__all__ = ["CheckpointError", "EntityBaselines", "FingerprintConfig", "FingerprintScores"]
