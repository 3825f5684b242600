"""Files copied verbatim into Triton model version folders (not imported by the project)."""
