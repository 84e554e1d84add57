"""The end-to-end model: a VQ-VAE plus a prior over its codes, saved and loaded as one folder.

A saved pipeline is a folder (or a Hub repo)::

    pipeline.json        # index: _class_name, _version, each component's class and registry name
    vqvae/config.json    # strict, versioned VQVAEConfig
    vqvae/model.safetensors
    prior/config.json    # the prior's config (CausalPriorConfig, PixelCNNPriorConfig, ...)
    prior/model.safetensors
    README.md            # model card: components, preset, training settings, metrics, samples
    samples.png          # optional sample grid shown by the card

The index is ``pipeline.json``, not ``model_index.json``: Hub integrations take the latter for a
diffusers pipeline. The prior is named by its registry key, so a plugin prior saved by name loads
by name once its package is installed; nothing in the folder can choose code to import.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import _editing as editing
from . import codec
from ._checks import NAME_PATTERN
from ._files import read_json, save_folder, write_json
from ._hub import (
    CONFIG_NAME,
    README_NAME,
    SAMPLES_NAME,
    WEIGHTS_NAME,
    PretrainedSource,
    library_version,
    require_file,
    resolve,
)
from ._model_card import check_metadata, model_card
from ._saving import Shareable
from ._vqvae import VQVAE
from .errors import ConfigError, PluginLoadError, UnknownComponentError
from .images import grid_png
from .priors import PRIORS, BasePrior, build_prior

PIPELINE_NAME = "pipeline.json"
DECODE_BATCH = 1024  # grids decoded at a time by generate
PIPELINE_FORMAT_VERSION = 1  # bump when pipeline.json changes meaning; a newer one is refused
COMPONENTS = ("vqvae", "prior")
PIPELINE_FILES = (PIPELINE_NAME, README_NAME, SAMPLES_NAME, *COMPONENTS)
_INDEX_KEYS = ("_class_name", "_version", "components", "library_version", "metadata")
_ENTRY_KEYS = ("class_name", "registry_name")


@contextmanager
def _eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Run inference in eval mode, then restore each module's previous mode."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def _did_you_mean(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_compatible(vqvae: object, prior: object) -> None:
    """Raise if ``prior`` cannot model the codes of ``vqvae``.

    Raises:
        TypeError: not a `VQVAE` / `BasePrior`.
        ConfigError: (a ``ValueError``) codebook sizes or grids differ, or the quantizer emits
            more than one code per grid cell.
    """
    if not isinstance(vqvae, VQVAE):
        raise TypeError(f"vqvae: expected a discrete_latents.VQVAE, got {type(vqvae).__name__}")
    if not isinstance(prior, BasePrior):
        raise TypeError(f"prior: expected a discrete_latents.BasePrior subclass, got {type(prior).__name__}")
    index_shape = tuple(getattr(vqvae.quantizer, "index_shape", ()))
    if index_shape != ():
        raise ConfigError(f"vqvae: its quantizer {vqvae.config.quantizer!r} gives {index_shape} codes per grid cell"
                          " (indices (B, h, w, *index_shape)); priors model one code per cell (index_shape == ())")
    if prior.codebook_size != vqvae.codebook_size:
        raise ConfigError(f"prior: codebook_size {prior.codebook_size} does not match the VQ-VAE's"
                          f" {vqvae.codebook_size} codes; build the prior with codebook_size={vqvae.codebook_size}")
    if tuple(prior.grid_size) != tuple(vqvae.grid_size):
        raise ConfigError(f"prior: grid_size {tuple(prior.grid_size)} does not match the VQ-VAE's code grid"
                          f" {tuple(vqvae.grid_size)}; build the prior with grid_size={tuple(vqvae.grid_size)}")


def parse_index(data: object, source: str) -> tuple[type[BasePrior], dict[str, Any]]:
    """Validate a ``pipeline.json`` object; return the prior's class and the metadata.

    Raises:
        ConfigError: malformed index, wrong class, a newer or unreadable format version, a
            missing or unknown component; messages name ``source`` and the component.
        UnknownComponentError, PluginLoadError: a registry name that is not installed.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
    class_name = data.get("_class_name")
    if class_name != "VQVAEPipeline":
        raise ConfigError(f"{source}: _class_name is {class_name!r}, expected 'VQVAEPipeline'")
    version = data.get("_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{source}: _version must be a positive integer, got {version!r}")
    if version > PIPELINE_FORMAT_VERSION:
        raise ConfigError(f"{source}: written by a newer discrete_latents ({data.get('library_version', 'unknown')},"
                          f" pipeline format {version}; this release, {library_version()}, reads up to"
                          f" {PIPELINE_FORMAT_VERSION}); upgrade discrete_latents to load it")
    unknown = sorted(set(data) - set(_INDEX_KEYS))
    if unknown:
        hints = ", ".join(f"{k!r}{_did_you_mean(k, _INDEX_KEYS)}" for k in unknown)
        raise ConfigError(f"{source}: unknown key(s) {hints}; known keys: {list(_INDEX_KEYS)}")
    if "library_version" in data and not isinstance(data["library_version"], str):
        raise ConfigError(f"{source}: library_version must be a string, got {data['library_version']!r}")
    components = data.get("components")
    if not isinstance(components, dict):
        raise ConfigError(f"{source}: 'components' must be an object naming {list(COMPONENTS)}, got {components!r}")
    for name in components:
        if name not in COMPONENTS:
            raise ConfigError(f"{source}: unknown component {name!r}{_did_you_mean(name, COMPONENTS)}; a VQVAEPipeline"
                              f" has exactly {list(COMPONENTS)}")
    classes: dict[str, type[Any]] = {}
    for name in COMPONENTS:
        if name not in components:
            raise ConfigError(f"{source}: component {name!r} is missing; a VQVAEPipeline needs {list(COMPONENTS)}")
        entry = components[name]
        if not isinstance(entry, dict) or set(entry) != set(_ENTRY_KEYS) \
                or not all(isinstance(entry[k], str) for k in _ENTRY_KEYS):
            raise ConfigError(f"{source}: component {name!r} must be {{\"class_name\": str, \"registry_name\": str}},"
                              f" got {entry!r}")
        key = entry["registry_name"]
        if not NAME_PATTERN.match(key):
            raise ConfigError(f"{source}: component {name!r}: {key!r} is not a registry name (lowercase letters,"
                              " digits, '_', '.', '-'); components are chosen by registered name, never by import path")
        cls: type[Any]
        if name == "vqvae":
            if key != VQVAE.registry_name:
                raise UnknownComponentError(f"{source}: component 'vqvae': unknown registry name {key!r};"
                                            f" the VQ-VAE's is {VQVAE.registry_name!r}")
            cls = VQVAE
        else:
            try:
                cls = PRIORS.get(key)
            except UnknownComponentError as err:
                raise UnknownComponentError(f"{source}: component {name!r}: {err} (is the plugin package that"
                                            " provides it installed?)") from None
            except PluginLoadError as err:
                raise PluginLoadError(f"{source}: component {name!r}: {err}") from err
        if cls.__name__ != entry["class_name"]:
            raise ConfigError(f"{source}: component {name!r}: registry name {key!r} builds {cls.__name__}, but the"
                              f" folder was saved from {entry['class_name']}")
        classes[name] = cls
    metadata = check_metadata(data.get("metadata"), source=f"{source}: metadata")
    return classes["prior"], metadata


class VQVAEPipeline(Shareable):
    """A VQ-VAE and a prior over its code grids: generate, encode, decode, save and load together.

    Args:
        vqvae: a `VQVAE` whose quantizer gives one code per grid cell.
        prior: a registered `BasePrior` with the VQ-VAE's
            ``codebook_size`` and ``grid_size``.
        metadata: optional JSON object shown in the model card and stored in ``pipeline.json``:
            ``preset``, ``dataset``, ``description``, ``training`` (settings), ``metrics``.

    Raises:
        TypeError: a component of the wrong type.
        ConfigError: (a ``ValueError``) the components do not fit together, or bad metadata.

    Examples:
        >>> import torch
        >>> from discrete_latents import VQVAE, VQVAEConfig, CausalPrior, CausalPriorConfig
        >>> vqvae = VQVAE(VQVAEConfig(channels=(8, 16), quantizer_kwargs={"codebook_size": 16}))
        >>> prior = CausalPrior(CausalPriorConfig(codebook_size=16, grid_size=(7, 7), n_layer=1, n_head=2,
        ...                                       n_embd=16))
        >>> pipe = VQVAEPipeline(vqvae=vqvae, prior=prior)
        >>> pipe.generate(2, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 28, 28])
    """

    def __init__(self, vqvae: VQVAE, prior: BasePrior, metadata: Mapping[str, Any] | None = None) -> None:
        check_compatible(vqvae, prior)
        self.vqvae = vqvae
        self.prior = prior
        self.metadata = metadata  # type: ignore[assignment]  # validated by the setter
        self.pretrained_source: PretrainedSource | None = None

    @classmethod
    def from_preset(cls, name: str) -> VQVAEPipeline:
        """An untrained VQ-VAE and prior from the presets of one name (``"mnist"``, ``"cifar10"``).

        Examples:
            >>> VQVAEPipeline.from_preset("mnist").prior.grid_size
            (7, 7)
        """
        from ._presets import PRIOR_PRESETS

        vqvae = VQVAE.from_preset(name)
        if name not in PRIOR_PRESETS:
            raise ConfigError(f"unknown prior preset {name!r}; available: {sorted(PRIOR_PRESETS)}")
        return cls(vqvae, build_prior(PRIOR_PRESETS[name]))

    # components ----------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        """The model-card metadata (a validated copy; assign a new dict to change it)."""
        return self._metadata

    @metadata.setter
    def metadata(self, value: Mapping[str, Any] | None) -> None:
        self._metadata = check_metadata(value)

    @property
    def components(self) -> dict[str, nn.Module]:
        """``{"vqvae": ..., "prior": ...}``, in save order."""
        return {"vqvae": self.vqvae, "prior": self.prior}

    @property
    def device(self) -> torch.device:
        """The VQ-VAE's device (images come back there)."""
        return next(self.vqvae.parameters()).device

    def to(self, *args: Any, **kwargs: Any) -> VQVAEPipeline:
        """Move both components, as ``nn.Module.to``; returns the pipeline."""
        self.vqvae.to(*args, **kwargs)
        self.prior.to(*args, **kwargs)
        return self

    def eval(self) -> VQVAEPipeline:
        """Put both components in eval mode; returns the pipeline."""
        self.vqvae.eval()
        self.prior.eval()
        return self

    def __repr__(self) -> str:
        h, w = self.vqvae.grid_size
        return (f"VQVAEPipeline(vqvae=VQVAE({self.vqvae.config.quantizer!r}, {self.vqvae.codebook_size} codes,"
                f" {h}x{w} grid), prior={type(self.prior).__name__}(classes={self.prior.num_classes}))")

    # inference -----------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, num_samples: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, labels: Tensor | None = None, guidance_scale: float = 1.0,
                 generator: torch.Generator | None = None, steps: int | None = None) -> Tensor:
        """Sample images: code grids from the prior, decoded by the VQ-VAE.

        Args:
            num_samples: N.
            temperature: softmax temperature of the prior; 0 is greedy. Default 1.
            top_k: keep only the k most likely codes at each step (None = all).
            top_p: nucleus sampling mass in (0, 1] (None = all).
            labels: (N,) int64 classes for a class-conditional prior; ``None`` = any class (a
                conditional prior draws them by their training-set frequencies).
            guidance_scale: classifier-free guidance; 1 is plain conditional sampling, 0 the
                prior's "no label" mode (see `sample`).
            generator: a ``torch.Generator`` on the prior's device, for reproducible samples.
            steps: parallel decoding steps of a prior that does not sample in raster order (the
                masked prior; default its own, 8); ``None`` for a raster-order prior, which
                always takes one step per code.

        Returns:
            (N, C, H, W) float images in [0, 1], on the VQ-VAE's device.

        Examples:
            >>> images = pipe.generate(16, labels=torch.arange(16) % 10,
            ...                        generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
        """
        # 1. Draw N code grids (N, h, w) from the prior: one code at a time in raster order, or in
        #    a few parallel steps for a masked prior.
        codes = self.prior.sample(num_samples, temperature=temperature, top_k=top_k, top_p=top_p, labels=labels,
                                  guidance_scale=guidance_scale, generator=generator, **self._steps(steps))
        # 2. Decode them with the VQ-VAE: code vectors -> decoder -> images clamped to [0, 1], in
        #    batches, so the decoder's activations stay bounded however many images are drawn.
        return self.decode(codes, batch_size=DECODE_BATCH)

    @torch.no_grad()
    def __call__(self, num_samples: int, **kwargs: Any) -> Tensor:
        """Same as `generate` (inference only, no gradients).

        Examples:
            >>> images = pipe(4, temperature=0.9, top_k=50)  # doctest: +SKIP
        """
        # 1. Sample codes and decode them (see generate).
        return self.generate(num_samples, **kwargs)

    @torch.no_grad()
    def encode(self, images: Tensor, batch_size: int | None = None) -> Tensor:
        """Images (B, C, H, W) in [0, 1] (or uint8) -> code ids (B, h, w) int64; never updates the codebook.

        ``batch_size`` encodes a large set (a whole dataset) that many images at a time.

        Examples:
            >>> codes = pipe.encode(torch.rand(2, 1, 28, 28))  # doctest: +SKIP
        """
        with _eval_mode(self.vqvae):
            return self.vqvae.encode(images, batch_size=batch_size)

    @torch.no_grad()
    def decode(self, indices: Tensor, batch_size: int | None = None) -> Tensor:
        """Code ids (B, h, w) in [0, K) -> images (B, C, H, W) in [0, 1], ``batch_size`` grids at a time.

        Examples:
            >>> images = pipe.decode(torch.zeros(2, 7, 7, dtype=torch.long))  # doctest: +SKIP
        """
        with _eval_mode(self.vqvae):
            return self.vqvae.decode(indices, batch_size=batch_size)

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """Encode then decode: (B, C, H, W) in [0, 1] -> the same shape in [0, 1].

        Examples:
            >>> recon = pipe.reconstruct(torch.rand(2, 1, 28, 28))  # doctest: +SKIP
        """
        # 1. Images -> codes -> images.
        return self.decode(self.encode(images))

    def card_images(self, seed: int = 0, num_samples: int = 16) -> Tensor:
        """Seeded samples for a model card (one column per class for a conditional prior).

        Examples:
            >>> pipe.save_pretrained("mnist-pipeline", images=pipe.card_images())  # doctest: +SKIP
        """
        classes = self.prior.num_classes
        if 0 < classes <= num_samples:
            num_samples = math.ceil(num_samples / classes) * classes
        labels = torch.arange(num_samples) % classes if classes else None
        generator = torch.Generator(device=next(self.prior.parameters()).device).manual_seed(seed)
        return self.generate(num_samples, labels=labels, generator=generator)

    # saving --------------------------------------------------------------------------------------
    def _index(self) -> dict[str, Any]:
        if type(self.vqvae) is not VQVAE:
            raise TypeError(f"vqvae: a {type(self.vqvae).__qualname__} would load as a plain VQVAE; save a VQVAE")
        return {
            "_class_name": type(self).__name__,
            "_version": PIPELINE_FORMAT_VERSION,
            "library_version": library_version(),
            "components": {name: {"class_name": type(module).__name__, "registry_name": module.registry_name}
                           for name, module in self.components.items()},
            "metadata": self.metadata,
        }

    def save_pretrained(self, save_directory: str | os.PathLike[str], *, metadata: Mapping[str, Any] | None = None,
                        images: Tensor | None = None, repo_id: str | None = None) -> Path:
        """Write the pipeline to a folder: ``pipeline.json``, ``vqvae/``, ``prior/``, ``README.md``.

        The folder is replaced as a unit: a save that fails or is killed leaves the previous one
        loadable, never a new VQ-VAE beside an old prior.

        Args:
            save_directory: the folder (created if needed; it may hold only an earlier save).
            metadata: shown in the model card and stored in ``pipeline.json``; default the
                pipeline's own `metadata`.
            images: (B, C, H, W) in [0, 1] saved as ``samples.png`` for the card, e.g.
                `card_images`.
            repo_id: the Hub repo the card's usage snippet names.

        Returns:
            The folder.

        Examples:
            >>> pipe.save_pretrained("mnist-pipeline", images=pipe.card_images())  # doctest: +SKIP
            >>> VQVAEPipeline.from_pretrained("mnist-pipeline")  # doctest: +SKIP
        """
        # 1. Check everything that can fail before writing: names, metadata, images, card.
        index = self._index()
        if metadata is not None:
            index["metadata"] = check_metadata(metadata)
        classes = self.prior.num_classes
        nrow = classes if classes and isinstance(images, Tensor) and len(images) % classes == 0 else None
        png = grid_png(images, nrow=nrow) if images is not None else None
        components = {name: (module, index["components"][name]["registry_name"])
                      for name, module in self.components.items()}
        card = model_card(components, metadata=index["metadata"], repo_id=repo_id,
                          samples=SAMPLES_NAME if png is not None else None)

        # 2. Write a new folder beside the target and switch it in whole.
        def write(folder: Path) -> None:
            for name, module in self.components.items():
                (folder / name).mkdir()
                module.write_files(folder / name)  # type: ignore[operator]
            if png is not None:
                (folder / SAMPLES_NAME).write_bytes(png)
            (folder / README_NAME).write_text(card, encoding="utf-8")
            write_json(folder / PIPELINE_NAME, index)

        return save_folder(save_directory, write, PIPELINE_FILES)

    # loading -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], *, revision: str | None = None,
                        cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, force_download: bool = False,
                        map_location: str | torch.device = "cpu", check_finite: bool = True) -> VQVAEPipeline:
        """Load a pipeline saved by `save_pretrained`, from a folder or a Hub repo id.

        An existing local folder is read from disk. Anything else is a Hub repo id, validated
        before any I/O and resolved through ``huggingface_hub`` (only the index, configs and
        weights are fetched); with ``HF_HUB_OFFLINE=1`` or ``local_files_only=True`` it is read
        from the Hugging Face cache without network access. Loading is strict and never unpickles.

        Args:
            pretrained_model_name_or_path: a folder, e.g. ``discrete_latents.pretrained_path("mnist")``,
                or a repo id such as ``"user/mnist-vqvae"``.
            revision: branch, tag or commit; a cached commit loads with zero HTTP requests.
            cache_dir, local_files_only, token, force_download: as in ``huggingface_hub``.
            map_location: device for both components.
            check_finite: NaN or inf weights raise `NonFiniteError`.

        Returns:
            The pipeline, components in eval mode; ``pretrained_source`` records the folder and
            the resolved commit.

        Raises:
            ConfigError: malformed ``pipeline.json`` or config, a newer format ("upgrade"), a
                missing component folder, components that do not fit together.
            UnknownComponentError: a registry name that is not installed (names the component).
            CheckpointFormatError: missing, malformed or mismatched ``model.safetensors`` (never a
                ``pytorch_model.bin`` fallback).
            huggingface_hub.errors.HFValidationError: an invalid repo id.
            huggingface_hub.errors.LocalEntryNotFoundError: offline and not cached.

        Examples:
            >>> import discrete_latents
            >>> pipe = VQVAEPipeline.from_pretrained(discrete_latents.pretrained_path("mnist"))  # doctest: +SKIP
        """
        patterns = [PIPELINE_NAME] + [f"{name}/{file}" for name in COMPONENTS for file in (CONFIG_NAME, WEIGHTS_NAME)]
        source = resolve(pretrained_model_name_or_path, patterns, revision=revision, cache_dir=cache_dir,
                         local_files_only=local_files_only, token=token, force_download=force_download)
        folder = source.folder
        # 1. The index: which class builds each component (by registry name, never by import path).
        if not (folder / PIPELINE_NAME).is_file() and (folder / "model_index.json").is_file():
            raise ConfigError(f"{PIPELINE_NAME} not found in {folder}; it holds model_index.json, a diffusers"
                              " pipeline index, which discrete_latents does not read")
        if not (folder / PIPELINE_NAME).is_file() and (folder / CONFIG_NAME).is_file():
            raise ConfigError(f"{PIPELINE_NAME} not found in {folder}; it holds {CONFIG_NAME}, a single component:"
                              " load it with VQVAE.from_pretrained or PRIORS.get(name).from_pretrained")
        index_path = require_file(folder, PIPELINE_NAME)
        prior_class, metadata = parse_index(read_json(index_path), str(index_path))
        # 2. Every component folder must exist before any weights are read.
        for name in COMPONENTS:
            if not (folder / name).is_dir():
                raise ConfigError(f"{index_path}: component {name!r}: its folder {name}/ is missing from {folder}")
        # 3. Load each component strictly, then check they fit together.
        vqvae = VQVAE.read_folder(folder / "vqvae", check_finite=check_finite, map_location=map_location)
        prior = prior_class.read_folder(folder / "prior", check_finite=check_finite, map_location=map_location)
        try:
            pipeline = cls(vqvae=vqvae, prior=prior, metadata=metadata)
        except (ConfigError, TypeError) as err:
            raise ConfigError(f"{folder}: the saved components do not fit together: {err}") from None
        pipeline.pretrained_source = source
        return pipeline

    # editing -------------------------------------------------------------------------------------
    def _steps(self, steps: int | None) -> dict[str, Any]:
        """``{"steps": steps}`` for a prior that takes it; a clear error for a raster-order prior."""
        if steps is None:
            return {}
        if self.prior.raster_order:
            raise ValueError(f"steps: the {self.prior.registry_name!r} prior draws one code per step in raster"
                             f" order ({self.prior.num_codes} steps); steps applies to a masked prior such as"
                             " 'masked_transformer'. Leave steps=None")
        return {"steps": steps}

    @torch.no_grad()
    def inpaint(self, images: Tensor, mask: Tensor, labels: Tensor | None = None, guidance_scale: float = 1.0,
                generator: torch.Generator | None = None, steps: int | None = None, **sampling: Any) -> Tensor:
        """Redraw the masked region of images with the prior, given the rest (see :mod:`discrete_latents.editing`).

        Args:
            images: (B, C, H, W) floats in [0, 1].
            mask: (B, 1, H, W) bools or 0/1, true where the image is redrawn; a code is redrawn
                where any pixel of its footprint is.
            labels: (B,) classes for a conditional prior; ``None`` = its "no label" mode.
            guidance_scale: classifier-free guidance (with labels).
            generator: a ``torch.Generator`` on the prior's device.
            steps: parallel steps of a masked prior (as in :meth:`generate`).
            **sampling: ``temperature``, ``top_k``, ``top_p``.

        Returns:
            (B, C, H, W) images in [0, 1], decoded from the images' kept codes and the redrawn ones.

        Example:
            >>> mask = torch.zeros(4, 1, 28, 28, dtype=torch.bool)
            >>> mask[:, :, 16:] = True  # redraw the bottom 12 rows
            >>> completions = pipe.inpaint(images, mask)  # doctest: +SKIP
        """
        # 1. Pixel mask -> code mask, redraw those codes with the prior, decode.
        return editing.inpaint(self, images, mask, labels=labels, guidance_scale=guidance_scale, generator=generator,
                       **self._steps(steps), **sampling)

    # compression ---------------------------------------------------------------------------------
    def compress(self, images: Tensor, labels: Tensor | None = None, *, choose_labels: bool = True) -> bytes:
        """Compress images to bytes: their codes, entropy-coded with the prior (see :mod:`~discrete_latents.codec`).

        Lossy like any image codec: :meth:`decompress` gives back exactly ``self.reconstruct(images)``.

        Args:
            images: (B, C, H, W) floats in [0, 1], encoded in one batch as by :meth:`encode`.
            labels: (B,) classes for a class-conditional prior (stored, about 3.3 bits each for
                10 classes); ``None``: see ``choose_labels``.
            choose_labels: without labels, ``True`` stores per image whichever of "no label" and
                each class is cheapest (slower: the encoder tries them all); ``False`` codes every
                image in the prior's "no label" mode (fast, a few bits more per image).

        Example:
            >>> data = pipe.compress(images)  # doctest: +SKIP
            >>> torch.equal(pipe.decompress(data), pipe.reconstruct(images))  # doctest: +SKIP
            True
        """
        return self.compress_codes(self.encode(images), labels, choose_labels=choose_labels)

    def decompress(self, data: bytes, return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
        """Images (N, C, H, W) in [0, 1] from :meth:`compress` bytes; with ``return_labels``, also the stored labels.

        Raises:
            CodecError: a stream that is corrupt, truncated, foreign or from another pipeline.
        """
        codes, labels = self.decompress_codes(data, return_labels=True)
        images = self.decode(codes)
        return (images, labels) if return_labels else images

    def compress_codes(self, codes: Tensor, labels: Tensor | None = None, *, choose_labels: bool = True) -> bytes:
        """Compress code grids (N, h, w) to bytes with the prior; see :func:`discrete_latents.codec.compress_codes`."""
        return codec.compress_codes(self.prior, codes, labels, choose_labels=choose_labels,
                                    fingerprint=codec.fingerprint_of(self.vqvae, self.prior))

    def decompress_codes(self, data: bytes, return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
        """Code grids (N, h, w) from :meth:`compress_codes` bytes; with ``return_labels``, (codes, labels or None)."""
        decoded = codec.decompress_codes(self.prior, data, fingerprint=codec.fingerprint_of(self.vqvae, self.prior))
        return (decoded.codes, decoded.labels) if return_labels else decoded.codes
