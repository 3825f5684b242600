"""Pipeline stages by Morpheus role, in event order: input -> preprocess -> inference ->
postprocess -> output (Morpheus' own layout, ``morpheus/stages/{input,preprocess,...}``).

Each stage is a plain function or small object from batch to batch, chained for one batch by
:class:`morpheus_ext.pipeline.ScoringPipeline`, so every runner (files, Kafka, REST, the
Morpheus ``LinearPipeline`` adapters) calls the same code. Package inits import nothing heavy.
"""
