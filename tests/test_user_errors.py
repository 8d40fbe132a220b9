"""Failures a user can cause in the trainer, the sampler, the packer and the annotators' CLI: each is
one line naming the thing at fault and the fix, a non-zero exit, no traceback, and fast (issue 15, item 4).

The commands run in-process (`main(argv)`, output captured at the file descriptors) except one,
`python -m train` offline with a Hub id, which runs as the user would, in a subprocess. Nothing
starts Ray and nothing needs a network: the Hub and Ray "addresses" are closed local ports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SAMPLES = REPO / "samples"
FLUX = "black-forest-labs/FLUX.1-Fill-dev"


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line(err: str) -> str:
    """The one line of `err` (stderr), checked: no traceback, nothing else."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def pipeline_folder(tmp_path) -> Path:
    """A folder with the layout `model.pretrained` is checked for (`model_index.json`): the errors below all
    stop before any model is loaded, so no weights are needed."""
    folder = tmp_path / "pipeline"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxFillPipeline"}))
    return folder


def train(argv: list[str], capfd) -> tuple[int, str]:
    from train.__main__ import main

    code = main(["train.max_steps=1", "train.global_batch_size=1", "train.mixed_precision=no",
                 "model.weight_dtype=fp32", "log.report_to=none", "validation.every=0", *argv])
    return code, one_line(capfd.readouterr().err)


# ------------------------------------------------------------------ python -m train


def test_train_offline_with_an_uncached_hub_model_names_the_licence_login_and_local_path(tmp_path, sampler_shards):
    """As a user runs it: one line, no httpx tracebacks, no retries (HF_HUB_OFFLINE, an empty cache)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "train", f"model.pretrained={FLUX}", f"data.shards={sampler_shards}",
                           f"train.output_dir={tmp_path / 'out'}", "log.report_to=none", "train.mixed_precision=no"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert line.startswith("error: config key 'model.pretrained': ") and FLUX in line
    for words in ("HF_HUB_OFFLINE", "FLUX.1 [dev] Non-Commercial License", "huggingface-cli login", "hf auth login",
                  "model.pretrained=/path/to/local/folder"):
        assert words in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_train_with_the_hub_unreachable_fails_in_seconds(monkeypatch, tmp_path, sampler_shards, capfd):
    """Not offline by setting, but nothing answers at HF_ENDPOINT: the probe says so within its timeout."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    code, line = train([f"model.pretrained={FLUX}", f"data.shards={sampler_shards}",
                        f"train.output_dir={tmp_path / 'out'}"], capfd)
    assert code == 2
    assert FLUX in line and "cannot be reached" in line and "huggingface-cli login" in line


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_train_with_a_pretrained_folder_that_does_not_exist(tmp_path, sampler_shards, capfd):
    missing = tmp_path / "no" / "such-pipeline"
    code, line = train([f"model.pretrained={missing}", f"data.shards={sampler_shards}",
                        f"train.output_dir={tmp_path / 'out'}"], capfd)
    assert code == 2
    assert f"folder {missing} does not exist" in line and "python -m train.tiny" in line


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_train_with_shards_that_match_nothing(tmp_path, pipeline_folder, capfd):
    pattern = tmp_path / "nowhere" / "train-*.tar"
    code, line = train([f"model.pretrained={pipeline_folder}", f"data.shards={pattern}",
                        f"train.output_dir={tmp_path / 'out'}"], capfd)
    assert code == 2
    assert line.startswith("error: config key 'data.shards': ") and str(pattern) in line


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_train_with_tasks_no_sample_can_serve_names_the_missing_node(tmp_path, sampler_shards, pipeline_folder,
                                                                      capfd):
    code, line = train([f"model.pretrained={pipeline_folder}", f"data.shards={sampler_shards}",
                        "data.tasks=canny->target", f"train.output_dir={tmp_path / 'out'}"], capfd)
    assert code == 2
    assert line.startswith("error: config key 'data.tasks': ")
    assert "(canny->target)" in line and "no sample carries canny" in line and "--annotators canny" in line


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_train_with_an_unknown_node_in_the_validation_tasks(tmp_path, pipeline_folder, capfd):
    code, line = train([f"model.pretrained={pipeline_folder}", "validation.tasks=cany->target"], capfd)
    assert code == 2
    assert "config key 'validation.tasks'" in line and "'cany'" in line and "did you mean 'canny->target'" in line


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_resume_given_a_checkpoint_name_points_at_its_path(tmp_path, sampler_shards, pipeline_folder, capfd):
    out = tmp_path / "out"
    for step in (2, 4):
        (out / "checkpoints" / f"checkpoint-{step:07d}").mkdir(parents=True)
    code, line = train([f"model.pretrained={pipeline_folder}", f"data.shards={sampler_shards}",
                        f"train.output_dir={out}", "checkpoint.resume=checkpoint-0000002"], capfd)
    assert code == 1
    assert "'checkpoint.resume': checkpoint-0000002 is not a folder" in line
    assert f"did you mean checkpoint.resume={out / 'checkpoints' / 'checkpoint-0000002'}?" in line
    code, line = train([f"model.pretrained={pipeline_folder}", f"data.shards={sampler_shards}",
                        f"train.output_dir={out}", "checkpoint.resume=checkpoint-9"], capfd)
    assert code == 1
    assert "checkpoint-0000002, checkpoint-0000004" in line
    assert f"checkpoint.resume={out / 'checkpoints' / 'checkpoint-0000004'}" in line and "latest" in line


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_a_launch_for_two_processes_that_runs_one_says_so(monkeypatch, tmp_path, pipeline_folder, capfd):
    """torchrun's WORLD_SIZE says 2, accelerate (no ACCELERATE_USE_CPU) runs 1 process."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, line = train([f"model.pretrained={pipeline_folder}", f"train.output_dir={tmp_path / 'out'}"], capfd)
    assert code == 2
    assert "asked for 2 processes (WORLD_SIZE=2) but this run has 1" in line
    assert "ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m train" in line


def test_accelerate_launch_cpu_num_processes_is_read_from_its_command_line(monkeypatch, tmp_path):
    """`accelerate launch --cpu --num_processes 2` sets no variable saying 2: its command line (or config) does."""
    from train.config import ConfigError
    from train.launch import check_launch, requested_processes

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    launcher = ["/venv/bin/python", "/venv/bin/accelerate", "launch", "--cpu", "--num-processes=2", "-m", "train",
                "--config", "configs/smoke.yaml"]
    assert requested_processes(launcher) == (2, "accelerate launch --num_processes 2")
    with pytest.raises(ConfigError, match=r"asked for 2 processes .*accelerate launch --cpu starts a single process.*"
                                          r"ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m train"):
        check_launch(1, launcher)
    check_launch(2, launcher)  # what was asked for
    config = tmp_path / "cpu.yaml"
    config.write_text("distributed_type: 'NO'\nnum_processes: 3\nuse_cpu: true\n")
    assert requested_processes(["accelerate", "launch", "--config_file", str(config), "-m", "train"])[0] == 3
    assert requested_processes(["/usr/bin/python", "-m", "pytest"]) is None  # no launcher: nothing to compare


# ------------------------------------------------------------------ python -m sampler preview


def test_preview_errors_name_the_shards_and_the_tasks(tmp_path, sampler_shards, capfd):
    from sampler.cli import main

    cases = [
        (["--shards", str(tmp_path / "missing")], [str(tmp_path / "missing"), "does not exist"]),
        (["--shards", str(sampler_shards), "--tasks", "cany->target"], ["'cany'", "did you mean 'canny->target'"]),
        (["--shards", str(sampler_shards), "--tasks", "canny->target"], ["(canny->target)", "no sample carries canny"]),
    ]
    for args, expected in cases:
        assert main(["preview", *args, "--n", "1", "--out", str(tmp_path / "grids")]) == 2
        line = one_line(capfd.readouterr().err)
        assert all(words in line for words in expected), line
    assert not (tmp_path / "grids").exists()


def test_a_packed_folder_that_serves_none_of_the_tasks_points_at_its_card(tmp_path):
    from graph200k.packing import pack
    from sampler import GridDataset
    from sampler.coverage import NoSamplesForTasks
    from tests.test_packing import build

    dataset = tmp_path / "demo"
    build(SAMPLES, dataset)
    shards = pack(dataset, progress=False).out
    with pytest.raises(NoSamplesForTasks) as err:
        GridDataset(shards, tasks=["mlsd->target"])
    card = Path(os.path.realpath(shards)) / "README.md"  # the generation the link pointed at when read
    assert "no sample carries mlsd" in str(err.value) and f"(listed in {card})" in str(err.value)
    GridDataset(shards, tasks=["canny->target"])  # what the pack does serve


# ------------------------------------------------------------------ python -m graph200k shards


def test_packing_errors_name_the_dataset(tmp_path, capfd):
    from annotators.inputs.ingest import write_source_shard
    from annotators.inputs.sources import plan_sources
    from graph200k.cli import main

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "k1.jpg").write_bytes(b"not an image")
    nothing = tmp_path / "nothing-imported"
    for shard in plan_sources(broken, 4).shards:
        write_source_shard(shard, nothing)
    cases = [(tmp_path / "missing", "does not exist"), (SAMPLES, "python -m annotators run --out"),
             (nothing, "nothing to pack")]
    for dataset, expected in cases:
        assert main(["shards", "--dataset", str(dataset), "--no-progress"]) == 2
        line = one_line(capfd.readouterr().err)
        assert str(dataset) in line and expected in line, line
    assert not (nothing / "shards").exists()


# ------------------------------------------------------------------ python -m annotators


@pytest.mark.parametrize("command", [["run", "--input", str(SAMPLES)], ["download", "depth"], ["list"]])
def test_a_model_dir_that_does_not_exist_is_an_error(command, tmp_path, capfd):
    from annotators.cli import main

    missing = tmp_path / "weigths"
    out = ["--out", str(tmp_path / "out")] if command[0] == "run" else []
    assert main([*command, *out, "--model-dir", str(missing)]) == 2
    line = one_line(capfd.readouterr().err)
    assert f"--model-dir {missing} does not exist" in line
    assert ("mkdir -p" in line) if command[0] == "download" else ("Hugging Face cache" in line)
    assert not (tmp_path / "out").exists()


def test_run_with_an_address_where_nothing_listens_fails_fast(tmp_path):
    """A subprocess, bounded by its timeout (Ray itself retries for a minute and more)."""
    port = closed_port()
    proc = subprocess.run([sys.executable, "-m", "annotators", "run", "--input", str(SAMPLES),
                           "--out", str(tmp_path / "out"), "--address", f"127.0.0.1:{port}"],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert f"--address 127.0.0.1:{port}: no Ray cluster answers" in line and "leave --address out" in line
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_address_auto_without_a_cluster_says_so(monkeypatch):
    import ray._private.services as services

    from annotators.runner import ClusterUnreachable, check_ray_address

    def no_cluster(address, temp_dir=None):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "canonicalize_bootstrap_address", no_cluster)
    with pytest.raises(ClusterUnreachable, match=r"--address auto: no running Ray cluster .*ray start --head"):
        check_ray_address("auto")
    port = closed_port()  # a stale `ray start` record: auto resolves to an address where nothing listens
    monkeypatch.setattr(services, "canonicalize_bootstrap_address", lambda address, temp_dir=None: f"127.0.0.1:{port}")
    with pytest.raises(ClusterUnreachable, match=rf"auto \(resolved to 127.0.0.1:{port}\): no Ray cluster answers"):
        check_ray_address("auto")


@pytest.mark.parametrize("offline", [True, False])
def test_download_offline_fails_in_seconds_with_one_line(offline, monkeypatch, capfd):
    from huggingface_hub import constants

    from annotators.cli import main

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")  # and nothing answers there
    assert main(["download", "depth"]) == 1
    line = one_line(capfd.readouterr().err)
    assert line.startswith("error: cannot download depth-anything/Depth-Anything-V2-Large-hf@")
    assert ("HF_HUB_OFFLINE is set" if offline else "cannot be reached (Connection refused)") in line
