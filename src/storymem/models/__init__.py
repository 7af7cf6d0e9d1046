"""Model code: the memory-aware transformer, RoPE, LoRA I/O, presets."""
