"""A Griffe extension that renders the library's docstrings well in the API reference.

The docstrings follow the Google style with two habits of the Sphinx world:

* an ``Example:`` section (singular), which Griffe knows only as ``Examples:``; left alone, its
  ``>>>`` lines would render as nested block quotes instead of a highlighted session;
* reST roles such as ``:class:`~discrete_latents.VQVAE``` and ``:meth:`...```, which Markdown
  shows verbatim; they become inline code with the name Sphinx would print.

Only the docstring text is rewritten, before it is parsed; the source is never touched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)
# :role:`target`, :role:`~target` or :role:`title <target>`
_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|mod|data|exc|obj|const):`(~?)([^`<]+?)(?:\s*<([^`>]+)>)?`")


def _role(match: re.Match[str]) -> str:
    tilde, text, target = match.groups()
    if target is None and tilde:
        text = text.rsplit(".", 1)[-1]
    return f"`{text.strip()}`"


class DocstringStyle(griffe.Extension):
    """Rewrite ``Example:`` to ``Examples:`` and reST roles to inline code."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
        obj.docstring.value = _ROLE.sub(_role, text)
