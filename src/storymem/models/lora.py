"""The StoryMem LoRA: read, check, load (rsLoRA scale) and save in the official format.

Official format (the released `Kevin-thu/StoryMem` weights): one safetensors file per expert,
`backbone_high_noise.safetensors` and `backbone_low_noise.safetensors`, PEFT keys in Wan's own
module names:

    base_model.model.blocks.{i}.{self_attn|cross_attn}.{q|k|v|o}.lora_{A|B}.weight
    base_model.model.blocks.{i}.ffn.{0|2}.lora_{A|B}.weight

A is [r, in], B is [out, r]; r = lora_alpha = 128 with use_rslora, so the scale is
alpha / sqrt(r) (= sqrt(r) when alpha = r), not 1. Keys prefixed `diffusion_model.` (ComfyUI)
and diffusers-named keys (`[transformer.]blocks.{i}.attn1.to_q...`) are accepted too. The file
must cover exactly the model's target layers: anything missing, unexpected or mis-shaped is an
error that names the keys.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from .. import hub
from ..errors import LoraError
from ..weights import check_safetensors, read_weights

ADAPTER_NAME = "storymem"
EXPERT_FILES = {"high": "backbone_high_noise", "low": "backbone_low_noise"}

# Wan's module names -> diffusers' module names inside one block.
WAN_TO_DIFFUSERS = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
DIFFUSERS_TO_WAN = {v: k for k, v in WAN_TO_DIFFUSERS.items()}
OFFICIAL_PREFIX = "base_model.model."

_KEY = re.compile(r"^(?:base_model\.model\.|diffusion_model\.|transformer\.)?blocks\.(\d+)\.(.+)\.(lora_[AB])\.weight$")


def _short_list(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    more = f" (and {len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def to_diffusers_keys(state_dict: dict[str, torch.Tensor], file: str = "<lora>") -> dict[str, torch.Tensor]:
    """Rename any accepted key format to diffusers' module names (``blocks.0.attn1.to_q.lora_A.weight``)."""
    out, unknown = {}, []
    for key, value in state_dict.items():
        match = _KEY.match(key)
        name = match.group(2) if match else ""
        module = WAN_TO_DIFFUSERS.get(name) or (name if name in DIFFUSERS_TO_WAN else None)
        if not module:
            unknown.append(key)
            continue
        out[f"blocks.{match.group(1)}.{module}.{match.group(3)}.weight"] = value
    if unknown:
        raise LoraError(f"{file}: unexpected keys that are not StoryMem LoRA layers: {_short_list(unknown)}")
    return out


def to_official_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers-named LoRA keys -> the released StoryMem format."""
    out = {}
    for key, value in state_dict.items():
        match = _KEY.match(key)
        if not match or match.group(2) not in DIFFUSERS_TO_WAN:
            raise LoraError(f"cannot express {key!r} in the StoryMem LoRA format")
        out[f"{OFFICIAL_PREFIX}blocks.{match.group(1)}.{DIFFUSERS_TO_WAN[match.group(2)]}.{match.group(3)}.weight"] = (
            value
        )
    return out


def target_layers(transformer: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The linear layers the official LoRA targets, by diffusers name, in every block."""
    layers = {}
    for i, block in enumerate(transformer.blocks):
        for module in DIFFUSERS_TO_WAN:
            layer = block.get_submodule(module)
            layer = getattr(layer, "base_layer", layer)  # already wrapped by peft
            layers[f"blocks.{i}.{module}"] = layer
    return layers


def check_lora(
    state_dict: dict[str, torch.Tensor], transformer: torch.nn.Module, file: str, strict: bool = True
) -> int:
    """Check diffusers-named LoRA weights against the model; returns the rank r.

    strict: every target layer of every block must be present (the released weights cover all).
    """
    layers = target_layers(transformer)
    expected = {f"{name}.lora_{ab}.weight" for name in layers for ab in "AB"}
    unexpected = set(state_dict) - expected
    if unexpected:
        raise LoraError(f"{file}: unexpected keys (the model has no such layer): {_short_list(unexpected)}")
    present = {k.rsplit(".lora_", 1)[0] for k in state_dict}
    unpaired = {f"{n}.lora_{ab}.weight" for n in present for ab in "AB"} - set(state_dict)
    missing = unpaired | ((expected - set(state_dict)) if strict else set())
    if missing:
        raise LoraError(f"{file}: missing keys ({len(missing)}): {_short_list(missing)}")
    ranks, bad = set(), []
    for name in present:
        a, b = state_dict[f"{name}.lora_A.weight"], state_dict[f"{name}.lora_B.weight"]
        layer = layers[name]
        if (
            a.ndim != 2
            or b.ndim != 2
            or a.shape[1] != layer.in_features
            or b.shape[0] != layer.out_features
            or a.shape[0] != b.shape[1]
        ):
            bad.append(
                f"{name} (A {tuple(a.shape)}, B {tuple(b.shape)}; layer is {layer.in_features} -> {layer.out_features})"
            )
        ranks.add(a.shape[0])
    if bad:
        raise LoraError(f"{file}: shapes do not fit the model: {_short_list(bad, 3)}")
    if len(ranks) != 1:
        raise LoraError(f"{file}: layers have different ranks {sorted(ranks)}; expected one rank")
    return ranks.pop()


def read_lora_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (or a .pth/.pt state dict, read weights-only)."""
    return read_weights(path, "LoRA weights", error=LoraError)


def load_expert_lora(
    transformer: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    file: str,
    alpha: float | None = None,
    strict: bool = True,
    adapter_name: str = ADAPTER_NAME,
) -> float:
    """Load one expert's LoRA with the rsLoRA scale alpha / sqrt(r) (alpha defaults to r).
    Replaces an adapter of the same name. Returns the scale."""
    weights = to_diffusers_keys(state_dict, file)
    rank = check_lora(weights, transformer, file, strict=strict)
    alpha = float(rank if alpha is None else alpha)
    if adapter_name in getattr(transformer, "peft_config", {}):
        transformer.delete_adapters(adapter_name)
    config = {
        "r": rank,
        "lora_alpha": alpha,
        "use_rslora": True,
        "target_modules": sorted({k.rsplit(".lora_", 1)[0] for k in weights}),
        "lora_dropout": 0.0,
    }
    transformer.load_lora_adapter(weights, prefix=None, adapter_name=adapter_name, metadata=config)
    return alpha / math.sqrt(rank)


def expert_state_dict(transformer: torch.nn.Module, adapter_name: str = ADAPTER_NAME) -> dict[str, torch.Tensor]:
    """An expert's LoRA weights in the official format (fp32, contiguous)."""
    from peft.utils import get_peft_model_state_dict

    if adapter_name not in getattr(transformer, "peft_config", {}):
        raise LoraError(f"no LoRA adapter named {adapter_name!r} is loaded in this expert")
    weights = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    return {k: v.detach().float().cpu().contiguous() for k, v in to_official_keys(weights).items()}


def save_lora_file(path: Path, state_dict: dict[str, torch.Tensor], rank: int, alpha: float) -> None:
    """Write one expert's file atomically. Metadata records r/alpha; readers that ignore it
    (the published code) use the same defaults."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    meta = {"format": "pt", "r": str(rank), "lora_alpha": str(alpha), "use_rslora": "true"}
    save_file(state_dict, str(tmp), metadata=meta)
    tmp.replace(path)


def resolve_lora_files(
    source: str | Path, variant: str, subfolders: dict[str, str], fetch: str | None = None
) -> dict[str, Path]:
    """Map a LoRA source to {expert: file}, each checked to be whole (`fetch`: the command that
    gets the files again, named if one is cut short).

    Accepts: a folder with the two backbone files; the root of the released repo (variant
    subfolders); a single file whose name says its expert; or a hub repo id.
    """
    files = _find_lora_files(source, variant, subfolders)
    for file in files.values():
        if file.suffix == ".safetensors":
            check_safetensors(file, "LoRA weights", LoraError, fetch)
    return files


def _find_lora_files(source: str | Path, variant: str, subfolders: dict[str, str]) -> dict[str, Path]:
    path = Path(source)
    if path.is_file():
        for expert, stem in EXPERT_FILES.items():
            if stem in path.name:
                return {expert: path}
        raise LoraError(
            f"{path}: cannot tell which expert this file is for; name it backbone_high_noise.safetensors or backbone_low_noise.safetensors"
        )
    if not path.exists():
        if hub.is_hub_id(source):
            path = _download_lora(str(source), subfolders.get(variant, ""))
        else:
            raise LoraError(f"{path}: LoRA path not found")
    folders = [path] + ([path / subfolders[variant]] if variant in subfolders else [])
    for folder in folders:
        found = {}
        for expert, stem in EXPERT_FILES.items():
            for suffix in (".safetensors", ".pth", ".pt"):
                if (folder / f"{stem}{suffix}").is_file():
                    found[expert] = folder / f"{stem}{suffix}"
                    break
        if found:
            return found
    looked = " or ".join(str(f) for f in folders)
    raise LoraError(f"{path}: no backbone_high_noise.safetensors / backbone_low_noise.safetensors in {looked}")


def fetch_command(preset) -> str | None:
    """How to get a preset's released LoRA again (None: the preset has none on a hub)."""
    if preset.lora_source and hub.HUB_ID.fullmatch(preset.lora_source):
        return f"hf download {preset.lora_source} --local-dir models/StoryMem"
    return None


def _download_lora(repo: str, subfolder: str) -> Path:
    hint = f"download it with: hf download {repo} --include '{subfolder}/*' --local-dir ./models/StoryMem"
    patterns = [f"{subfolder}/*"] if subfolder else None
    return hub.snapshot(repo, f"StoryMem LoRA {repo}", hint, allow_patterns=patterns, error=LoraError)
