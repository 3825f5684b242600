"""Limits shared by the model configs and the clients that must respect them."""

MAX_BATCH = 8192
"""``max_batch_size`` of every model in the repository; clients split larger batches."""
