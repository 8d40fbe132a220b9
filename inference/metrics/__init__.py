"""Metrics for VisualCloze outputs, by the paper's protocol (/work/shared/reference/evaluation-protocol.md).

Names (the keys of report.json; conventions in `METRICS`): canny_f1, depth_rmse, rmse,
ssim, psnr, fid, kid, clip_t, clip_i, dino, maniqa, musiq.

Per pair, on uint8 (H, W, 3) / (H, W) numpy arrays or PIL images, no model::

    rmse(generated, reference)          # 0-255 values, all pixels and channels (deblur)
    map_rmse(generated_map, input_map)  # 0-255 gray maps (depth_rmse)
    psnr(generated, reference); ssim(generated, reference)   # torchmetrics, data range 255
    canny_f1(input_edges, generated, tolerance=0)            # per-pixel F1, canny 100/200 at 512
    canny_f1_pairs([(input_edges, generated), ...])          # cheap: trainer validation

Re-annotation (the data's annotators as instruments; `Skipped` when impossible here)::

    reannotate("depth", generated, model_dir=None) -> np.ndarray | Skipped

Embedding scorers, loaded once (hub id or local folder; offline; `MetricUnavailable` if absent)::

    clip = ClipScorer.load("openai/clip-vit-large-patch14", model_dir=None, device=None)
    clip.text(images, texts) -> list[float]     # clip_t = 100 x max(cos, 0)
    clip.image(images_a, images_b)              # clip_i = 100 x cos
    DinoScorer.load("facebook/dinov2-base").image(generated, references)   # dino = 100 x cos

Set level and no-reference::

    score = DistributionScore(features)         # a ClipScorer/DinoScorer, inception_features(), or a Module
    score.update(real, fake) ...; score.compute() -> {"fid", "kid", "kid_std"}; score.describe()["features"]
    IqaScorer.load("maniqa" | "musiq").score(images) -> list[float]   # pyiqa, optional extra

Everything at once::

    suite = MetricSuite.load(model_dir=None, clip=..., dino=..., device=None)
    suite.skipped   # {metric name: "<reason>; how to enable: <step>"}
    suite.available; suite.distribution(); suite.describe()   # the weights behind the figures

The weights and their licences are in `METRIC_MODELS`.
"""

from .clip import ClipScorer
from .dino import DinoScorer
from .distribution import DistributionScore, inception_features
from .edges import canny_f1, canny_f1_pairs, edge_f1
from .iqa import IqaScorer
from .metric_models import METRIC_MODELS, download_metric_model
from .names import METRIC_NAMES, METRICS
from .pixel_metrics import map_rmse, psnr, rmse, ssim
from .reannotate import Reannotator, reannotate
from .skipped import MetricUnavailable, Skipped
from .suite import MetricSuite

__all__ = [
    "METRICS", "METRIC_MODELS", "METRIC_NAMES", "ClipScorer", "DinoScorer", "DistributionScore", "IqaScorer",
    "MetricSuite", "MetricUnavailable", "Reannotator", "Skipped", "canny_f1", "canny_f1_pairs",
    "download_metric_model", "edge_f1", "inception_features", "map_rmse", "psnr", "reannotate", "rmse", "ssim",
]
