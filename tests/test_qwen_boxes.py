"""The Qwen2.5-VL box parser on answers shaped like the ones the model really prints."""

from __future__ import annotations

import pytest

from annotators.perception.qwen_boxes import BoxParseError, parse_qwen_boxes

# A 1024x768 photo is seen by Qwen2.5-VL (default pixel budget) as 1036x770 after smart_resize.
INPUT, IMAGE = (1036, 770), (1024, 768)


def _boxes(text, input_size=INPUT, image_size=IMAGE):
    return parse_qwen_boxes(text, input_size, image_size)


def test_fenced_json_list_with_labels_is_rescaled_to_the_image():
    text = ('```json\n[\n\t{"bbox_2d": [518, 0, 1036, 385], "label": "woman"},\n'
            '\t{"bbox_2d": [100, 400, 300, 770], "label": "golden retriever"}\n]\n```')
    parsed = _boxes(text)
    assert [b.label for b in parsed.boxes] == ["woman", "golden retriever"]
    x1, y1, x2, y2 = parsed.boxes[0].box
    assert (x1, y1) == (512.0, 0.0) and x2 == 1024.0 and y2 == pytest.approx(384.0, abs=0.5)
    assert parsed.boxes[1].box[3] == pytest.approx(768.0)
    assert parsed.dropped == []


def test_prose_around_unfenced_json_and_a_single_object():
    text = 'The main object is the red car. {"bbox_2d": [10, 20, 210, 220], "label": "red car"} It fills the left side.'
    parsed = _boxes(text, input_size=(1000, 1000), image_size=(500, 500))
    assert len(parsed.boxes) == 1 and parsed.boxes[0].label == "red car"
    assert parsed.boxes[0].box == (5.0, 10.0, 105.0, 110.0)


def test_prose_before_a_fence_and_text_after_it():
    text = ('Here are the bounding boxes for the objects in the caption:\n\n```json\n'
            '[{"bbox_2d": [56, 56, 112, 168], "label": "cup"}]\n```\n\nLet me know if you need more.')
    assert [b.label for b in _boxes(text, (224, 224), (448, 448)).boxes] == ["cup"]


def test_swapped_corners_and_out_of_bounds_boxes_are_ordered_and_clipped():
    text = '[{"bbox_2d": [300, 500, 100, 200], "label": "lamp"}, {"bbox_2d": [-40, -10, 1200, 900], "label": "room"}]'
    lamp, room = _boxes(text, (1036, 770), (1036, 770)).boxes
    assert lamp.box == (100.0, 200.0, 300.0, 500.0)
    assert room.box == (0.0, 0.0, 1036.0, 770.0)


def test_degenerate_and_outside_boxes_are_dropped_with_a_reason():
    text = ('[{"bbox_2d": [10, 10, 10, 200], "label": "line"}, {"bbox_2d": [1100, 800, 1300, 900], "label": "ghost"},'
            ' {"bbox_2d": [1, 2, 3], "label": "short"}, {"label": "nobox"}, "stray", '
            '{"bbox_2d": [0, 0, 50, 50], "label": "kept"}]')
    parsed = _boxes(text)
    assert [b.label for b in parsed.boxes] == ["kept"]
    assert len(parsed.dropped) == 5
    assert any("line" in d and "empty" in d for d in parsed.dropped)
    assert any("short" in d and "no [x1, y1, x2, y2]" in d for d in parsed.dropped)


def test_object_wrapping_a_list():
    parsed = _boxes('{"objects": [{"bbox_2d": [0, 0, 100, 100], "label": "vase"}]}', (200, 200), (400, 400))
    assert parsed.boxes[0].box == (0.0, 0.0, 200.0, 200.0)


def test_missing_label_and_bbox_alias():
    parsed = _boxes('```\n[{"bbox": [0, 0, 518, 385]}]\n```')
    assert parsed.boxes[0].label == "object"


def test_no_boxes_at_all():
    assert _boxes("I could not find any of the described objects in the image.").boxes == []
    assert _boxes("```json\n[]\n```").boxes == []


def test_malformed_json_raises_a_clear_error():
    with pytest.raises(BoxParseError, match="malformed JSON"):
        _boxes('```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "cat"},\n {"bbox_2d": [50, 60,\n```')
    with pytest.raises(BoxParseError, match="malformed JSON"):
        _boxes("[{'bbox_2d': [1, 2, 3, 4], 'label': 'python dict, not JSON'}]")


def test_truncated_generation_without_closing_fence():
    with pytest.raises(BoxParseError):
        _boxes('```json\n[\n  {"bbox_2d": [12, 40, 600, 700], "label": "horse"},\n  {"bbox_2d": [6')


def test_sizes_must_be_positive():
    with pytest.raises(ValueError, match="sizes must be positive"):
        parse_qwen_boxes("[]", (0, 770), IMAGE)
