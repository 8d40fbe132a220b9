import json
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture(scope="session")
def reference_tasks() -> dict:
    """The reference implementation's node and task lists (VisualCloze, Apache-2.0)."""
    return json.loads((TESTS / "data" / "reference-tasks.json").read_text())


@pytest.fixture(scope="session")
def sampler_shards(tmp_path_factory) -> Path:
    """The bundled samples packed as training shards (3 tars), see tests/sampler_shards.py."""
    from tests.sampler_shards import pack

    out = tmp_path_factory.mktemp("sampler-shards")
    pack(out, n_shards=3)
    return out


@pytest.fixture(scope="session")
def sampler_shards_x3(tmp_path_factory) -> Path:
    """Three copies of each bundled sample under distinct keys (every task gets 3 partners)."""
    from tests.sampler_shards import pack

    out = tmp_path_factory.mktemp("sampler-shards-x3")
    pack(out, n_shards=4, copies=3)
    return out


@pytest.fixture(scope="session")
def tiny_flux_fill(tmp_path_factory) -> Path:
    """A tiny random FluxFillPipeline written by `train.tiny` (load it with from_pretrained)."""
    from train.tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-flux-fill") / "pipeline")


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state (mixed precision, device); every Trainer of a test starts clean.

    The same reset accelerate's own `AccelerateTestCase` does between tests.
    """
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; on a busy machine OpenMP's spin-waiting threads cost 10x."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- inference (python -m inference)


@pytest.fixture(scope="session")
def tiny_flux_lora(tiny_flux_fill, tmp_path_factory) -> Path:
    """A LoRA for `tiny_flux_fill` written as `python -m train` exports it (`train.lora`), with random
    B weights (a fresh LoRA's are zero), so loading it changes what the pipeline generates."""
    import torch
    from diffusers import FluxTransformer2DModel

    from train.lora import add_lora, export_lora_atomic, lora_metadata, lora_state_dict

    transformer = FluxTransformer2DModel.from_pretrained(tiny_flux_fill, subfolder="transformer")
    add_lora(transformer, rank=4)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    path = tmp_path_factory.mktemp("tiny-flux-lora") / "pytorch_lora_weights.safetensors"
    return export_lora_atomic(path, lora_state_dict(transformer), lora_metadata(transformer))


@pytest.fixture(scope="module")
def ray_local():
    """One quiet local Ray per test module that asks for it (starting Ray costs seconds)."""
    import logging

    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2,
             logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()
