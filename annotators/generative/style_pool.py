"""The style references the style annotators draw from: a folder of images, sampled per sample with a seed.

`--style-dir DIR` points at any folder of JPEG/PNG/WebP images (recursive,
hidden files skipped); the default is the bundled demo pool, `styles/` at the
project root (Graph200K's own style references, see styles/README.md). Each
sample draws its K references without replacement (with replacement only when
the pool is smaller than K) from a generator seeded by (seed, node, key), so a
rerun, or another worker, picks the same files; their names go in the metadata.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from graph200k.decode import decode_image

from .seeds import instance_seed

DEMO_STYLE_DIR = Path(__file__).resolve().parents[2] / "styles"
STYLE_EXTS = (".jpg", ".jpeg", ".png", ".webp")


class StylePool:
    """The images of one style folder, in a stable (sorted) order."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else DEMO_STYLE_DIR
        if not self.folder.is_dir():
            raise ValueError(f"style folder {self.folder} does not exist (set it with --style-dir)")
        self.files = sorted(
            p for p in self.folder.rglob("*")
            if p.is_file() and p.suffix.lower() in STYLE_EXTS
            and not any(part.startswith(".") for part in p.relative_to(self.folder).parts)
        )
        if not self.files:
            raise ValueError(f"style folder {self.folder} holds no {'/'.join(STYLE_EXTS)} image")

    def __len__(self) -> int:
        return len(self.files)

    def name(self, path: Path) -> str:
        return path.relative_to(self.folder).as_posix()

    def choose(self, seed: int, node: str, key: str, k: int) -> list[Path]:
        """The `k` style files for sample `key` of `node`: distinct while the pool allows."""
        rng = random.Random(instance_seed(seed, f"{node}/styles", key, 0))
        if k <= len(self.files):
            return rng.sample(self.files, k)
        return [rng.choice(self.files) for _ in range(k)]

    def load(self, path: Path) -> np.ndarray:
        """An (H, W, 3) uint8 RGB array of a style file (a broken file is an error naming it)."""
        try:
            return decode_image(path.read_bytes(), "RGB")
        except Exception as err:
            raise ValueError(f"style image {path} cannot be read: {err}") from err
