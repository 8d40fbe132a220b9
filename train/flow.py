"""The rectified-flow objective on packed grid tokens, with diffusers' sampling/weighting helpers.

x_t = (1 - s) x0 + s noise, the transformer predicts noise - x0 (FLUX convention: the
timestep fed to the model is s, the noise fraction, as the pipelines pass sigma). s comes from
`compute_density_for_timestep_sampling` (logit-normal by default, as the reference); with
`resolution_shift` it is moved by the grid's token count exactly as the samplers shift their
schedule (`calculate_shift` + the scheduler's exponential `time_shift`), which the reference
leaves off in training. The settings are the config's `train.*` keys (`FlowSettings`, in
train/config.py: `TrainSection` is one).
"""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

from .config import FlowSettings
from .grid_inputs import GridInputs

__all__ = ["FlowSettings", "flow_loss", "sample_sigmas"]


def sample_sigmas(settings: FlowSettings, scheduler: FlowMatchEulerDiscreteScheduler, batch: int, num_tokens: int,
                  device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    s = compute_density_for_timestep_sampling(
        weighting_scheme=settings.timestep_sampling,
        batch_size=batch,
        logit_mean=settings.logit_mean,
        logit_std=settings.logit_std,
        mode_scale=settings.mode_scale,
        device=device,
        generator=generator,
    )
    if settings.resolution_shift:
        cfg = scheduler.config
        mu = calculate_shift(num_tokens, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                             cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
        s = scheduler.time_shift(mu, 1.0, s)
    return s.float()


def flow_loss(transformer, inputs: GridInputs, prompt_embeds: torch.Tensor, pooled: torch.Tensor,
              text_ids: torch.Tensor, settings: FlowSettings, scheduler: FlowMatchEulerDiscreteScheduler,
              generator: torch.Generator | None, *, guidance_embeds: bool = True) -> torch.Tensor:
    """Per-grid loss (B,) in fp32: mean squared velocity error over the chosen tokens.

    `guidance_embeds`: the transformer's `config.guidance_embeds` (FLUX.1-Fill-dev has one); without a
    guidance embedding `settings.guidance` is not passed."""
    x0 = inputs.latents
    batch, num_tokens, _ = x0.shape
    device = x0.device
    noise = torch.randn(x0.shape, generator=generator, device=device, dtype=torch.float32).to(x0.dtype)
    sigmas = sample_sigmas(settings, scheduler, batch, num_tokens, device, generator)
    s = sigmas.view(batch, 1, 1).to(x0.dtype)
    noisy = (1.0 - s) * x0 + s * noise
    guidance = (torch.full((batch,), settings.guidance, device=device, dtype=torch.float32) if guidance_embeds
                else None)
    pred = transformer(
        hidden_states=torch.cat([noisy, inputs.condition], dim=-1),
        timestep=sigmas.to(x0.dtype),
        guidance=guidance,
        pooled_projections=pooled,
        encoder_hidden_states=prompt_embeds,
        txt_ids=text_ids,
        img_ids=inputs.img_ids,
        return_dict=False,
    )[0]
    target = noise.float() - x0.float()
    weighting = compute_loss_weighting_for_sd3(settings.loss_weighting, sigmas.view(batch, 1, 1)).float()
    per_token = (weighting * (pred.float() - target) ** 2).mean(dim=-1)  # (B, L)
    if settings.loss_region == "masked":
        region = inputs.masked_tokens.float()
        return (per_token * region).sum(dim=1) / region.sum(dim=1).clamp_min(1.0)
    return per_token.mean(dim=1)
