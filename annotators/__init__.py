"""Annotators: one per producer of a stored node; Ray workers run them and write shards."""
