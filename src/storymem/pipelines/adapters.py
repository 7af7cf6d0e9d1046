"""The LoRAs on the experts: the StoryMem M2V LoRA (both I2V experts), an optional step-distilled
preview LoRA stacked on it, and which of them are active or merged. A mixin of
`StoryMemPipeline`; the file formats and key mapping are `models.lora` and `models.preview`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .. import acceleration
from ..distributed.lockstep import in_lockstep
from ..errors import InputError, LoraError
from ..models import lora as lora_io
from ..models.presets import Preset
from ..models.preview import PREVIEW_ADAPTER, find_preview_files, load_preview_lora
from ..options import VARIANTS, PipelineOptions


class AdaptersMixin:
    """Needs: transformer, transformer_2, t2v_transformer, t2v_transformer_2, preset, placement,
    and the state set by `_init_adapters`."""

    def _init_adapters(self) -> None:
        self.lora_variant: str | None = None
        self.preview = None  # PreviewFiles when preview mode is on
        self._storymem_lora_on = True

    def load_storymem_lora(
        self,
        path: str | Path | None = None,
        variant: str = PipelineOptions.variant,
        alpha: float | None = None,
        strict: bool = True,
    ) -> None:
        """Load StoryMem LoRA weights into both I2V experts with the rsLoRA scale alpha/sqrt(r).

        path: a folder with backbone_high_noise/low_noise.safetensors, the released repo's root
        (variant subfolders), one expert's file, or a hub id. alpha defaults to the file's
        metadata, else r (the released weights: scale sqrt(128) = 11.31).
        """
        if variant not in VARIANTS:
            raise InputError(f"LoRA variant must be 'mi2v' or 'mm2v', got {variant!r}")
        source = path or self.preset.lora_source
        if not source:
            raise LoraError(f"the {self.preset.name} preset has no default StoryMem LoRA; pass a path")
        files = lora_io.resolve_lora_files(source, variant, self.preset.lora_subfolders)
        for expert in (self.transformer, self.transformer_2):  # a merged adapter is unmerged before it is replaced
            if acceleration.is_fused(expert):
                expert.unfuse_lora()
        if Path(source).is_dir() and len(files) != 2:
            missing = [lora_io.EXPERT_FILES[e] for e in lora_io.EXPERT_FILES if e not in files]
            raise LoraError(f"{source}: missing {', '.join(missing)}.safetensors (one file per expert)")
        for expert, file in files.items():
            weights, metadata = lora_io.read_lora_file(file)
            file_alpha = (
                alpha if alpha is not None else (float(metadata["lora_alpha"]) if "lora_alpha" in metadata else None)
            )
            model = self.transformer if expert == "high" else self.transformer_2
            lora_io.load_expert_lora(model, weights, str(file), alpha=file_alpha, strict=strict)
        self.lora_variant = variant
        self._configure_adapters()

    def save_storymem_lora(self, folder: str | Path) -> list[Path]:
        """Write the loaded/trained StoryMem LoRA in the official format (one file per expert)."""
        written = []
        for expert, model in (("high", self.transformer), ("low", self.transformer_2)):
            config = getattr(model, "peft_config", {}).get(lora_io.ADAPTER_NAME)
            if config is None:
                continue
            path = Path(folder) / f"{lora_io.EXPERT_FILES[expert]}.safetensors"
            lora_io.save_lora_file(path, lora_io.expert_state_dict(model), rank=config.r, alpha=config.lora_alpha)
            written.append(path)
        if not written:
            raise LoraError("no StoryMem LoRA is loaded in either expert; nothing to save")
        return written

    def load_preview_lora(self, folder: str | Path) -> None:
        """Preview mode: stack a step-distilled Wan2.2 LoRA (Lightning / LightX2V, one file per
        expert) on the StoryMem LoRA and sample with its recipe (4 steps, Euler, no CFG). A T2V
        pair in the same folder serves a first shot without memory."""
        self._check_preview(self.preset)
        files = find_preview_files(folder)
        for expert, which in ((self.transformer, "high"), (self.transformer_2, "low")):
            load_preview_lora(expert, files.i2v[which])
        if files.t2v:
            for expert, which in ((self.t2v_transformer, "high"), (self.t2v_transformer_2, "low")):
                if expert is not None:  # real T2V experts get theirs when they are loaded
                    load_preview_lora(expert, files.t2v[which])
        self.preview = files
        self._configure_adapters()

    @staticmethod
    def _check_preview(preset: Preset) -> None:
        if preset.preview_m2v is None:
            raise InputError(f"the {preset.name} preset has no preview mode (it is for wan2.2-a14b)")

    def _configure_adapters(self) -> None:
        """The active adapters of every expert: StoryMem (I2V experts, unless switched off for a
        baseline) and preview (if loaded); merged into the weights when the placement says so."""
        fuse = self.placement is not None and self.placement.fuses_lora
        storymem = [lora_io.ADAPTER_NAME] if self._storymem_lora_on else []
        for expert in (self.transformer, self.transformer_2):
            acceleration.activate_adapters(expert, [*storymem, PREVIEW_ADAPTER], fuse)
        for expert in (self.t2v_transformer, self.t2v_transformer_2):
            if expert is not None:
                acceleration.activate_adapters(expert, [PREVIEW_ADAPTER], fuse)

    @contextlib.contextmanager
    def lora_disabled(self):
        """Run the I2V experts without the StoryMem LoRA inside this block (the `chain` baseline);
        a preview LoRA stays. A merged LoRA is unmerged for the block and merged again after.
        Nested blocks change nothing (a bench wraps all of a baseline's stories in one)."""
        if not self._storymem_lora_on:
            yield
            return
        self._switch_storymem_lora(False)
        try:
            yield
        finally:
            self._switch_storymem_lora(True)

    @in_lockstep
    def _switch_storymem_lora(self, on: bool) -> None:
        self._storymem_lora_on = on
        self._configure_adapters()
