"""Safe resume: nothing in a checkpoint folder runs as code, and `resume=latest` never crash-loops on a damaged
checkpoint but falls back to the newest intact one, saying which it skipped and why."""

import json
import os
import shlex
import shutil

import pytest
import torch

from tests.test_train_loop import lora_of, mixed_grids, same_lora, tiny_config
from train.checkpoints import (CheckpointError, checkpoint_problem, commit_checkpoint, prune_checkpoints, write_manifest,
                               write_state)
from train.data import InMemoryGrids
from train.lora import LORA_WEIGHT_NAME
from train.trainer import Trainer, list_checkpoints

pytestmark = pytest.mark.usefixtures("one_torch_thread", "fresh_accelerate_state")

# a checkpoint every 2 steps (kept), a warm-up schedule so the scheduler's state matters, a strong LoRA
RUN = ("optim.lr=2e-2", "lora.alpha=4", "optim.lr_scheduler=constant_with_warmup", "optim.warmup_steps=2",
       "checkpoint.every=2", "checkpoint.keep=5")


def run(tiny, out, *overrides) -> Trainer:
    trainer = Trainer(tiny_config(tiny, out, *RUN, *overrides), train_data=InMemoryGrids(mixed_grids()))
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def trained(one_torch_thread, tiny_flux_fill, tmp_path_factory):
    """Three steps with checkpoints 2 and 3, and what four straight steps end with."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    three = tmp_path_factory.mktemp("three")
    run(tiny_flux_fill, three, "train.max_steps=3")
    AcceleratorState._reset_state(reset_partial_state=True)
    straight = run(tiny_flux_fill, tmp_path_factory.mktemp("straight"), "train.max_steps=4")
    result = dict(three=three, lora=lora_of(straight), lr=straight.lr_scheduler.get_last_lr())
    AcceleratorState._reset_state(reset_partial_state=True)
    return result


@pytest.fixture
def out(trained, tmp_path):
    """A copy of the three-step run's output folder to damage."""
    shutil.copytree(trained["three"], tmp_path / "run")
    return tmp_path / "run"


def checkpoint(out, step: int):
    return out / "checkpoints" / f"checkpoint-{step:07d}"


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "truncated LoRA file": lambda c: truncate(c / LORA_WEIGHT_NAME),
    "truncated optimizer file": lambda c: truncate(c / "optimizer.bin"),
    "empty pickle": lambda c: (c / "random_states_0.pkl").write_bytes(b""),
    "deleted LoRA file": lambda c: (c / LORA_WEIGHT_NAME).unlink(),
    "unfinished (no manifest)": lambda c: (c / "manifest.json").unlink(missing_ok=True),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_latest_falls_back_to_the_previous_intact_checkpoint_and_continues_exactly(
        damage, trained, out, tiny_flux_fill, capsys):
    DAMAGE[damage](checkpoint(out, 3))
    resumed = run(tiny_flux_fill, out, "train.max_steps=4", "checkpoint.resume=latest")
    printed = capsys.readouterr().out
    assert "skipped" in printed and "checkpoint-0000003" in printed
    assert f"resumed from {checkpoint(out, 2)} at step 2" in printed
    assert resumed.state.step == 4
    assert same_lora(lora_of(resumed), trained["lora"])  # 2 + 2 steps == 4 straight
    assert resumed.lr_scheduler.get_last_lr() == trained["lr"]


def test_foreign_folders_and_files_are_ignored(trained, out, tiny_flux_fill, capsys):
    root = out / "checkpoints"
    (root / "checkpoint-0000009").mkdir()  # empty
    (root / "checkpoint-abc").mkdir()
    (root / "checkpoint-0000010").write_text("not a folder")
    (root / "notes.txt").write_text("hello")
    (root / ".tmp-checkpoint-0000011").mkdir()  # what a kill during a save leaves
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-0000002", "checkpoint-0000003", "checkpoint-0000009"]
    resumed = run(tiny_flux_fill, out, "train.max_steps=4", "checkpoint.resume=latest")
    printed = capsys.readouterr().out
    assert "checkpoint-0000009" in printed and f"resumed from {checkpoint(out, 3)} at step 3" in printed
    assert same_lora(lora_of(resumed), trained["lora"])
    assert (root / "checkpoint-abc").is_dir() and (root / "notes.txt").is_file()  # never deleted either


class RunsAShellCommand:
    """A pickle that, once loaded with `weights_only=False`, runs `touch <marker>`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.mark.parametrize("name", ["data_state_rank0.pt", "custom_checkpoint_1.pkl", "trainer_state_rank0.json"])
def test_a_crafted_pickle_in_a_checkpoint_does_not_run(name, trained, out, tiny_flux_fill, tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save(RunsAShellCommand(marker), checkpoint(out, 3) / name)
    resumed = run(tiny_flux_fill, out, "train.max_steps=4", "checkpoint.resume=latest")
    assert not marker.exists()
    printed = capsys.readouterr().out
    # an unknown file is never read; a pickle where state is expected makes the checkpoint unusable
    expected = 3 if name == "data_state_rank0.pt" else 2
    assert f"resumed from {checkpoint(out, expected)} at step {expected}" in printed
    assert same_lora(lora_of(resumed), trained["lora"])


def test_a_pickle_in_place_of_the_json_state_is_refused_even_with_a_matching_manifest(out, tiny_flux_fill, tmp_path):
    """The manifest proves integrity, not authorship: a forger rewrites it too. The state is still never unpickled."""
    marker = tmp_path / "pwned"
    torch.save(RunsAShellCommand(marker), checkpoint(out, 3) / "trainer_state_rank0.json")
    write_manifest(checkpoint(out, 3), 3)
    trainer = Trainer(tiny_config(tiny_flux_fill, out, *RUN), train_data=InMemoryGrids(mixed_grids()))
    with pytest.raises(CheckpointError, match="trainer_state_rank0.json is not JSON"):
        trainer.resume("latest")
    assert not marker.exists()


def test_a_named_checkpoint_that_does_not_verify_fails_naming_the_file(out, tiny_flux_fill):
    truncate(checkpoint(out, 3) / "optimizer.bin")
    trainer = Trainer(tiny_config(tiny_flux_fill, out, *RUN), train_data=InMemoryGrids(mixed_grids()))
    with pytest.raises(CheckpointError, match=r"'checkpoint.resume'.*optimizer.bin is truncated \(\d+ of \d+ bytes\)"):
        trainer.resume(str(checkpoint(out, 3)))
    assert trainer.resume(str(checkpoint(out, 2))) == checkpoint(out, 2) and trainer.state.step == 2


def test_latest_with_no_intact_checkpoint_fails_instead_of_starting_over(out, tiny_flux_fill):
    """Starting fresh would prune the damaged checkpoints a few saves later."""
    for step in (2, 3):
        truncate(checkpoint(out, step) / LORA_WEIGHT_NAME)
    trainer = Trainer(tiny_config(tiny_flux_fill, out, *RUN), train_data=InMemoryGrids(mixed_grids()))
    with pytest.raises(CheckpointError, match="none of the 2 checkpoints .* is intact"):
        trainer.resume("latest")
    assert trainer.state.step == 0


# ---------------------------------------------------------------- train/checkpoints.py on plain folders


def fake_checkpoint(folder, step=1):
    """The files a checkpoint must have, plus a shard folder as FSDP writes one per checkpoint."""
    folder.mkdir(parents=True)
    for name in (LORA_WEIGHT_NAME, "trainer.json", "trainer_state_rank0.json"):
        (folder / name).write_bytes(os.urandom(64))
    (folder / "optimizer_0").mkdir()
    (folder / "optimizer_0" / "__1_0.distcp").write_bytes(os.urandom(256))
    write_manifest(folder, step)
    return folder


def test_the_manifest_covers_every_ranks_shard_files(tmp_path):
    folder = fake_checkpoint(tmp_path / "checkpoint-0000001")
    assert checkpoint_problem(folder) is None
    shard = folder / "optimizer_0" / "__1_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    assert checkpoint_problem(folder) == "optimizer_0/__1_0.distcp is truncated (100 of 256 bytes)"
    shard.write_bytes(bytes(256))
    assert "optimizer_0/__1_0.distcp does not match its sha256" in checkpoint_problem(folder)


def test_a_manifest_naming_paths_outside_the_folder_is_refused(tmp_path):
    folder = fake_checkpoint(tmp_path / "checkpoint-0000001")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["../../etc/passwd"] = {"size": 1, "sha256": "0"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert "outside the folder" in checkpoint_problem(folder)


def test_every_file_and_folder_is_flushed_before_the_rename(tmp_path, monkeypatch):
    """A rename that reaches the disk before the data would leave a complete-looking folder of empty files."""
    events = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(a))), replace(a, b)))
    root = tmp_path / "checkpoints"
    tmp = fake_checkpoint(root / ".tmp-checkpoint-0000001")
    events.clear()
    final = commit_checkpoint(tmp, root / "checkpoint-0000001", 1)
    rename = events.index(("replace", str(tmp)))
    flushed = {path for kind, path in events[:rename] if kind == "fsync"}
    written = {str(tmp / p.relative_to(final)) for p in final.rglob("*")}
    assert written <= flushed and str(tmp) in flushed  # every file and folder, the manifest included
    assert ("fsync", str(root)) in events[rename:]  # and the rename itself
    assert checkpoint_problem(final) is None


def test_saving_a_step_again_replaces_its_folder_whole(tmp_path):
    root = tmp_path / "checkpoints"
    old = fake_checkpoint(root / "checkpoint-0000001")
    (old / "stale.bin").write_bytes(b"x")
    new = fake_checkpoint(root / ".tmp-checkpoint-0000001")
    commit_checkpoint(new, old, 1)
    assert not (old / "stale.bin").exists() and checkpoint_problem(old) is None
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-0000001"]


def test_pruning_deletes_only_checkpoints_this_trainer_wrote(tmp_path):
    for step in (1, 2, 3):
        fake_checkpoint(tmp_path / "checkpoints" / f"checkpoint-{step:07d}", step)
    (tmp_path / "checkpoints" / "checkpoint-0000000").mkdir()  # foreign: no manifest
    deleted = prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in deleted] == ["checkpoint-0000001"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000000", "checkpoint-0000002",
                                                           "checkpoint-0000003"]


@pytest.mark.parametrize("state, match", [
    ({"position": torch.tensor(3)}, r"state.json.position: a Tensor cannot be stored as JSON"),
    ({"by_rank": {0: 1}}, r"state.json.by_rank: key 0 is a int, JSON keys are strings"),
])
def test_a_state_that_json_cannot_hold_is_refused_when_saved(state, match, tmp_path):
    with pytest.raises(TypeError, match=match):
        write_state(tmp_path / "state.json", state)
    assert not (tmp_path / "state.json").exists()
