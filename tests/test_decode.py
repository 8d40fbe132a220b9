"""graph200k.decode: every awkward input becomes a clean 8-bit image or a clear refusal."""

import numpy as np
import pytest
from PIL import Image

from graph200k.decode import MAX_PIXELS, ImageDecodeError, decode_image, image_size, normalise_image
from tests import badinputs as bi


@pytest.mark.parametrize("name", sorted(bi.BAD))
def test_bad_inputs_are_refused_with_a_reason(name):
    make, words = bi.BAD[name]
    with pytest.raises(ImageDecodeError, match=words):
        decode_image(make())


def test_truncated_jpeg_is_an_error_not_a_grey_image():
    # Pillow would fill the missing half with grey if LOAD_TRUNCATED_IMAGES were set.
    with pytest.raises(ImageDecodeError, match="incomplete or corrupt"):
        normalise_image(bi.truncated_jpeg())


def test_bomb_is_refused_from_the_header_at_the_documented_limit():
    with pytest.raises(ImageDecodeError, match=str(MAX_PIXELS)):
        image_size(bi.bomb_png())
    assert MAX_PIXELS == 8192 * 8192


def test_cmyk_becomes_rgb_with_the_same_colours():
    rgb = decode_image(bi.cmyk_jpeg())
    ref = np.asarray(bi.photo(), dtype=np.float32)
    assert rgb.shape == ref.shape and rgb.dtype == np.uint8
    assert np.abs(rgb.astype(np.float32) - ref).mean() < 12


def test_16bit_png_is_scaled_not_clipped():
    grey = decode_image(bi.png16(), mode="L")
    ref = np.asarray(bi.photo().convert("L"))
    assert grey.dtype == np.uint8
    assert np.abs(grey.astype(int) - ref.astype(int)).max() <= 1


def test_grayscale_becomes_three_equal_channels():
    rgb = decode_image(bi.grayscale_jpeg())
    assert rgb.shape[2] == 3
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_rgba_is_composited_on_white():
    rgb = decode_image(bi.rgba_png())
    half = rgb.shape[1] // 2
    assert (rgb[:, half:] == 255).all()
    assert np.array_equal(rgb[:, :half], np.asarray(bi.photo())[:, :half])


def test_exif_orientation_is_applied():
    data = bi.exif_rotated_jpeg()
    rgb = decode_image(data)
    assert rgb.shape[:2] == (96, 64)  # stored 96 wide, displayed 64 wide
    assert image_size(data) == (64, 96)
    expected = np.asarray(bi.photo().transpose(Image.Transpose.ROTATE_270), dtype=np.float32)
    assert np.abs(rgb.astype(np.float32) - expected).mean() < 8
    stored = normalise_image(data)
    assert stored.reencoded and (stored.width, stored.height) == (64, 96) and stored.ext == "jpg"


def test_one_pixel_image_is_kept():
    assert decode_image(bi.one_pixel_png()).tolist() == [[[200, 30, 40]]]


def test_plain_rgb_jpeg_is_stored_byte_for_byte():
    data = bi.PHOTO.read_bytes()
    stored = normalise_image(data)
    assert stored.data == data and not stored.reencoded and stored.ext == "jpg"


def test_single_channel_map_may_stay_grey():
    data = bi.png(bi.photo().convert("L"))
    assert normalise_image(data, modes=("L", "RGB")).data == data
    assert not normalise_image(data).data == data  # as a target it becomes RGB


def test_image_between_our_limit_and_pillows_is_refused_by_ours():
    with pytest.raises(ImageDecodeError, match="9000x9000 = 81000000 pixels; the limit is 67108864"):
        decode_image(bi.bomb_png(9000, 9000))
