"""Perception annotators: one module per producer of a map (edges, depth, pose, masks, boxes)."""
