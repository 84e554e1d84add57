"""Model cards (``README.md``) for saved pipelines and components.

A card is YAML metadata the Hub indexes (library name, license, tags, pipeline tag, datasets)
followed by Markdown: what the model is, how to load it, its components and configs, the preset
and training settings, the measured evaluation metrics as a table, and a sample grid when one
was saved. Cards are deterministic (no dates), so saving a loaded model again gives the same file.

``metadata`` is a plain JSON object; the keys this module understands are::

    {"preset": "mnist", "dataset": "mnist", "description": "...",
     "training": {"steps": 20000, "batch_size": 128, "lr": 3e-4},
     "metrics": {"psnr_db": 23.1, "perplexity": 87.5, "prior_nll_bits_per_image": 141.2}}

Other keys are kept (in ``pipeline.json``) but not shown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from huggingface_hub import ModelCardData
from huggingface_hub.utils import validate_repo_id

from .errors import ConfigError
from .files import MAX_JSON_BYTES, dumps_json, loads_json

PAPER_URL = "https://arxiv.org/abs/1711.00937"
REPO_URL = "https://github.com/discrete-latents/discrete_latents"
LIBRARY_NAME = "discrete_latents"
LICENSE = "mit"
TAGS = ["discrete_latents", "vq-vae"]
SAMPLES_NAME = "samples.png"
CITATION = """@inproceedings{oord2017neural,
  title     = {Neural Discrete Representation Learning},
  author    = {van den Oord, Aaron and Vinyals, Oriol and Kavukcuoglu, Koray},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2017},
  url       = {https://arxiv.org/abs/1711.00937}
}"""

_TEXT_KEYS = ("preset", "dataset", "description")
_TABLE_KEYS = ("training", "metrics", "sample_quality")


def check_metadata(metadata: object, source: str = "metadata") -> dict[str, Any]:
    """Validate card metadata: a JSON object of finite values; known keys have the right types.

    Returns a normalised deep copy (tuples become lists), so later changes by the caller do not
    leak into a saved pipeline.

    Raises:
        ConfigError: naming ``source``, the key and what is wrong.

    Example:
        >>> check_metadata({"preset": "mnist", "metrics": {"psnr_db": 23.1}})
        {'metrics': {'psnr_db': 23.1}, 'preset': 'mnist'}
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ConfigError(f"{source}: expected a JSON object (dict), got {type(metadata).__name__}")
    try:
        text = dumps_json(dict(metadata))
    except (TypeError, ValueError) as err:  # a tensor, a set, NaN ...
        raise ConfigError(f"{source}: not JSON-serialisable with finite numbers ({err})") from None
    if len(text) > MAX_JSON_BYTES // 2:
        raise ConfigError(f"{source}: {len(text)} bytes of JSON is too much for model card metadata")
    data: dict[str, Any] = loads_json(text, source=source)
    for key in _TEXT_KEYS:
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{source}.{key}: expected a string, got {type(data[key]).__name__} {data[key]!r}")
    for key in _TABLE_KEYS:
        if key in data and not isinstance(data[key], dict):
            raise ConfigError(f"{source}.{key}: expected an object of name -> value, got {type(data[key]).__name__}")
    for name, value in data.get("metrics", {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{source}.metrics.{name}: expected a number or a string, got {value!r}")
    return data


# Markdown helpers --------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    """One table cell: numbers compactly, nested values as JSON, pipes and newlines escaped."""
    if isinstance(value, float):
        text = f"{value:.6g}" if math.isfinite(value) else str(value)
    elif isinstance(value, (bool, int, str)) or value is None:
        text = json.dumps(value) if isinstance(value, bool) or value is None else str(value)
    else:
        text = json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: Mapping[str, Any], header: Sequence[str] = ("Name", "Value")) -> str:
    """A two-column Markdown table, rows in the order given."""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {_cell(name)} | {_cell(value)} |" for name, value in rows.items()]
    return "\n".join(lines)


def count_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _human(count: int) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}"
    return str(count)


def _front_matter(tags: Sequence[str], pipeline_tag: str | None, metadata: Mapping[str, Any]) -> str:
    dataset = metadata.get("dataset")
    data = ModelCardData(library_name=LIBRARY_NAME, license=LICENSE, tags=sorted(set(tags)),
                         pipeline_tag=pipeline_tag, datasets=[dataset] if dataset else None)
    return f"---\n{data.to_yaml()}\n---"


def _settings_sections(metadata: Mapping[str, Any]) -> list[str]:
    parts = []
    if metadata.get("preset"):
        parts.append(f"## Preset\n\nBuilt from the `{metadata['preset']}` preset"
                     + (f", trained on {metadata['dataset']}." if metadata.get("dataset") else "."))
    if metadata.get("training"):
        parts.append("## Training settings\n\n" + table(metadata["training"], ("Setting", "Value")))
    if metadata.get("metrics"):
        parts.append("## Evaluation\n\nMeasured on held-out data after training.\n\n"
                     + table(metadata["metrics"], ("Metric", "Value")))
    if metadata.get("sample_quality"):
        parts.append("## Sample quality\n\nSamples judged by a separately trained classifier.\n\n"
                     + table(metadata["sample_quality"], ("Measure", "Value")))
    return parts


def _config_block(name: str, config: Any) -> str:
    return f"<details>\n<summary>{name} config</summary>\n\n```json\n{dumps_json(config.to_dict())}```\n\n</details>"


def _describe_vqvae(vqvae: Any) -> str:
    cfg = vqvae.config
    h, w = vqvae.grid_size
    return (f"{cfg.in_channels}x{cfg.image_size}x{cfg.image_size} images -> a {h}x{w} grid of"
            f" {vqvae.codebook_size} codes (`{cfg.quantizer}` quantizer, {cfg.latent_dim}-d codes)")


def _describe_prior(prior: Any) -> str:
    h, w = prior.grid_size
    cond = (f"class-conditional on {prior.num_classes} classes" if prior.num_classes
            else "unconditional")
    kind = "autoregressive" if prior.raster_order else "masked (parallel decoding)"
    return f"{kind} over {h}x{w} grids of {prior.codebook_size} codes, {cond}"


def _footer() -> str:
    return ("## Citation\n\nThe VQ-VAE: [Neural Discrete Representation Learning]"
            f"({PAPER_URL}) (van den Oord et al. 2017).\n\n```bibtex\n{CITATION}\n```\n")


def _pipeline_title(repo_id: str | None, metadata: Mapping[str, Any]) -> str:
    if repo_id:
        return repo_id.split("/")[-1]
    return f"{metadata['preset']} VQ-VAE pipeline" if metadata.get("preset") else "VQ-VAE pipeline"


# cards -------------------------------------------------------------------------------------------
def pipeline_card(vqvae: Any, prior: Any, prior_name: str, *, metadata: Mapping[str, Any] | None = None,
                  repo_id: str | None = None, samples: str | None = None, library_version: str = "",
                  tags: Sequence[str] = TAGS) -> str:
    """The ``README.md`` of a saved :class:`~discrete_latents.pipeline.VQVAEPipeline`.

    Args:
        vqvae: the pipeline's VQ-VAE.
        prior: the pipeline's prior.
        prior_name: the prior's registry name.
        metadata: see the module docstring.
        repo_id: shown in the usage snippet (a placeholder when unknown).
        samples: file name of a sample grid saved next to the card, or ``None``.
        library_version: the discrete_latents version that wrote the card.
        tags: Hub tags.

    Example:
        >>> from discrete_latents import VQVAE, VQVAEConfig, CausalPrior, CausalPriorConfig
        >>> card = pipeline_card(VQVAE(VQVAEConfig(channels=(8, 16))),
        ...                      CausalPrior(CausalPriorConfig(n_layer=1, n_head=2, n_embd=16)),
        ...                      "causal_transformer", metadata={"metrics": {"psnr_db": 20.5}})
        >>> "| psnr_db | 20.5 |" in card
        True
    """
    metadata = check_metadata(metadata)
    if repo_id is not None:
        validate_repo_id(repo_id)  # it is pasted into the card's Markdown and code
    where = repo_id or "path/to/this/folder"
    labels = (f", labels=torch.arange(16) % {prior.num_classes}" if prior.num_classes else "")
    version = f" {library_version}" if library_version else ""
    parts = [
        _front_matter([*tags, "image-generation"], "unconditional-image-generation", metadata),
        f"# {_pipeline_title(repo_id, metadata)}",
        (metadata["description"] + "\n\n" if metadata.get("description") else "")
        + f"A VQ-VAE ([van den Oord et al. 2017]({PAPER_URL})) with a `{prior_name}` prior over its codes, saved"
          f" by [discrete_latents]({REPO_URL}){version}. Sampling draws a code grid from the prior and decodes it"
          " with the VQ-VAE.",
    ]
    if samples:
        parts.append(f"![Samples]({samples})")
    parts.append(
        "## Usage\n\n```python\nimport torch\nfrom discrete_latents import VQVAEPipeline\n"
        "from discrete_latents.images import save_grid\n\n"
        f"pipe = VQVAEPipeline.from_pretrained({where!r})\n"
        f"images = pipe.generate(16{labels}, generator=torch.Generator().manual_seed(0))  # (16, C, H, W) in [0, 1]\n"
        "save_grid(images, \"samples.png\")\n"
        "codes = pipe.encode(images)  # (16, h, w) code ids\n```\n\n"
        "Loading reads only `pipeline.json`, `config.json` and `model.safetensors` files (no pickle); it"
        " works offline from the Hugging Face cache with `HF_HUB_OFFLINE=1`."
    )
    rows = [
        "| Component | Folder | Class | Registry name | Parameters | What it does |",
        "|---|---|---|---|---|---|",
        f"| VQ-VAE | `vqvae/` | `{type(vqvae).__name__}` | `vqvae` | {_human(count_parameters(vqvae))}"
        f" | {_describe_vqvae(vqvae)} |",
        f"| prior | `prior/` | `{type(prior).__name__}` | `{prior_name}` | {_human(count_parameters(prior))}"
        f" | {_describe_prior(prior)} |",
    ]
    parts.append("## Components\n\n" + "\n".join(rows) + "\n\n" + _config_block("vqvae", vqvae.config)
                 + "\n\n" + _config_block("prior", prior.config))
    parts += _settings_sections(metadata)
    parts.append(_footer())
    return "\n\n".join(parts)


def component_card(model: Any, *, metadata: Mapping[str, Any] | None = None, repo_id: str | None = None,
                   library_version: str = "", tags: Sequence[str] = TAGS) -> str:
    """The ``README.md`` of a VQ-VAE or a prior saved on its own.

    Args:
        model: a :class:`~discrete_latents.VQVAE` or a :class:`~discrete_latents.BasePrior`.
        metadata: see the module docstring.
        repo_id: shown in the usage snippet (a placeholder when unknown).
        library_version: the discrete_latents version that wrote the card.
        tags: Hub tags.

    Example:
        >>> from discrete_latents import VQVAE, VQVAEConfig
        >>> card = component_card(VQVAE(VQVAEConfig(channels=(8, 16))))
        >>> card.startswith("---") and "VQVAE.from_pretrained" in card
        True
    """
    metadata = check_metadata(metadata)
    if repo_id is not None:
        validate_repo_id(repo_id)  # it is pasted into the card's Markdown and code
    where = repo_id or "path/to/this/folder"
    cls = type(model)
    is_vqvae = hasattr(model, "decode_indices")
    version = f" {library_version}" if library_version else ""
    if is_vqvae:
        kind, what = "VQ-VAE", _describe_vqvae(model)
        load = f"from discrete_latents import VQVAE\n\nmodel = VQVAE.from_pretrained({where!r})\n" \
               "codes = model.encode(images)  # images (B, C, H, W) in [0, 1] -> (B, h, w) code ids\n" \
               "images = model.decode_indices(codes)"
        extra_tags = ["image-tokenizer"]
    else:
        name = getattr(cls, "registry_name", cls.__name__)
        kind, what = f"`{name}` prior", _describe_prior(model)
        labels = f", labels=torch.arange(16) % {model.num_classes}" if model.num_classes else ""
        load = "import torch\nfrom discrete_latents import PRIORS\n\n" \
               f"prior = PRIORS.get({name!r}).from_pretrained({where!r})\n" \
               f"codes = prior.sample(16{labels}, generator=torch.Generator().manual_seed(0))  # (16, h, w) code ids"
        extra_tags = ["prior"]
    parts = [
        _front_matter([*tags, *extra_tags], None, metadata),
        f"# {repo_id.split('/')[-1] if repo_id else cls.__name__}",
        (metadata["description"] + "\n\n" if metadata.get("description") else "")
        + f"A {kind} (`{cls.__name__}`, {_human(count_parameters(model))} parameters): {what}. Saved by"
          f" [discrete_latents]({REPO_URL}){version}; see the [VQ-VAE paper]({PAPER_URL}).",
        f"## Usage\n\n```python\n{load}\n```\n\nThe folder holds `config.json` (strict, versioned) and"
        " `model.safetensors`; loading never unpickles anything.",
        "## Configuration\n\n```json\n" + dumps_json(model.config.to_dict()) + "```",
    ]
    parts += _settings_sections(metadata)
    parts.append(_footer())
    return "\n\n".join(parts)
