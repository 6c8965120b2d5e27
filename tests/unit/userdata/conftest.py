from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.userdata.pki import fill

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def fixture_text():
    """Read a hand-written fixture with its PEM placeholders filled."""

    def read(name: str) -> str:
        return fill((FIXTURES / name).read_text())

    return read
