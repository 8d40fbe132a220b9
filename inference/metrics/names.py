"""The metric names `report.json` uses (a contract), each with its convention in one line."""

from __future__ import annotations

METRICS: dict[str, str] = {
    "canny_f1": "per-pixel F1 of the input edge map vs canny 100/200 (detected at 512) of the generated image; 0-1",
    "depth_rmse": "RMSE, 0-255 gray, of the input depth map vs the data's depth annotator on the generated image",
    "control_ssim": "SSIM of the condition vs the same annotator's map of the generated image (conditions other "
                    "than canny and depth; our addition, not a paper metric); 0-1",
    "rmse": "RMSE on 0-255 pixel values over all pixels and channels (deblur: restored vs original)",
    "ssim": "SSIM vs the ground truth (torchmetrics, data range 255, Gaussian 11, sigma 1.5); 0-1",
    "psnr": "PSNR vs the ground truth in dB (torchmetrics, data range 255); inf when identical",
    "fid": "Frechet distance of generated vs real features; the features are named beside it",
    "kid": "kernel inception distance (torchmetrics, cubic polynomial kernel) on the same features as fid",
    "clip_t": "CLIP score: 100 x max(cos(image, text), 0) (torchmetrics CLIPScore convention; ~35 in the paper)",
    "clip_i": "100 x cos of CLIP image embeddings (generated vs reference; Table 3's style consistency / 100)",
    "dino": "100 x cos of DINOv2 CLS embeddings (generated vs reference subject)",
    "maniqa": "MANIQA (pyiqa, KonIQ-10k), no reference; ~0-1, higher is better",
    "musiq": "MUSIQ (pyiqa, KonIQ-10k), no reference; ~0-100, higher is better",
}

METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
