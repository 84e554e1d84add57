"""The README starts with the two setup commands (its Python blocks run in test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_has_the_two_setup_commands_first() -> None:
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL)
    assert "discrete-latents sample" in commands[0] and "pip install torch==2.13.0" in commands[0]
    assert "pytest" in commands[1] and '".[dev]"' in commands[1]
