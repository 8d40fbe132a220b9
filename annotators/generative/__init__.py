"""Generative annotators: FLUX-based stylisation and editing, and the caption rewriter they use."""
