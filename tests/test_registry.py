"""Registries and entry-point plugins under faults (reliability cases PL-01..PL-12).

Plugins are installed for real: each test writes a ``*.dist-info`` folder with an
``entry_points.txt`` and the plugin's module onto ``sys.path``, so discovery goes through
``importlib.metadata`` exactly as for a pip-installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import pytest
import torch

from discrete_latents import DECODERS, ENCODERS, PRIORS, QUANTIZERS, VQVAE, Registry, VQVAEConfig
from discrete_latents._registry import DISABLE_ENV
from discrete_latents.errors import PluginConflictError, PluginLoadError, UnknownComponentError
from discrete_latents.quantizers import VectorQuantizer

REGISTRIES = (ENCODERS, DECODERS, QUANTIZERS, PRIORS)
GROUP = "discrete_latents.quantizers"

GOOD_QUANTIZER = """
from discrete_latents.quantizers import VectorQuantizer

class FancyVQ(VectorQuantizer):
    '''A plugin quantizer: the built-in VQ under another name.'''
"""


class Plugins:
    """Installs fake distributions (dist-info + modules) on sys.path for one test."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp_path, self.monkeypatch, self.count = tmp_path, monkeypatch, 0
        self.modules: list[str] = []

    def _module_name(self) -> str:
        """A fresh module name (unique, so no test sees another's import)."""
        name = f"dl_plugin_{uuid.uuid4().hex[:12]}"
        self.modules.append(name)
        return name

    def install(self, entries: dict[str, dict[str, str]], modules: dict[str, str] | None = None,
                dist: str | None = None) -> None:
        """One distribution: ``entries`` {group: {name: "module:attr"}}, ``modules`` {name: source}."""
        self.count += 1
        site = self.tmp_path / f"site{self.count}"
        site.mkdir()
        for name, source in (modules or {}).items():
            (site / f"{name}.py").write_text(textwrap.dedent(source))
        dist = dist or f"fake_plugin_{self.count}"
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = []
        for group, named in entries.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {value}" for name, value in named.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        self.monkeypatch.syspath_prepend(str(site))
        for registry in REGISTRIES:
            registry.reset_plugins()

    def quantizer(self, name: str, source: str = GOOD_QUANTIZER, attr: str = "FancyVQ") -> str:
        """Install one quantizer plugin ``name`` from ``source``; return its module name."""
        module = self._module_name()
        self.install({GROUP: {name: f"{module}:{attr}"}}, {module: source})
        return module

    def cleanup(self) -> None:
        for name in self.modules:
            sys.modules.pop(name, None)


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_registries):
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    helper = Plugins(tmp_path, monkeypatch)
    yield helper
    helper.cleanup()
    for registry in REGISTRIES:
        registry.reset_plugins()


# PL-01: unknown names -------------------------------------------------------------------------------------
def test_pl01_unknown_name_lists_names_and_closest_match(plugins) -> None:
    with pytest.raises(UnknownComponentError) as info:
        QUANTIZERS.get("vq_emaa")
    message = str(info.value)
    assert "did you mean 'vq_ema'?" in message
    assert str(QUANTIZERS.names()) in message and "'vq'" in message
    assert isinstance(info.value, LookupError)


def test_pl01_unknown_name_without_a_close_match(plugins) -> None:
    with pytest.raises(UnknownComponentError, match="unknown encoder 'zzzz'; known encoders: \\['conv'"):
        ENCODERS.get("zzzz")


def test_pl01_vqvae_config_naming_an_unknown_quantizer(plugins) -> None:
    with pytest.raises(UnknownComponentError, match="did you mean 'vq_ema'"):
        VQVAE(VQVAEConfig(channels=(8, 16), quantizer="vq_emaa"))


@pytest.mark.parametrize("name", [None, 3, ["vq"], b"vq"])
def test_non_string_names(plugins, name) -> None:
    with pytest.raises(TypeError, match="expected a string"):
        QUANTIZERS.get(name)
    assert name not in QUANTIZERS


# a working plugin ----------------------------------------------------------------------------------------------
def test_plugin_is_discovered_and_loaded_lazily(plugins) -> None:
    module = plugins.quantizer("fancy_vq")
    assert "fancy_vq" in QUANTIZERS.names()
    assert module not in sys.modules  # PL-07: listing reads metadata only
    assert "fancy_vq" not in QUANTIZERS.as_mapping()
    cls = QUANTIZERS.get("fancy_vq")
    assert module in sys.modules and cls.__name__ == "FancyVQ" and issubclass(cls, VectorQuantizer)
    assert QUANTIZERS.name_of(cls) == "fancy_vq" and QUANTIZERS.get("fancy_vq") is cls
    quantizer = QUANTIZERS.create("fancy_vq", dim=4, codebook_size=8)
    assert quantizer(torch.randn(2, 4, 3, 3)).indices.shape == (2, 3, 3)


def test_pl07_pl11_names_imports_nothing(plugins) -> None:
    marker = plugins.tmp_path / "imported"
    slow = f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')  # a slow import\n"
    module = plugins.quantizer("slow_vq", slow + GOOD_QUANTIZER)
    before = set(sys.modules)
    for registry in REGISTRIES:
        registry.names()
        registry.names("*vq*")
    assert "slow_vq" in QUANTIZERS and len(QUANTIZERS) == len(QUANTIZERS.names())
    assert "slow_vq" in list(QUANTIZERS)
    assert set(sys.modules) - before == set()
    assert not marker.exists()
    QUANTIZERS.get("slow_vq")
    assert marker.exists() and module in sys.modules


def test_plugin_quantizer_config_builds_saves_and_loads_by_name(plugins, tmp_path: Path) -> None:
    plugins.quantizer("fancy_vq")
    config = VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer="fancy_vq", quantizer_kwargs={"codebook_size": 16})
    model = VQVAE(config).eval()
    assert type(model.quantizer).__name__ == "FancyVQ"
    model.save_pretrained(tmp_path / "m")
    assert '"quantizer": "fancy_vq"' in (tmp_path / "m" / "config.json").read_text()
    # As in a fresh process: the plugin is not imported yet and is found again from its metadata.
    module = type(model.quantizer).__module__
    QUANTIZERS._classes.pop("fancy_vq")
    sys.modules.pop(module)
    QUANTIZERS.reset_plugins()
    loaded = VQVAE.from_pretrained(tmp_path / "m")
    assert type(loaded.quantizer).__name__ == "FancyVQ" and type(loaded.quantizer).__module__ == module
    assert module in sys.modules
    assert torch.equal(loaded.quantizer.weight, model.quantizer.weight)
    images = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded(images).reconstruction, model(images).reconstruction)


def test_plugins_in_every_registry(plugins) -> None:
    module = plugins._module_name()
    source = """
    from discrete_latents._encoder import Encoder
    from discrete_latents._decoder import Decoder
    from discrete_latents.priors import CausalPrior

    class MyEncoder(Encoder):
        pass

    class MyDecoder(Decoder):
        pass

    class MyPrior(CausalPrior):
        pass
    """
    plugins.install({"discrete_latents.encoders": {"my_enc": f"{module}:MyEncoder"},
                     "discrete_latents.decoders": {"my_dec": f"{module}:MyDecoder"},
                     "discrete_latents.priors": {"my_prior": f"{module}:MyPrior"}}, {module: source})
    assert ENCODERS.get("my_enc").__name__ == "MyEncoder"
    assert DECODERS.get("my_dec").__name__ == "MyDecoder"
    assert PRIORS.get("my_prior").__name__ == "MyPrior"
    assert "my_enc" not in QUANTIZERS.names() and "my_prior" not in ENCODERS.names()
    model = VQVAE(VQVAEConfig(channels=(8, 16), encoder="my_enc", decoder="my_dec"))
    assert type(model.encoder).__name__ == "MyEncoder"


# PL-02, PL-03: plugins that fail to import -----------------------------------------------------------------
@pytest.mark.parametrize("source, error", [
    ("raise ImportError('this plugin needs libfancy')", ImportError),
    ("import dl_module_that_does_not_exist_123", ModuleNotFoundError),
    ("def broken(:\n    pass\n", SyntaxError),
    ("raise SystemExit(3)", SystemExit),
    ("raise RuntimeError('boom at import')", RuntimeError),
    ("raise MemoryError()", MemoryError),
])
def test_pl02_broken_plugin_is_isolated(plugins, source: str, error: type[BaseException]) -> None:
    plugins.quantizer("good_vq")
    broken = plugins.quantizer("broken_vq", source)
    assert {"good_vq", "broken_vq"} <= set(QUANTIZERS.names())
    warning = f"plugin '{broken}:FancyVQ' for quantizer 'broken_vq' failed to import"
    with pytest.warns(RuntimeWarning, match=warning), pytest.raises(PluginLoadError, match="broken_vq") as info:
        QUANTIZERS.get("broken_vq")
    assert isinstance(info.value.__cause__, error)
    assert isinstance(info.value, ImportError)
    # the failure is remembered: the same error again, without importing again
    with pytest.raises(PluginLoadError) as again:
        QUANTIZERS.get("broken_vq")
    assert isinstance(again.value.__cause__, error)
    assert "broken_vq" in QUANTIZERS.failed_plugins()
    # everything else still works
    assert QUANTIZERS.get("vq") is VectorQuantizer
    assert QUANTIZERS.get("good_vq").__name__ == "FancyVQ"
    VQVAE(VQVAEConfig(channels=(8, 16), quantizer="good_vq"))


def test_pl03_keyboard_interrupt_is_re_raised(plugins) -> None:
    plugins.quantizer("interrupting_vq", "raise KeyboardInterrupt")
    with pytest.raises(KeyboardInterrupt):
        QUANTIZERS.get("interrupting_vq")
    assert "interrupting_vq" not in QUANTIZERS.failed_plugins()


def test_pl02_a_broken_plugin_never_breaks_import(plugins) -> None:
    """A fresh interpreter imports the package, lists names and uses a good plugin beside a broken one."""
    plugins.quantizer("good_vq")
    plugins.quantizer("broken_vq", "raise SystemExit(3)")
    code = textwrap.dedent("""
        import warnings
        import discrete_latents
        from discrete_latents import QUANTIZERS
        from discrete_latents.errors import PluginLoadError
        assert "broken_vq" in QUANTIZERS.names()
        print(QUANTIZERS.get("good_vq").__name__)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            try:
                QUANTIZERS.get("broken_vq")
            except PluginLoadError as err:
                print("PluginLoadError", type(err.__cause__).__name__)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop(DISABLE_ENV, None)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["FancyVQ", "PluginLoadError SystemExit"]


# PL-04: contract ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source, attr, fragment", [
    ("class NotAQuantizer:\n    pass\n", "NotAQuantizer", "must be a class derived from discrete_latents.quantizers"),
    ("import torch\nclass JustAModule(torch.nn.Module):\n    pass\n", "JustAModule", "must be a class derived from"),
    ("def make_quantizer(**kw):\n    return None\n", "make_quantizer", "must be a class derived from"),
    ("VALUE = 3\n", "VALUE", "must be a class derived from"),
    (GOOD_QUANTIZER + "\nclass Old(FancyVQ):\n    api_version = 0\n", "Old", "plugin API version 0"),
    (GOOD_QUANTIZER + "\nclass Future(FancyVQ):\n    api_version = 2\n", "Future", "requires api_version = 1"),
    ("x = 1\n", "Missing", "failed to import"),
])
def test_pl04_contract_violations(plugins, source: str, attr: str, fragment: str) -> None:
    plugins.quantizer("bad_vq", source, attr=attr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(PluginLoadError, match=fragment):
            QUANTIZERS.get("bad_vq")
        with pytest.raises(PluginLoadError):  # remembered
            QUANTIZERS.get("bad_vq")
    assert "bad_vq" not in QUANTIZERS.as_mapping()


def test_pl04_builtins_declare_the_api_version() -> None:
    for name in QUANTIZERS.names():
        if name in QUANTIZERS.as_mapping():
            assert QUANTIZERS.get(name).api_version == QUANTIZERS.base.api_version


# PL-05, PL-06: name clashes ---------------------------------------------------------------------------------
def test_pl05_plugin_reusing_a_builtin_name_loses_with_a_warning(plugins) -> None:
    module = plugins.quantizer("vq")
    with pytest.warns(RuntimeWarning, match=f"plugin '{module}:FancyVQ' reuses the built-in quantizer name 'vq'"):
        names = QUANTIZERS.names()
    assert names.count("vq") == 1
    assert QUANTIZERS.get("vq") is VectorQuantizer
    assert module not in sys.modules


def test_rediscovering_an_imported_plugin_is_no_clash(plugins) -> None:
    plugins.quantizer("fancy_vq")
    cls = QUANTIZERS.get("fancy_vq")
    QUANTIZERS.reset_plugins()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "reuses the built-in name" warning about itself
        assert "fancy_vq" in QUANTIZERS.names()
    assert QUANTIZERS.get("fancy_vq") is cls


def test_pl06_two_plugins_one_name_conflict_names_both(plugins) -> None:
    first = plugins.quantizer("dup_vq")
    second = plugins.quantizer("dup_vq")
    with pytest.raises(PluginConflictError) as info:
        QUANTIZERS.get("dup_vq")
    message = str(info.value)
    assert f"'{first}:FancyVQ'" in message and f"'{second}:FancyVQ'" in message and "uninstall" in message
    assert isinstance(info.value, LookupError)
    assert first not in sys.modules and second not in sys.modules
    with pytest.raises(PluginConflictError):  # stays a conflict, never silently one of them
        QUANTIZERS.get("dup_vq")
    assert QUANTIZERS.get("vq") is VectorQuantizer


def test_pl06_three_plugins_one_name(plugins) -> None:
    modules = [plugins.quantizer("dup_vq") for _ in range(3)]
    with pytest.raises(PluginConflictError, match="3 plugins") as info:
        QUANTIZERS.get("dup_vq")
    assert all(m in str(info.value) for m in modules)


def test_pl06_one_distribution_seen_twice_is_no_conflict(plugins) -> None:
    """The same entry point found on two sys.path entries (editable + installed) is one plugin."""
    module = plugins._module_name()
    for _ in range(2):
        plugins.install({GROUP: {"twice_vq": f"{module}:FancyVQ"}}, {module: GOOD_QUANTIZER},
                        dist=f"twice_{uuid.uuid4().hex[:6]}")
    assert QUANTIZERS.get("twice_vq").__name__ == "FancyVQ"


# PL-08: the off switch -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_pl08_disable_switch(plugins, monkeypatch, value: str) -> None:
    module = plugins.quantizer("fancy_vq")
    monkeypatch.setenv(DISABLE_ENV, value)
    before = set(sys.modules)
    assert "fancy_vq" not in QUANTIZERS.names()
    with pytest.raises(UnknownComponentError, match=DISABLE_ENV):
        QUANTIZERS.get("fancy_vq")
    assert set(sys.modules) - before == set() and module not in sys.modules
    assert QUANTIZERS.get("vq") is VectorQuantizer  # built-ins unaffected
    monkeypatch.setenv(DISABLE_ENV, "0")
    assert QUANTIZERS.get("fancy_vq").__name__ == "FancyVQ"


def test_pl08_unknown_name_mentions_the_switch_only_when_on(plugins, monkeypatch) -> None:
    with pytest.raises(UnknownComponentError) as info:
        QUANTIZERS.get("nothing_here")
    assert DISABLE_ENV not in str(info.value)
    monkeypatch.setenv(DISABLE_ENV, "1")
    with pytest.raises(UnknownComponentError, match=f"{DISABLE_ENV} is set"):
        QUANTIZERS.get("nothing_here")


# PL-09: broken metadata ------------------------------------------------------------------------------------------
def test_pl09_invalid_entry_point_names_are_skipped_with_a_warning(plugins) -> None:
    module = plugins._module_name()
    plugins.install({GROUP: {"Bad_Name": f"{module}:FancyVQ", "fine_vq": f"{module}:FancyVQ"}},
                    {module: GOOD_QUANTIZER})
    with pytest.warns(RuntimeWarning, match="skipping the discrete_latents.quantizers entry point 'Bad_Name'"):
        names = QUANTIZERS.names()
    assert "Bad_Name" not in names and "fine_vq" in names
    assert QUANTIZERS.get("fine_vq").__name__ == "FancyVQ"


def test_pl09_malformed_entry_point_value(plugins) -> None:
    plugins.install({GROUP: {"odd_vq": "not a valid ::: reference"}})
    assert "odd_vq" in QUANTIZERS.names()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(PluginLoadError, match="odd_vq"):
            QUANTIZERS.get("odd_vq")
    assert QUANTIZERS.get("vq") is VectorQuantizer


def test_pl09_unreadable_entry_points_warn_and_fall_back_to_builtins(plugins, monkeypatch) -> None:
    from discrete_latents import _registry as registry_module

    def broken(**kwargs):
        raise ValueError("corrupt METADATA")

    monkeypatch.setattr(registry_module.metadata, "entry_points", broken)
    QUANTIZERS.reset_plugins()
    with pytest.warns(RuntimeWarning, match="could not read discrete_latents.quantizers entry points"):
        names = QUANTIZERS.names()
    assert "vq" in names and QUANTIZERS.get("vq") is VectorQuantizer


def test_pl10_entry_point_pointing_at_os_system_is_refused(plugins) -> None:
    plugins.install({GROUP: {"sneaky": "os:system"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(PluginLoadError, match="must be a class derived from"):
            QUANTIZERS.get("sneaky")


# the Registry API -------------------------------------------------------------------------------------------------
class Base:
    pass


class Thing(Base):
    pass


class Other(Base):
    pass


@pytest.fixture
def things(monkeypatch) -> Registry:
    monkeypatch.setenv(DISABLE_ENV, "1")  # an isolated registry: no entry points
    return Registry("things", Base, "discrete_latents.test_things")


def test_register_get_create_and_read_only_view(things: Registry) -> None:
    things.register("thing")(Thing)
    assert things.get("thing") is Thing and things.name_of(Thing) == "thing"
    assert isinstance(things.create("thing"), Thing)
    view = things.as_mapping()
    with pytest.raises(TypeError):
        view["other"] = Other  # type: ignore[index]
    assert "thing" in things and "other" not in things and len(things) == 1
    assert "things" in repr(things)


def test_duplicate_registration_raises_unless_override(things: Registry) -> None:
    things.add("thing", Thing)
    things.add("thing", Thing)  # the same class again is harmless (module re-import)
    with pytest.raises(ValueError, match="already taken by Thing; pass override=True"):
        things.add("thing", Other)
    assert things.get("thing") is Thing
    things.add("thing", Other, override=True)
    assert things.get("thing") is Other


@pytest.mark.parametrize("name", ["Thing", "", "a b", "pkg.mod:Cls", "x" * 65, 3, None])
def test_invalid_registration_names(things: Registry, name) -> None:
    with pytest.raises(ValueError, match="invalid things name"):
        things.add(name, Thing)


def test_registering_a_non_subclass_breaks_the_contract(things: Registry) -> None:
    with pytest.raises(PluginLoadError, match="must be a class derived from"):
        things.add("int", int)
    with pytest.raises(PluginLoadError):
        things.add("instance", Thing())  # type: ignore[arg-type]


def test_names_pattern_is_fnmatch_and_sorted(things: Registry) -> None:
    for name in ("vq", "vq_ema", "vq_cosine", "fsq", "rvq"):
        things.add(name, Thing)
    assert things.names() == sorted(["vq", "vq_ema", "vq_cosine", "fsq", "rvq"])
    assert things.names("vq*") == ["vq", "vq_cosine", "vq_ema"]
    assert things.names("*q") == ["fsq", "rvq", "vq"]
    assert things.names("?vq") == ["rvq"]
    assert things.names("VQ*") == []  # case-sensitive
    assert things.names("[fr]*") == ["fsq", "rvq"]


def test_builtin_names_pattern() -> None:
    assert set(QUANTIZERS.names("vq*")) >= {"vq", "vq_ema"}
    assert all(name.startswith("vq") for name in QUANTIZERS.names("vq*"))


def test_pl12_fixture_left_no_test_registrations_behind() -> None:
    leftovers = [n for r in REGISTRIES for n in r.as_mapping() if n.startswith(("temporary_", "fancy", "good_"))]
    assert leftovers == []


def test_an_alias_changes_no_class_and_no_saved_pipeline(tmp_path: Path, restore_registries: None) -> None:
    from discrete_latents import VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig, VQVAEPipeline

    pipe = VQVAEPipeline(VQVAE(VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16})),
                         CausalPrior(CausalPriorConfig(codebook_size=16, n_layer=1, n_head=2, n_embd=16)))
    pipe.save_pretrained(tmp_path / "before")
    attributes = dict(vars(CausalPrior))
    PRIORS.add("gpt", CausalPrior)  # an alias, registered after the built-in name
    assert PRIORS.get("gpt") is CausalPrior and PRIORS.name_of(CausalPrior) == "causal_transformer"
    assert dict(vars(CausalPrior)) == attributes  # nothing is written onto the class
    pipe.save_pretrained(tmp_path / "after")
    index = json.loads((tmp_path / "after" / "pipeline.json").read_text())
    assert index["components"]["prior"]["registry_name"] == "causal_transformer"
    assert (tmp_path / "after" / "pipeline.json").read_bytes() == (tmp_path / "before" / "pipeline.json").read_bytes()
