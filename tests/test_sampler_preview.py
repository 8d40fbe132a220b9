"""`python -m sampler preview`: annotated grid PNGs and an index page."""

import subprocess
import sys

import numpy as np
from PIL import Image

from tests.conftest import REPO


def _preview(*args):
    return subprocess.run([sys.executable, "-m", "sampler", "preview", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_preview_writes_annotated_pngs_and_index(sampler_shards, tmp_path):
    out = tmp_path / "grids"
    done = _preview("--shards", str(sampler_shards), "--n", "4", "--out", str(out), "--seed", "1",
                    "--resolution", "128")
    assert done.returncode == 0, done.stderr
    pngs = sorted(out.glob("grid_*.png"))
    assert [p.name for p in pngs] == [f"grid_{i:03d}.png" for i in range(4)]
    page = (out / "index.html").read_text()
    assert page.count("<img") == 4 and "grid_003.png" in page
    for png in pngs:
        image = np.asarray(Image.open(png).convert("RGB")).astype(int)
        assert image.shape[1] >= 2 * 128  # at least two cells wide
        red = (image[..., 0] > 200) & (image[..., 1] < 60) & (image[..., 2] < 60)
        assert red.sum() > 4 * 128  # the masked cell's outline


def test_preview_names_bad_input(sampler_shards, tmp_path):
    done = _preview("--shards", str(tmp_path / "nowhere"), "--n", "2", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "nowhere" in done.stderr
    done = _preview("--shards", str(sampler_shards), "--n", "2", "--out", str(tmp_path / "o"), "--resolution", "100")
    assert done.returncode == 2 and "multiple of 16" in done.stderr
