"""No pickle anywhere, and data never chooses code (reliability cases PK-03..PK-05, PL-10).

A source scan of ``src/`` rejects every way to unpickle or evaluate text (``torch.load``,
``pickle``, ``eval``/``exec``, ``weights_only=False``, ``allow_pickle=True``). The scanner is
itself tested on snippets, so a scan that finds nothing means something. Configs naming an import
path or a ``_target_`` are refused before anything is imported.
"""

from __future__ import annotations

import ast
import io
import json
import re
import sys
import tokenize
from pathlib import Path

import pytest

from discrete_latents import QUANTIZERS, VQVAE, CausalPriorConfig
from discrete_latents.errors import ConfigError, UnknownComponentError

SRC = Path(__file__).resolve().parents[1] / "src" / "discrete_latents"

# Checked on code with comments and string literals removed, so docs may talk about pickles.
FORBIDDEN_PATTERNS = {
    "torch.load": re.compile(r"(?<![.\w])torch\s*\.\s*load\b"),
    "import pickle": re.compile(r"^\s*(?:import|from)\s+(?:c?pickle|_pickle|dill|cloudpickle|joblib|shelve)\b",
                                re.MULTILINE),
    "pickle.load": re.compile(
        r"(?<![.\w])(?:c?pickle|_pickle|dill|cloudpickle|joblib)\s*\.\s*(?:load|loads|Unpickler)\b"),
    # The builtins only: model.eval() is a method call, "def eval(self)" defines one.
    "eval(": re.compile(r"(?<![.\w])(?<!def )eval\s*\("),
    "exec(": re.compile(r"(?<![.\w])(?<!def )exec\s*\("),
    "__import__(": re.compile(r"(?<![.\w])__import__\s*\("),
    "weights_only=False": re.compile(r"\bweights_only\s*=\s*False\b"),
    "allow_pickle=True": re.compile(r"\ballow_pickle\s*=\s*True\b"),
}
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def strip_comments_and_strings(source: str) -> str:
    """The code of ``source`` with comments and string literals blanked out, spaces around '.' removed."""
    lines = source.splitlines(keepends=True)
    blank = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in blank:
            continue
        (row1, col1), (row2, col2) = token.start, token.end
        for row in range(row1 - 1, row2):
            line = lines[row]
            start = col1 if row == row1 - 1 else 0
            end = col2 if row == row2 - 1 else len(line.rstrip("\n"))
            lines[row] = line[:start] + " " * (end - start) + line[end:]
    return re.sub(r"\s*\.\s*", ".", "".join(lines))  # "torch . load" reads as "torch.load"


def ast_findings(source: str) -> list[str]:
    """Imports and calls that unpickle or evaluate, found in the syntax tree (aliases included)."""
    found = []
    torch_names = {"torch"}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PICKLE_MODULES:
                    found.append(f"import {alias.name}")
                if alias.name == "torch" and alias.asname:
                    torch_names.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLE_MODULES:
                found.append(f"from {node.module} import")
            if node.module in ("torch", "torch.serialization") and any(a.name == "load" for a in node.names):
                found.append("from torch import load")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("eval", "exec", "__import__"):
                found.append(f"{func.id}(")
            if (isinstance(func, ast.Attribute) and func.attr == "load" and isinstance(func.value, ast.Name)
                    and func.value.id in torch_names):
                found.append("torch.load")
            for keyword in node.keywords:
                if isinstance(keyword.value, ast.Constant):
                    if keyword.arg == "weights_only" and keyword.value.value is False:
                        found.append("weights_only=False")
                    if keyword.arg == "allow_pickle" and keyword.value.value is True:
                        found.append("allow_pickle=True")
    return found


def scan(source: str) -> list[str]:
    code = strip_comments_and_strings(source)
    findings = [name for name, pattern in FORBIDDEN_PATTERNS.items() if pattern.search(code)]
    return sorted(set(findings) | set(ast_findings(source)))


# the scanner catches what it should, and only that ----------------------------------------------------
@pytest.mark.parametrize("snippet", [
    "import torch\nstate = torch.load('model.bin')\n",
    "import torch\nstate = torch . load(path, weights_only=True)\n",
    "import torch as th\nth.load(path)\n",
    "from torch import load\nload(path)\n",
    "import pickle\n",
    "import os, pickle\n",
    "from pickle import loads\n",
    "import dill as pickle\n",
    "data = pickle.loads(blob)\n",
    "x = eval('1 + 1')\n",
    "exec(code)\n",
    "mod = __import__(name)\n",
    "torch.load(path, weights_only=False)\n",
    "np.load(path, allow_pickle=True)\n",
    "def f():\n    return eval (text)\n",
])
def test_scanner_flags_forbidden_code(snippet: str) -> None:
    assert scan(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "model.eval()\n",
    "self.quantizer.eval()\nmodule.train(False)\n",
    '"""Never uses torch.load or pickle.loads; eval(x) in a docstring is text."""\n',
    "# we never call torch.load( or exec( here\nx = 1\n",
    "import safetensors.torch\nsafetensors.torch.load_file(path)\nsafetensors.torch.load(blob)\n",
    "import json\njson.load(handle)\njson.loads(text)\n",
    "message = f'no pickle: {name}'\n",
    "def evaluate(x):\n    return x\nevaluate(1)\nretrieval(2)\n",
    "entry.load()\n",
    "class Pipeline:\n    def eval(self):\n        return self\n",
])
def test_scanner_accepts_safe_code(snippet: str) -> None:
    assert scan(snippet) == [], snippet


# PK-03, PK-04: the library's source ---------------------------------------------------------------------------
def source_files() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) >= 10 and SRC / "_safetensors.py" in files  # the scan really covers the package
    return files


def test_pk04_source_scan_finds_no_pickle_eval_or_exec() -> None:
    findings = {}
    for path in source_files():
        hits = scan(path.read_text(encoding="utf-8"))
        if hits:
            findings[str(path.relative_to(SRC))] = hits
    assert findings == {}


def test_pk03_no_load_path_can_reach_torch_load(monkeypatch, tmp_path: Path, tiny_vqvae_config) -> None:
    """Even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, loading never calls torch.load or pickle."""
    import pickle

    import torch

    def forbidden(*args, **kwargs):
        raise AssertionError("a pickle loader was called")

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    model = VQVAE(tiny_vqvae_config)
    model.save_pretrained(tmp_path)
    loaded = VQVAE.from_pretrained(tmp_path)
    assert torch.equal(loaded.quantizer.weight, model.quantizer.weight)


# PK-05, PL-10: configs never choose code -------------------------------------------------------------------
TRIPWIRE_MODULE = "dl_config_tripwire"


@pytest.fixture
def tripwire_module(tmp_path: Path, monkeypatch) -> Path:
    """An importable module that creates a marker file when imported."""
    marker = tmp_path / "imported"
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{TRIPWIRE_MODULE}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "def system(*args):\n    return 0\nclass Evil:\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, TRIPWIRE_MODULE, raising=False)
    return marker


def test_tripwire_module_is_armed(tripwire_module: Path) -> None:
    import importlib

    importlib.import_module(TRIPWIRE_MODULE)
    assert tripwire_module.exists()
    del sys.modules[TRIPWIRE_MODULE]


@pytest.mark.parametrize("changes, error, fragment", [
    ({"_target_": "os.system"}, ConfigError, "unknown key"),
    ({"_target_": f"{TRIPWIRE_MODULE}.Evil"}, ConfigError, "unknown key"),
    ({"quantizer": "os:system"}, ConfigError, "registry name"),
    ({"quantizer": f"{TRIPWIRE_MODULE}:Evil"}, ConfigError, "registry name"),
    ({"encoder": f"{TRIPWIRE_MODULE}:Evil"}, ConfigError, "registry name"),
    ({"quantizer": "os.system"}, UnknownComponentError, "unknown quantizer 'os.system'"),
    ({"quantizer": TRIPWIRE_MODULE}, UnknownComponentError, "unknown quantizer"),
    ({"decoder": f"{TRIPWIRE_MODULE}.evil"}, UnknownComponentError, "unknown decoder"),
    ({"quantizer_kwargs": {"_target_": f"{TRIPWIRE_MODULE}.Evil", "codebook_size": 4}}, ConfigError, "_target_"),
])
def test_pk05_config_naming_code_imports_nothing(tmp_path: Path, tripwire_module: Path, tiny_vqvae_config,
                                                 changes: dict, error: type[Exception], fragment: str) -> None:
    folder = tmp_path / "model"
    VQVAE(tiny_vqvae_config).save_pretrained(folder)
    VQVAE.from_pretrained(folder)  # warm up: any lazy import of the normal path happens now
    data = {**tiny_vqvae_config.to_dict(), **changes}
    (folder / "config.json").write_text(json.dumps(data))
    before = set(sys.modules)
    with pytest.raises(error, match=re.escape(fragment)):
        VQVAE.from_pretrained(folder)
    assert set(sys.modules) - before == set()
    assert not tripwire_module.exists()


def test_pk05_registry_lookup_of_import_paths_imports_nothing(tripwire_module: Path) -> None:
    before = set(sys.modules)
    for name in ("os:system", f"{TRIPWIRE_MODULE}:Evil", f"{TRIPWIRE_MODULE}.Evil", "subprocess"):
        with pytest.raises(UnknownComponentError):
            QUANTIZERS.get(name)
    assert set(sys.modules) - before == set()
    assert not tripwire_module.exists()


def test_pk05_prior_config_rejects_target_keys() -> None:
    data = {**CausalPriorConfig().to_dict(), "_target_": "os.system"}
    before = set(sys.modules)
    with pytest.raises(ConfigError, match="_target_"):
        CausalPriorConfig.from_dict(data)
    assert set(sys.modules) - before == set()
