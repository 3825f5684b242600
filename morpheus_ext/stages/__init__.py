"""Pipeline stages in event order: input -> preprocess -> inference -> postprocess -> output.

Each stage is a plain function or small object from batch to batch, so our own runner
(``pipelines.runner``) and the Morpheus wrappers call the same code.
"""
