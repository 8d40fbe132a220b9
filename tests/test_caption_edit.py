"""The caption-rewrite prompt and the parsing of language-model replies (good and bad, as models write them)."""

import json

import pytest

from annotators.generative.caption_edit import CaptionEdit, EditParseError, edit_messages, parse_caption_edit
from tests.conftest import REPO

SAMPLES = REPO / "samples"

CAPTION = json.loads((SAMPLES / "2c4e256fa512cb7e7f433f4c7f9101de.json").read_text())["caption"]
EDIT = CaptionEdit(
    name="a grey rabbit",
    description="A small grey rabbit with long upright ears and a white tail.",
    caption="A digital illustration of a small grey rabbit sitting in the center of a sunlit meadow, surrounded by "
            "white daisies with yellow centers, warm golden light, shallow depth of field.",
)
BODY = json.dumps(EDIT.to_json(), indent=2)

GOOD_REPLIES = {
    "bare JSON": BODY,
    "json code fence": f"```json\n{BODY}\n```",
    "prose around a fence": f"Sure! Here is the edited caption:\n```\n{BODY}\n```\nLet me know if you want another.",
    "prose before the object": f"Here is the result: {BODY}",
    "reasoning block first": "<think>The subject is a kitten {a cat}. A rabbit fits the meadow.</think>\n" + BODY,
    "capitalised keys": json.dumps({"Name": EDIT.name, "Description": EDIT.description, "Caption": EDIT.caption}),
    "extra keys": json.dumps({**EDIT.to_json(), "reason": "rabbits live in meadows"}),
    "a list holding the edit": "[" + BODY + "]",
}


@pytest.mark.parametrize("reply", GOOD_REPLIES.values(), ids=GOOD_REPLIES.keys())
def test_good_replies_parse_to_the_edit(reply):
    assert parse_caption_edit(reply, original_caption=CAPTION) == EDIT


def test_braces_and_escaped_quotes_inside_strings_do_not_end_the_object():
    caption = 'A rabbit holding a sign that reads "{hello}" in a sunlit meadow of daisies.'
    reply = json.dumps({"name": "rabbit", "description": "A rabbit with a sign.", "caption": caption}) + " }"
    assert parse_caption_edit(reply).caption == caption


def test_whitespace_in_values_is_normalised():
    reply = json.dumps({"name": "  grey\nrabbit ", "description": "A rabbit.",
                        "caption": "A  grey rabbit\n in a meadow."})
    edit = parse_caption_edit(reply)
    assert (edit.name, edit.caption) == ("grey rabbit", "A grey rabbit in a meadow.")


BAD_REPLIES = {
    "prose only": ("I replaced the kitten with a rabbit sitting among the daisies.", "no JSON object"),
    "cut off by max_new_tokens": (BODY[: len(BODY) // 2], "cut off"),
    "single-quoted dict": (str(EDIT.to_json()), "invalid JSON"),
    "trailing comma": (BODY[:-2] + ",\n}", "invalid JSON"),
    "missing caption": (json.dumps({"name": EDIT.name, "description": EDIT.description}), "lacks 'caption'"),
    "caption not a string": (json.dumps({**EDIT.to_json(), "caption": ["a", "rabbit"]}), "must be a string"),
    "empty name": (json.dumps({**EDIT.to_json(), "name": "  "}), "'name' is empty"),
    "caption too short": (json.dumps({**EDIT.to_json(), "caption": "rabbit"}), "too short"),
    "original caption echoed": (json.dumps({**EDIT.to_json(), "caption": CAPTION}), "unchanged"),
    "null caption": (json.dumps({**EDIT.to_json(), "caption": None}), "must be a string"),
    "degenerate tiny-model output": ('{e ": ": stue ": ", ": statatue', "cut off"),
}


@pytest.mark.parametrize("reply,why", BAD_REPLIES.values(), ids=BAD_REPLIES.keys())
def test_bad_replies_raise_an_error_that_says_why(reply, why):
    with pytest.raises(EditParseError, match=why):
        parse_caption_edit(reply, original_caption=CAPTION)


def test_the_prompt_carries_the_caption_and_asks_for_our_keys():
    messages = edit_messages(CAPTION, "object", item="kitten")
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert CAPTION in user and "'kitten'" in user
    assert all(f'"{key}"' in user for key in ("name", "description", "caption"))
    assert "background" in user  # the object edit keeps the background
    assert "same spatial arrangement" in edit_messages(CAPTION, "scene")[1]["content"]


def test_the_prompt_refuses_an_empty_caption_or_an_unknown_kind():
    with pytest.raises(ValueError, match="no caption"):
        edit_messages("  ", "object")
    with pytest.raises(ValueError, match="unknown edit kind"):
        edit_messages(CAPTION, "colour")
