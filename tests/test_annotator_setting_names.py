"""Renamed annotator settings: the generative annotators' `steps` and `guidance` are diffusers'
`num_inference_steps` and `guidance_scale` now. The former names are still read (`--set
fill_edit.steps=4`), and shard ids, stats and sample metadata keep recording them, so a dataset
annotated before the rename is complete as it is: no shard is redone."""

import pytest

from annotators.annotate import shard_id
from annotators.cli import parse_settings
from annotators.generative.depth_edit import DepthEditAnnotator
from annotators.generative.fill_edit import FillEditAnnotator
from annotators.generative.instant_style import InstantStyleAnnotator
from annotators.generative.redux_style import ReduxStyleAnnotator
from graph200k.catalog import DEFAULT_NODES

INPUTS = {"source": "0123456789abcdef", "grounded_mask": None}
# shard_id(cls(DEFAULT_NODES, settings), INPUTS) as computed before the rename (commit 1cb09db), for the
# default settings and for steps=4, guidance=7.5. A `version` bump changes them on purpose: update them then.
IDS_BEFORE_THE_RENAME = {
    "fill_edit": ("b094273dc599bc6b", "7b5a79af7c7e2197"),
    "depth_edit": ("451e861b956ca026", "03f887762e6df9ed"),
    "instant_style": ("09e712d424bf53c9", "ed8959bfd86ade0e"),
    "redux_style": ("9102fa1fd49cc844", "e4e9cdf0f196204c"),
}
GENERATIVE = [FillEditAnnotator, DepthEditAnnotator, InstantStyleAnnotator, ReduxStyleAnnotator]


@pytest.mark.parametrize("cls", GENERATIVE, ids=lambda c: c.name)
def test_shard_ids_are_the_ones_made_before_the_rename(cls):
    default_id, changed_id = IDS_BEFORE_THE_RENAME[cls.name]
    assert shard_id(cls(DEFAULT_NODES, {}), INPUTS) == default_id
    new_names = cls(DEFAULT_NODES, {"num_inference_steps": "4", "guidance_scale": "7.5"})
    former_names = cls(DEFAULT_NODES, {"steps": "4", "guidance": "7.5"})
    assert (new_names.settings.num_inference_steps, new_names.settings.guidance_scale) == (4, 7.5)
    assert new_names.settings == former_names.settings
    assert shard_id(new_names, INPUTS) == shard_id(former_names, INPUTS) == changed_id


def test_stats_and_metadata_record_the_former_names():
    annotator = FillEditAnnotator(DEFAULT_NODES, {"num_inference_steps": "4"})
    recorded = annotator.output_settings()  # each node shard's stats["settings"]
    assert (recorded["steps"], recorded["guidance"]) == (4, 30.0)
    assert "num_inference_steps" not in recorded and "guidance_scale" not in recorded
    meta = annotator.metadata_settings("seed", "num_inference_steps", "guidance_scale", "resolution", "mask_dilate",
                                       "feather")
    assert list(meta.items()) == [("seed", 0), ("steps", 4), ("guidance", 30.0), ("resolution", 1024),
                                  ("mask_dilate", 8), ("feather", 8)]  # the keys and order of the release's records


def test_the_former_names_are_accepted_on_the_command_line():
    settings = parse_settings(["fill_edit.steps=4", "depth_edit.guidance=2.5"], None)
    assert FillEditAnnotator(DEFAULT_NODES, settings["fill_edit"]).settings.num_inference_steps == 4
    assert DepthEditAnnotator(DEFAULT_NODES, settings["depth_edit"]).settings.guidance_scale == 2.5


def test_a_setting_given_under_both_names_is_refused():
    with pytest.raises(ValueError, match=r"fill_edit\.num_inference_steps is given twice \('steps' is its former"):
        FillEditAnnotator(DEFAULT_NODES, {"steps": "4", "num_inference_steps": "5"})
    with pytest.raises(ValueError, match="no setting 'step'.*num_inference_steps"):
        FillEditAnnotator(DEFAULT_NODES, {"step": "4"})  # the list of settings names the current ones
