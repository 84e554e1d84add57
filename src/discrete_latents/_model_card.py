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

from ._files import MAX_JSON_BYTES, dumps_json, loads_json
from ._hub import LIBRARY_NAME, library_version
from .errors import ConfigError

PAPER_URL = "https://arxiv.org/abs/1711.00937"
REPO_URL = "https://github.com/discrete-latents/discrete_latents"
LICENSE = "mit"
TAGS = ["discrete_latents", "vq-vae"]
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

    Examples:
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


def _describe(model: Any) -> str:
    if hasattr(model, "quantizer"):  # a VQ-VAE
        cfg, (h, w) = model.config, model.grid_size
        height, width = getattr(cfg, "image_shape", (cfg.image_size, cfg.image_size))
        return (f"{cfg.in_channels}x{height}x{width} images -> a {h}x{w} grid of"
                f" {model.codebook_size} codes (`{cfg.quantizer}` quantizer, {cfg.latent_dim}-d codes)")
    h, w = model.grid_size
    cond = f"class-conditional on {model.num_classes} classes" if model.num_classes else "unconditional"
    kind = "autoregressive" if model.raster_order else "masked (parallel decoding)"
    return f"a {kind} prior over {h}x{w} grids of {model.codebook_size} codes, {cond}"


def _usage(components: Mapping[str, tuple[Any, str]], where: str) -> str:
    """The card's code snippet: load the folder and use it."""
    prior = components.get("prior", (None, ""))[0]
    labels = f", labels=torch.arange(16) % {prior.num_classes}" if prior is not None and prior.num_classes else ""
    if "vqvae" in components and "prior" in components:
        return ("import torch\nfrom discrete_latents import VQVAEPipeline\n\n"
                f"pipe = VQVAEPipeline.from_pretrained({where!r})\n"
                f"images = pipe.generate(16{labels}, generator=torch.Generator().manual_seed(0))  # (16, C, H, W)\n"
                "codes = pipe.encode(images)  # (16, h, w) code ids")
    if "vqvae" in components:
        return (f"from discrete_latents import VQVAE\n\nmodel = VQVAE.from_pretrained({where!r})\n"
                "codes = model.encode(images)  # images (B, C, H, W) in [0, 1] -> (B, h, w) code ids\n"
                "images = model.decode(codes)")
    name = components["prior"][1]
    return ("import torch\nfrom discrete_latents import PRIORS\n\n"
            f"prior = PRIORS.get({name!r}).from_pretrained({where!r})\n"
            f"codes = prior.sample(16{labels}, generator=torch.Generator().manual_seed(0))  # (16, h, w) code ids")


def model_card(components: Mapping[str, tuple[Any, str]], *, metadata: Mapping[str, Any] | None = None,
               repo_id: str | None = None, samples: str | None = None) -> str:
    """The ``README.md`` of a saved pipeline or component; the one place cards are written.

    Args:
        components: ``{"vqvae": (model, "vqvae"), "prior": (prior, registry_name)}`` for a
            pipeline, or the one entry of a component saved on its own.
        metadata: see the module docstring.
        repo_id: shown in the usage snippet (a placeholder when unknown).
        samples: file name of an image grid saved next to the card, or ``None``.

    Examples:
        >>> from discrete_latents import VQVAE, VQVAEConfig
        >>> card = model_card({"vqvae": (VQVAE(VQVAEConfig(channels=(8, 16))), "vqvae")},
        ...                   metadata={"metrics": {"psnr_db": 20.5}})
        >>> "| psnr_db | 20.5 |" in card and "VQVAE.from_pretrained" in card
        True
    """
    metadata = check_metadata(metadata)
    if repo_id is not None:
        validate_repo_id(repo_id)  # it is pasted into the card's Markdown and code
    pipeline = len(components) > 1
    if pipeline:
        title, tags, what = "VQ-VAE pipeline", [*TAGS, "image-generation"], (
            f"A VQ-VAE ([van den Oord et al. 2017]({PAPER_URL})) with a `{components['prior'][1]}` prior over its"
            " codes. Sampling draws a code grid from the prior and decodes it with the VQ-VAE.")
    else:
        (key, (model, name)), = components.items()
        title = type(model).__name__
        tags = [*TAGS, "image-tokenizer" if key == "vqvae" else "prior"]
        what = (f"A {'VQ-VAE' if key == 'vqvae' else f'`{name}` prior'} (`{type(model).__name__}`,"
                f" {_human(count_parameters(model))} parameters): {_describe(model)}.")
    if metadata.get("preset") and pipeline:
        title = f"{metadata['preset']} {title}"
    parts = [
        _front_matter(tags, "unconditional-image-generation" if pipeline else None, metadata),
        f"# {repo_id.split('/')[-1] if repo_id else title}",
        (metadata["description"] + "\n\n" if metadata.get("description") else "")
        + f"{what} Saved by [discrete_latents]({REPO_URL}) {library_version()}.",
    ]
    if samples:
        parts.append(f"![Samples]({samples})")
    parts.append(f"## Usage\n\n```python\n{_usage(components, repo_id or 'path/to/this/folder')}\n```\n\n"
                 "Loading reads only JSON and `model.safetensors` files (no pickle); it works offline from the"
                 " Hugging Face cache with `HF_HUB_OFFLINE=1`.")
    rows = ["| Component | Class | Registry name | Parameters | What it does |", "|---|---|---|---|---|"]
    rows += [f"| `{key}` | `{type(model).__name__}` | `{name}` | {_human(count_parameters(model))} |"
             f" {_describe(model)} |" for key, (model, name) in components.items()]
    configs = "\n\n".join(f"<details>\n<summary>{key} config</summary>\n\n```json\n{dumps_json(model.config.to_dict())}"
                           "```\n\n</details>" for key, (model, _) in components.items())
    parts.append("## Components\n\n" + "\n".join(rows) + "\n\n" + configs)
    parts += _settings_sections(metadata)
    parts.append(f"## Citation\n\nThe VQ-VAE: [Neural Discrete Representation Learning]({PAPER_URL}) (van den Oord"
                 f" et al. 2017).\n\n```bibtex\n{CITATION}\n```\n")
    return "\n\n".join(parts)
