"""Preprocess stages: raw bytes -> typed columns (``decode``) -> ``EVENT_TENSOR`` (``featurizer``).

Events that cannot be decoded or typed leave here as dead letters with a reason naming the field.
The featurizer is the same code training uses, so a served event and a training row meet the
same numbers.
"""
