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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import codec
from .configs import COMPONENT_NAME
from .errors import ConfigError, PluginLoadError, UnknownComponentError
from .files import atomic_write_bytes, read_json, write_json
from .hub import (
    CONFIG_NAME,
    README_NAME,
    WEIGHTS_NAME,
    HubMixin,
    PretrainedSource,
    _library_version,
    push_folder,
    require_file,
    resolve,
)
from .images import grid_png
from .model_card import SAMPLES_NAME, TAGS, check_metadata, pipeline_card
from .priors import PRIORS, BasePrior
from .validation import check_indices
from .vqvae import VQVAE

PIPELINE_NAME = "pipeline.json"
PIPELINE_FORMAT_VERSION = 1  # bump when pipeline.json changes meaning; add a migration below
OLDEST_FORMAT_VERSION = 1  # the oldest index this release can read (after migrations)
# version v -> function turning a version-v index into a version-(v + 1) one; applied in order.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}
COMPONENTS = ("vqvae", "prior")
VQVAE_KEY = "vqvae"  # the VQ-VAE is one class, not a registry; its key is fixed
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
        TypeError: not a :class:`~discrete_latents.VQVAE` / :class:`~discrete_latents.BasePrior`.
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


def registry_name_of(prior: BasePrior) -> str:
    """The name under which ``PRIORS`` builds exactly this prior's class, or a clear error."""
    cls = type(prior)
    name = vars(cls).get("registry_name")  # set on the class itself by PRIORS.register; never inherited
    if not isinstance(name, str):
        raise UnknownComponentError(
            f"prior: {cls.__qualname__} is not registered in PRIORS, so a saved pipeline could not name it; register"
            " it with @PRIORS.register('my_prior') (or an entry point in 'discrete_latents.priors')")
    try:
        registered = PRIORS.get(name)
    except (UnknownComponentError, PluginLoadError) as err:
        raise UnknownComponentError(f"prior: {cls.__qualname__} names registry key {name!r}, which PRIORS cannot"
                                    f" load: {err}") from err
    if registered is not cls:
        raise UnknownComponentError(f"prior: registry key {name!r} now builds {registered.__qualname__}, not"
                                    f" {cls.__qualname__}; a saved pipeline would load the wrong class")
    return name


def parse_index(data: object, source: str) -> tuple[dict[str, type[HubMixin]], dict[str, Any]]:
    """Validate a ``pipeline.json`` object; return the component classes and the metadata.

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
                          f" pipeline format {version}; this release, {_library_version()}, reads up to"
                          f" {PIPELINE_FORMAT_VERSION}); upgrade discrete_latents to load it")
    if version < OLDEST_FORMAT_VERSION:
        raise ConfigError(f"{source}: pipeline format {version} is older than this release reads"
                          f" ({OLDEST_FORMAT_VERSION}); re-save it with the discrete_latents that wrote it")
    while version < PIPELINE_FORMAT_VERSION:  # older formats are upgraded step by step, never guessed
        data = MIGRATIONS[version](dict(data))
        version += 1
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
    classes: dict[str, type[HubMixin]] = {}
    for name in COMPONENTS:
        if name not in components:
            raise ConfigError(f"{source}: component {name!r} is missing; a VQVAEPipeline needs {list(COMPONENTS)}")
        entry = components[name]
        if not isinstance(entry, dict) or set(entry) != set(_ENTRY_KEYS) \
                or not all(isinstance(entry[k], str) for k in _ENTRY_KEYS):
            raise ConfigError(f"{source}: component {name!r} must be {{\"class_name\": str, \"registry_name\": str}},"
                              f" got {entry!r}")
        key = entry["registry_name"]
        if not COMPONENT_NAME.match(key):
            raise ConfigError(f"{source}: component {name!r}: {key!r} is not a registry name (lowercase letters,"
                              " digits, '_', '.', '-'); components are chosen by registered name, never by import path")
        cls: type[HubMixin]
        if name == "vqvae":
            if key != VQVAE_KEY:
                raise UnknownComponentError(f"{source}: component 'vqvae': unknown registry name {key!r};"
                                            f" the VQ-VAE's is {VQVAE_KEY!r}")
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
    return classes, metadata


class VQVAEPipeline:
    """A VQ-VAE and a prior over its code grids: generate, encode, decode, save and load together.

    Args:
        vqvae: a :class:`~discrete_latents.VQVAE` whose quantizer gives one code per grid cell.
        prior: a registered :class:`~discrete_latents.BasePrior` with the VQ-VAE's
            ``codebook_size`` and ``grid_size``.
        metadata: optional JSON object shown in the model card and stored in ``pipeline.json``:
            ``preset``, ``dataset``, ``description``, ``training`` (settings), ``metrics``.

    Raises:
        TypeError: a component of the wrong type.
        ConfigError: (a ``ValueError``) the components do not fit together, or bad metadata.

    Example:
        >>> import torch
        >>> from discrete_latents import VQVAE, VQVAEConfig, CausalPrior, CausalPriorConfig
        >>> from discrete_latents.pipeline import VQVAEPipeline
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
                 generator: torch.Generator | None = None) -> Tensor:
        """Sample images: code grids from the prior, decoded by the VQ-VAE.

        Args:
            num_samples: N.
            temperature: softmax temperature of the prior; 0 is greedy. Default 1.
            top_k: keep only the k most likely codes at each step (None = all).
            top_p: nucleus sampling mass in (0, 1] (None = all).
            labels: (N,) int64 classes for a class-conditional prior; ``None`` = any class (a
                conditional prior draws them by their training-set frequencies).
            guidance_scale: classifier-free guidance; 1 is plain conditional sampling, 0 the
                prior's "no label" mode (see :meth:`~discrete_latents.BasePrior.sample`).
            generator: a ``torch.Generator`` on the prior's device, for reproducible samples.

        Returns:
            (N, C, H, W) float images in [0, 1], on the VQ-VAE's device.

        Example:
            >>> images = pipe.generate(16, labels=torch.arange(16) % 10,
            ...                        generator=torch.Generator().manual_seed(0))  # doctest: +SKIP
        """
        # 1. Draw N code grids (N, h, w) from the prior, one code at a time in raster order.
        codes = self.prior.sample(num_samples, temperature=temperature, top_k=top_k, top_p=top_p, labels=labels,
                                  guidance_scale=guidance_scale, generator=generator)
        # 2. Decode them with the VQ-VAE: code vectors -> decoder -> images clamped to [0, 1].
        return self.decode(codes)

    @torch.no_grad()
    def __call__(self, num_samples: int, **kwargs: Any) -> Tensor:
        """Same as :meth:`generate` (inference only, no gradients).

        Example:
            >>> images = pipe(4, temperature=0.9, top_k=50)  # doctest: +SKIP
        """
        # 1. Sample codes and decode them (see generate).
        return self.generate(num_samples, **kwargs)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Images (B, C, H, W) in [0, 1] -> code ids (B, h, w) int64; never updates the codebook.

        Example:
            >>> codes = pipe.encode(torch.rand(2, 1, 28, 28))  # doctest: +SKIP
        """
        # 1. Move the images to the VQ-VAE and quantize its encoder's output (eval: pure).
        if isinstance(images, Tensor):
            images = images.to(self.device)
        with _eval_mode(self.vqvae):
            return self.vqvae.encode(images)

    @torch.no_grad()
    def decode(self, indices: Tensor) -> Tensor:
        """Code ids (B, h, w) in [0, K) -> images (B, C, H, W) in [0, 1].

        Example:
            >>> images = pipe.decode(torch.zeros(2, 7, 7, dtype=torch.long))  # doctest: +SKIP
        """
        # 1. Check the ids against the codebook and grid before any lookup.
        indices = check_indices(indices, self.vqvae.codebook_size, self.vqvae.grid_size).to(self.device)
        # 2. Look up the code vectors and run the decoder.
        with _eval_mode(self.vqvae):
            return self.vqvae.decode_indices(indices)

    @torch.no_grad()
    def reconstruct(self, images: Tensor) -> Tensor:
        """Encode then decode: (B, C, H, W) in [0, 1] -> the same shape in [0, 1].

        Example:
            >>> recon = pipe.reconstruct(torch.rand(2, 1, 28, 28))  # doctest: +SKIP
        """
        # 1. Images -> codes -> images.
        return self.decode(self.encode(images))

    def sample_grid_images(self, seed: int = 0, num_samples: int = 16) -> Tensor:
        """The images a model card shows: seeded samples, one column per class for a conditional prior."""
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
            "library_version": _library_version(),
            "components": {
                "vqvae": {"class_name": "VQVAE", "registry_name": VQVAE_KEY},
                "prior": {"class_name": type(self.prior).__name__, "registry_name": registry_name_of(self.prior)},
            },
            "metadata": self.metadata,
        }

    def save_pretrained(self, save_directory: str | os.PathLike[str], *, sample_grid: bool | Tensor = False,
                        repo_id: str | None = None, seed: int = 0) -> Path:
        """Write the pipeline to a folder: ``pipeline.json``, ``vqvae/``, ``prior/``, ``README.md``.

        Each file is written atomically and ``pipeline.json`` last, so a folder with an index
        always has the components it names. Files of an earlier save are replaced.

        Args:
            save_directory: the folder (created if needed).
            sample_grid: ``True`` generates a small seeded sample grid (16 images, or one column
                per class) and saves it as ``samples.png`` for the model card; a tensor
                (B, C, H, W) in [0, 1] is saved as given. Default ``False`` (fast).
            repo_id: the Hub repo the card's usage snippet names.
            seed: seed of the generated sample grid.

        Returns:
            The folder.

        Example:
            >>> pipe.save_pretrained("mnist-pipeline", sample_grid=True)  # doctest: +SKIP
            >>> VQVAEPipeline.from_pretrained("mnist-pipeline")  # doctest: +SKIP
        """
        # 1. Check everything that can fail before writing: names, metadata, samples, card.
        folder = Path(save_directory)
        index = self._index()
        samples = None
        if isinstance(sample_grid, Tensor):
            samples = sample_grid
        elif sample_grid is True:
            samples = self.sample_grid_images(seed=seed)
        elif sample_grid is not False:
            raise TypeError(f"sample_grid: expected True, False or an image tensor, got {sample_grid!r}")
        classes = self.prior.num_classes
        nrow = classes if samples is not None and 0 < classes <= samples.shape[0] and sample_grid is True else None
        png = grid_png(samples, nrow=nrow) if samples is not None else None  # checks a given tensor early
        card = pipeline_card(self.vqvae, self.prior, index["components"]["prior"]["registry_name"],
                             metadata=self.metadata, repo_id=repo_id, samples=SAMPLES_NAME if samples is not None
                             else None, library_version=_library_version(),
                             tags=list(HubMixin._hub_mixin_info.model_card_data.tags or TAGS))
        # 2. Components, each in its own folder: config.json + model.safetensors.
        folder.mkdir(parents=True, exist_ok=True)
        for name, module in self.components.items():
            (folder / name).mkdir(exist_ok=True)
            module._save_pretrained(folder / name)  # type: ignore[operator]
        # 3. The model card and the image it shows.
        if png is not None:
            atomic_write_bytes(folder / SAMPLES_NAME, png)
        atomic_write_bytes(folder / README_NAME, card.encode("utf-8"))
        # 4. The index last: it commits the save.
        write_json(folder / PIPELINE_NAME, index)
        return folder

    def push_to_hub(self, repo_id: str, *, private: bool | None = False, token: str | None = None,
                    commit_message: str = "Upload VQVAEPipeline with discrete_latents",
                    commit_description: str | None = None, branch: str | None = None, create_pr: bool | None = None,
                    sample_grid: bool | Tensor = False) -> Any:
        """Upload what :meth:`save_pretrained` writes to a Hub model repo, in one commit.

        The repo is created if needed (``exist_ok``); the files are saved to a fresh temporary
        folder and committed together, so a reader never sees half a pipeline.

        Args:
            repo_id: ``"user/name"``.
            private: create the repo as private. Default False.
            token: a Hub token; default the logged-in one.
            commit_message, commit_description: of the commit.
            branch: branch to commit to (default ``main``).
            create_pr: open a pull request instead.
            sample_grid: as in :meth:`save_pretrained`.

        Returns:
            The ``huggingface_hub.CommitInfo`` of the commit.

        Example:
            >>> pipe.push_to_hub("me/mnist-vqvae", sample_grid=True)  # doctest: +SKIP
        """
        return push_folder(repo_id, lambda folder: self.save_pretrained(folder, sample_grid=sample_grid,
                                                                        repo_id=repo_id),
                           private=private, token=token, commit_message=commit_message,
                           commit_description=commit_description, branch=branch, create_pr=create_pr)

    # loading -------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], *, revision: str | None = None,
                        cache_dir: str | os.PathLike[str] | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, force_download: bool = False, map_location: str = "cpu",
                        check_finite: bool = True) -> VQVAEPipeline:
        """Load a pipeline saved by :meth:`save_pretrained`, from a folder or a Hub repo id.

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
            check_finite: NaN or inf weights raise :class:`~discrete_latents.errors.NonFiniteError`.

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

        Example:
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
        classes, metadata = parse_index(read_json(index_path), str(index_path))
        # 2. Every component folder must exist before any weights are read.
        for name in COMPONENTS:
            if not (folder / name).is_dir():
                raise ConfigError(f"{index_path}: component {name!r}: its folder {name}/ is missing from {folder}")
        # 3. Load each component strictly, then check they fit together.
        loaded = {name: classes[name]._load_folder(folder / name, check_finite=check_finite,
                                                    map_location=map_location)
                  for name in COMPONENTS}
        try:
            pipeline = cls(vqvae=loaded["vqvae"], prior=loaded["prior"], metadata=metadata)  # type: ignore[arg-type]
        except (ConfigError, TypeError) as err:
            raise ConfigError(f"{folder}: the saved components do not fit together: {err}") from None
        pipeline.pretrained_source = source
        return pipeline

    # compression ---------------------------------------------------------------------------------
    def compress(self, images: Tensor, labels: Tensor | None = None) -> bytes:
        """Compress images to bytes: their codes, entropy-coded with the prior (see :mod:`~discrete_latents.codec`).

        Lossy like any image codec: :meth:`decompress` gives back exactly ``self.reconstruct(images)``.

        Args:
            images: (B, C, H, W) floats in [0, 1], encoded in one batch as by :meth:`encode`.
            labels: (B,) classes for a class-conditional prior (stored, about 3.3 bits each for
                10 classes); ``None`` stores per image whichever of "no label" and each class is
                cheapest (slower: the encoder tries them all).

        Example:
            >>> data = pipe.compress(images)  # doctest: +SKIP
            >>> torch.equal(pipe.decompress(data), pipe.reconstruct(images))  # doctest: +SKIP
            True
        """
        return self.compress_codes(self.encode(images), labels)

    def decompress(self, data: bytes, return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
        """Images (N, C, H, W) in [0, 1] from :meth:`compress` bytes; with ``return_labels``, also the stored labels.

        Raises:
            CodecError: a stream that is corrupt, truncated, foreign or from another pipeline.
        """
        codes, labels = self.decompress_codes(data, return_labels=True)
        images = self.decode(codes)
        return (images, labels) if return_labels else images

    def compress_codes(self, codes: Tensor, labels: Tensor | None = None) -> bytes:
        """Compress code grids (N, h, w) to bytes with the prior; see :func:`discrete_latents.codec.compress_codes`."""
        return codec.compress_codes(self.prior, codes, labels, fingerprint=codec.fingerprint_of(self.vqvae, self.prior))

    def decompress_codes(self, data: bytes, return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor | None]:
        """Code grids (N, h, w) from :meth:`compress_codes` bytes; with ``return_labels``, (codes, labels or None)."""
        decoded = codec.decompress_codes(self.prior, data, fingerprint=codec.fingerprint_of(self.vqvae, self.prior))
        return (decoded.codes, decoded.labels) if return_labels else decoded.codes
