"""The bad and awkward inputs of issue 4, built from a real sample image (shared by several tests)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
PHOTO = SAMPLES / "data-00004-of-00022-7170.jpg"  # a real 512x512 Graph200K target


def photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A real photo, resized small so tests stay fast; not square, so rotations are visible."""
    return Image.open(PHOTO).convert("RGB").resize(size, Image.BICUBIC)


def jpeg(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def truncated_jpeg() -> bytes:
    data = jpeg(photo((256, 192)))
    return data[: len(data) // 2]


def cmyk_jpeg() -> bytes:
    return jpeg(photo().convert("CMYK"))


def png16() -> bytes:
    grey = np.asarray(photo().convert("L"), dtype=np.uint16) * 257
    return png(Image.fromarray(grey, mode="I;16"))


def grayscale_jpeg() -> bytes:
    return jpeg(photo().convert("L"))


def rgba_png() -> bytes:
    """Left half opaque photo, right half fully transparent (must come out white)."""
    image = photo().convert("RGBA")
    alpha = np.full((image.height, image.width), 255, np.uint8)
    alpha[:, image.width // 2:] = 0
    image.putalpha(Image.fromarray(alpha))
    return png(image)


def exif_rotated_jpeg() -> bytes:
    """Stored 96x64 with orientation 6 (rotate 90 CW to display): shows as 64x96."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg(photo(), exif=exif.tobytes())


def one_pixel_png() -> bytes:
    return png(Image.new("RGB", (1, 1), (200, 30, 40)))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header claiming 10 gigapixels, with a tiny (never decoded) body."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


GOOD = {  # file name -> bytes; each must end annotated
    "cmyk.jpg": cmyk_jpeg,
    "sixteen bit.png": png16,
    "grey.jpg": grayscale_jpeg,
    "rgba.png": rgba_png,
    "rotated.jpg": exif_rotated_jpeg,
    "tiny.png": one_pixel_png,
    "café ünïcode.jpg": lambda: jpeg(photo()),
    "holiday.2024.summer.jpg": lambda: jpeg(photo()),
    "dup.jpg": lambda: jpeg(photo()),
    "dup.png": lambda: png(photo()),
    "a b.jpg": lambda: jpeg(photo()),
    "a_b.jpg": lambda: jpeg(photo()),
}
BAD = {  # file name -> (bytes, words the recorded reason must contain)
    "truncated.jpg": (truncated_jpeg, "incomplete"),
    "empty.jpg": (lambda: b"", "empty"),
    "notes.jpg": (lambda: b"this is a text file, not a JPEG\n", "not a readable image"),
    "bomb.png": (bomb_png, "decompression bomb"),
}


def write_bad_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in GOOD.items():
        (folder / name).write_bytes(make())
    for name, (make, _) in BAD.items():
        (folder / name).write_bytes(make())


def mpo_jpeg(image: Image.Image | None = None, orientation: int = 1) -> bytes:
    """A phone-style multi-picture JPEG (Pillow reads it as format "MPO"): the photo plus a small second frame."""
    image = image if image is not None else photo()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, format="MPO", save_all=True, append_images=[image.resize((32, 24))], quality=92,
               exif=exif.tobytes())
    return buf.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes | tuple[str, str]]]) -> Path:
    """A tar with members in exactly this order: `(name, bytes)` files, `(name, ("hardlink"|"symlink", target))` links.

    GNU tar stores a second copy of a file as a hardlink to the first; duplicate and
    out-of-order members are what `tar -r` and hand-made tars produce."""
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            if isinstance(body, tuple):
                kind, target = body
                info.type = tarfile.LNKTYPE if kind == "hardlink" else tarfile.SYMTYPE
                info.linkname = target
                tar.addfile(info)
                continue
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path
