"""The shared postproc against a plain-NumPy reference written independently here."""

from __future__ import annotations

import numpy as np

from morpheus_ext.stages.postprocess.postproc import postprocess


def reference(score: np.ndarray, z: np.ndarray, thr: np.ndarray, k: int) -> dict[str, np.ndarray]:
    rows = []
    for row in z:
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
        rows.append(order)
    top = np.array(rows, dtype=np.int32)
    return {
        "IS_ANOMALY": score.reshape(-1, 1) > thr.reshape(-1, 1),
        "MEAN_ABS_Z": np.array([[np.mean(np.abs(r))] for r in z], np.float32),
        "MAX_ABS_Z": np.array([[np.max(np.abs(r))] for r in z], np.float32),
        "TOP_FIELDS": top,
        "TOP_Z": np.array([[z[i, j] for j in top[i]] for i in range(len(z))], np.float32),
    }


def test_postproc_matches_reference_on_random_batches() -> None:
    rng = np.random.default_rng(0)
    for n, f, k in [(1, 3, 5), (257, 16, 5), (64, 41, 3)]:
        score = rng.gamma(2.0, size=(n, 1)).astype(np.float32)
        z = rng.normal(size=(n, f)).astype(np.float32)
        z[:, 0] = z[:, 1]  # ties must break towards the lower index
        thr = np.full((n, 1), 2.0, np.float32)
        got = postprocess(score, z, thr, k)
        want = reference(score, z, thr, min(k, f))
        for key, value in want.items():
            np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=key)
        assert got["TOP_FIELDS"].dtype == np.int32 and got["IS_ANOMALY"].dtype == bool
