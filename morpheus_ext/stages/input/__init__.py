"""Input stages: where raw event bytes come from, in batches, each value with its origin.

``sources`` (files, DataFrames, the :class:`~morpheus_ext.stages.input.sources.RawBatch` and
:class:`~morpheus_ext.stages.input.sources.Origin` types every later stage carries) and
``kafka_source`` (a Kafka topic; offsets are committed by the runner after delivery).
"""
