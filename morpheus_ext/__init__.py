"""morpheus_ext."""
