"""Output stages: where score records and dead letters go (``files``: JSONL; ``kafka_sink``)."""
