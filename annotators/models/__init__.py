"""Model plumbing shared by model-backed annotators: weights, devices, the loading base class."""
