import json
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture(scope="session")
def reference_tasks() -> dict:
    """The reference implementation's node and task lists (VisualCloze, Apache-2.0)."""
    return json.loads((TESTS / "data" / "reference-tasks.json").read_text())
