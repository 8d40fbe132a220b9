"""The VisualCloze LoRA trainer (`python -m train`)."""
