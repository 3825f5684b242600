"""Postprocess stages: ensemble outputs -> anomaly flags, reasons and score records.

``postproc`` (thresholds and top fields: NumPy only, also run inside Triton's ``anomaly_postproc``),
``fingerprint`` (per-entity baselines: "unusual for this user/host") and ``records`` (the score
record every sink writes). Nothing here loads torch; the package init imports nothing, so
Triton's python backend can load ``postproc`` with NumPy alone.
"""
