"""Every Python block of README.md and docs/*.md runs as written, so the documentation cannot rot.

The blocks of one page run in order in one namespace (a page builds on its earlier blocks), in a
fresh working folder. A block may be skipped only for a reason the test machine cannot meet: the
line before it reads ``<!-- skip: network -->`` (the Hub, a download, a ``pip install``) or
``<!-- skip: gpu -->``.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- skip: (?P<skip>[a-z]+) -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)
REASONS = {"network", "gpu"}


def blocks(page: Path) -> list[tuple[str | None, str]]:
    return [(m["skip"], m["code"]) for m in BLOCK.finditer(page.read_text())]


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.name)
def test_every_python_block_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 restore_registries: None) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    module = types.ModuleType(f"docs_{page.stem}")  # a real module: dataclasses look classes up in it
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for number, (skip, code) in enumerate(blocks(page), 1):
        if skip is not None:
            assert skip in REASONS, f"{page.name} block {number}: skipped for {skip!r}, allowed: {sorted(REASONS)}"
            continue
        try:
            exec(compile(code, f"{page.name}, block {number}", "exec"), namespace)  # noqa: S102 - our own docs
        except Exception as err:  # noqa: BLE001 - name the block that failed
            raise AssertionError(f"{page.name} block {number} fails as written: {err!r}\n{code}") from err


def test_the_pattern_finds_the_blocks() -> None:
    text = "x\n<!-- skip: network -->\n```python\na = 1\n```\n```python\nb = 2\n```\n"
    found = [(m["skip"], m["code"]) for m in BLOCK.finditer(text)]
    assert found == [("network", "a = 1\n"), (None, "b = 2\n")]
