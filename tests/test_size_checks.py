"""A config that claims more than its weights file holds is refused before memory is spent.

Each case edits a few bytes of a saved config.json (a codebook of 2**40 codes would need 4 TB).
All cases load in one fresh process, whose peak memory after every refusal is compared with its
peak after importing the library: the refusals together must stay within a small bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from discrete_latents import VQVAE, CausalPrior, CausalPriorConfig, VQVAEConfig

LOAD = """
import resource, sys
import discrete_latents as dl
from discrete_latents.errors import CheckpointFormatError
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for line in sys.stdin.read().splitlines():
    kind, folder = line.split(" ", 1)
    try:
        (dl.VQVAE if kind == "vqvae" else dl.CausalPrior).from_pretrained(folder)
        print("LOADED")
    except CheckpointFormatError as err:
        print("REFUSED", str(err).replace(chr(10), " "))
print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)
"""

VQVAE_CASES = [  # (config changes, what the message must name)
    ({"quantizer_kwargs": {"codebook_size": 2**40}}, "quantizer_kwargs.codebook_size=1099511627776"),
    ({"quantizer_kwargs": {"codebook_size": 300_000_000}}, "quantizer_kwargs.codebook_size=300000000"),
    ({"latent_dim": 2**20}, "latent_dim=1048576"),
    ({"quantizer": "rvq", "quantizer_kwargs": {"codebook_size": 16, "num_quantizers": 10**7}},
     "quantizer_kwargs.num_quantizers=10000000"),
    ({"channels": [8, 2**21], "norm_groups": 8}, "channels[1]=2097152"),
]
PRIOR_CASES = [
    ({"n_layer": 10**6}, "n_layer=1000000"),
    ({"codebook_size": 2**36}, "codebook_size=68719476736"),
    ({"n_embd": 2**22, "n_head": 2}, "n_embd=4194304"),
]


def write_case(folder: Path, kind: str, changes: dict[str, object]) -> None:
    if kind == "vqvae":
        config = VQVAEConfig(channels=(8, 16), latent_dim=8, quantizer_kwargs={"codebook_size": 16})
        VQVAE(config).save_pretrained(folder)
    else:
        CausalPrior(CausalPriorConfig(codebook_size=16, n_layer=1, n_head=2, n_embd=16)).save_pretrained(folder)
    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    (folder / "config.json").write_text(json.dumps(data))


def test_configs_claiming_too_much_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    cases = [("vqvae", *case) for case in VQVAE_CASES] + [("prior", *case) for case in PRIOR_CASES]
    cases.append(("vqvae", {"quantizer_kwargs": {"codebook_size": 17}},
                  "'quantizer.weight': shape (16, 8) in the file, the model expects (17, 8)"))
    cases.append(("vqvae", {}, None))  # the untouched model still loads
    lines = []
    for i, (kind, changes, _) in enumerate(cases):
        write_case(tmp_path / str(i), kind, changes)
        lines.append(f"{kind} {tmp_path / str(i)}")
    result = subprocess.run([sys.executable, "-c", LOAD], input="\n".join(lines), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    *outcomes, growth = result.stdout.strip().splitlines()
    for (_, changes, named), outcome in zip(cases, outcomes, strict=True):
        if named is None:
            assert outcome == "LOADED"
        else:
            assert outcome.startswith("REFUSED") and named in outcome, (changes, outcome)
    growth_kb = int(growth.split()[1])
    assert growth_kb < 300 * 1024, f"the refusals grew the process by {growth_kb / 1024:.0f} MiB"
