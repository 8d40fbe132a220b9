"""The one font every picture of the project labels with: PIL's bundled default at a size."""

from __future__ import annotations

from PIL import ImageFont


def label_font(size: int):
    """PIL's default font at `size` px; its fixed bitmap font where PIL was built without FreeType."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()
