"""Which column of a table input is the target image and which the caption (`--image-col`, `--caption-col`).

The Graph200K release and `graph200k export` name their columns (`target`,
`ref`, `canny`, `description`, ...; `annotators.inputs.fields`); any other
`datasets` dataset names its own, usually `image` and `text`. As img2dataset's
`--url_col`/`--caption_col`, the mapping says which is which; the other
columns keep their release reading (a release node column is imported, others
land in the sample's metadata). A mapped image column replaces the release's
`target` column.

Planning checks every table file against the mapping before anything is
written (`column_problem`): a mapped column that is missing or of the wrong
type, or a file where no column can be the target image, is an `InputError`
naming the input, the columns it has and the flags to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from graph200k.catalog import DEFAULT_NODES
from graph200k.nodes import NodeRegistry

from .fields import FieldRole, release_column_role
from .tables import KEY_COLUMN, holds_images, holds_text


@dataclass(frozen=True)
class ColumnMap:
    """`image`: the column holding the target image; `caption`: the column holding its caption."""

    image: str | None = None
    caption: str | None = None

    @property
    def empty(self) -> bool:
        return self.image is None and self.caption is None

    def to_json(self) -> dict:
        """The mapping as a shard plan records it (no entry for an unmapped role)."""
        return {k: v for k, v in (("image", self.image), ("caption", self.caption)) if v is not None}

    @classmethod
    def from_json(cls, d: dict | None) -> "ColumnMap":
        return cls(**(d or {}))

    def role(self, column: str, nodes: NodeRegistry = DEFAULT_NODES) -> FieldRole | None:
        """The role of an image column: the mapped target, else its release reading."""
        if column == self.image:
            return FieldRole("target")
        role = release_column_role(column, nodes)
        if self.image is not None and role is not None and role.kind == "target":
            return None  # the mapped column is the target; the release's `target` is not read
        return role


def _flags_example(schema: pa.Schema) -> str:
    """`--image-col X [--caption-col Y]` with the file's first image and first text column."""
    images = [f.name for f in schema if holds_images(f.type)]
    texts = [f.name for f in schema if holds_text(f.type) and f.name != KEY_COLUMN]
    example = f"--image-col {images[0] if images else 'COLUMN'}"
    return example + (f" --caption-col {texts[0]}" if texts else " [--caption-col COLUMN]")


def column_problem(input_path: str, file: Path, schema: pa.Schema, columns: ColumnMap,
                   nodes: NodeRegistry = DEFAULT_NODES) -> str | None:
    """Why `file` cannot give samples under `columns` (one line; see the module's docstring), or None."""
    names = schema.names
    seen = ", ".join(names) or "none"
    for flag, column, fits, holds in (("--image-col", columns.image, holds_images, "images"),
                                      ("--caption-col", columns.caption, holds_text, "text")):
        if column is None:
            continue
        if column not in names:
            return (f"{flag} {column}: input {input_path!r} has no column {column!r} (in {file.name}; "
                    f"its columns: {seen})")
        kind = schema.field(column).type
        if not fits(kind):
            hint = " (a URL or path? fetch the images first, e.g. with img2dataset)" if holds_text(kind) else ""
            return (f"{flag} {column}: column {column!r} of input {input_path!r} holds {kind}, not {holds}{hint}; "
                    f"its columns: {seen}")
    if not any(r is not None and r.kind == "target" for r in (columns.role(n, nodes) for n in names)):
        return (f"input {input_path!r} has no target image column (in {file.name}; columns seen: {seen}): name "
                f"it, and the caption column, with --image-col and --caption-col, e.g. {_flags_example(schema)}")
    return None
