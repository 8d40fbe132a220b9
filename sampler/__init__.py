"""Sampler: turns shards into VisualCloze training grids."""
