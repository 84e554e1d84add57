"""The README's Python example runs as written, against the bundled pretrained pipeline."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_has_the_two_setup_commands_first() -> None:
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    assert "discrete-latents sample" in commands[0] and "pip install torch==2.13.0" in commands[0]
    assert "pytest" in commands[1] and '".[dev]"' in commands[1]


@pytest.mark.parametrize("block", python_blocks(README.read_text()))
def test_readme_python_example_runs(block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    assert (tmp_path / "sevens.png").is_file()
    assert (tmp_path / "my-mnist" / "pipeline.json").is_file()
    assert tuple(namespace["sevens"].shape) == (16, 1, 28, 28)  # type: ignore[attr-defined]
    assert tuple(namespace["codes"].shape) == (16, 7, 7)  # type: ignore[attr-defined]
