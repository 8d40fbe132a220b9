"""After training: generate with a VisualCloze LoRA and evaluate it.

`python -m inference generate`: fill the blank cells of an in-context grid from image files
(inference/generate.py). `python -m inference evaluate`: score a LoRA on held-out grids
(inference/evaluate.py). Importing this package is light (no torch): the heavy imports
happen inside the commands.
"""

from .errors import InferenceError

__all__ = ["InferenceError"]
