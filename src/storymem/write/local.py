"""A story draft from a language model run here (transformers, on a GPU or the CPU), its decoding
held to the draft's JSON schema token by token with llguidance: whatever the model prefers, only
tokens that keep the text a valid draft can be drawn, so the result always parses. No retries.

llguidance was chosen over xgrammar, outlines and lm-format-enforcer because it installs as one
small wheel with no further dependencies (xgrammar brings triton and a TVM runtime), works with
any transformers tokenizer on the CPU, and is maintained (it is the engine behind guidance).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import hub
from ..errors import InputError, WeightsNotFoundError

LLM_FILES = ["*.json", "*.safetensors", "*.txt", "merges.txt", "vocab.json", "tokenizer*"]


def tiny_byte_tokenizer():
    """A byte-level tokenizer built in code (256 byte tokens and an end token): any text is
    spelled exactly, which is all a random model needs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_llm(seed: int = 0):
    """(model, tokenizer): a random-weight miniature (like `--model tiny`): its prose is noise,
    the constraint makes its structure valid. For tests; no download."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=8192,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    return model, tokenizer


def load_llm(source: str, device: str):
    """(model, tokenizer) of a local folder or hub id (the cache first; offline: one line)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if source == "tiny":
        return tiny_llm()
    folder = Path(source).expanduser()
    if not folder.is_dir():
        if not hub.is_hub_id(source):
            raise WeightsNotFoundError(f"--llm {source}: no such folder (nor a hub id or an http:// server)")
        hint = (
            f"download it with: hf download {source} --local-dir models/{source.split('/')[-1]}, then pass that folder"
        )
        folder = hub.snapshot(source, f"the language model {source}", hint, allow_patterns=LLM_FILES)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype="auto").to(device).eval()
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise WeightsNotFoundError(f"--llm {folder}: cannot load it as a causal language model ({first})") from None
    return model, tokenizer


class SchemaProcessor:
    """A transformers logits processor that allows only the tokens the JSON schema admits next."""

    def __init__(self, tokenizer, schema: dict):
        import llguidance
        import llguidance.hf
        import llguidance.torch

        self._fill = llguidance.torch.fill_next_token_bitmask
        self.tokenizer = llguidance.hf.from_tokenizer(tokenizer)
        grammar = llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), defaults={"whitespace_flexible": False}
        )
        self.matcher = llguidance.LLMatcher(self.tokenizer, grammar)
        if self.matcher.is_error():
            raise InputError(f"the story schema cannot be compiled: {self.matcher.get_error()}")
        self.mask = llguidance.torch.allocate_token_bitmask(1, self.tokenizer.vocab_size)
        self.prompt_length: int | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        elif not self.matcher.is_stopped():
            self.matcher.consume_token(int(input_ids[0, -1]))
        self._fill(self.matcher, self.mask, 0)
        allowed = allowed_tokens(self.mask[0], scores.shape[1]).to(scores.device)
        return scores.float().masked_fill(~allowed, float("-inf"))


def allowed_tokens(bitmask: torch.Tensor, width: int) -> torch.Tensor:
    """llguidance's bitmask (int32 words, token i is bit i % 32 of word i // 32) as `width`
    booleans; logits past the tokenizer's vocabulary are never allowed. Unpacked here rather than
    with llguidance.torch.apply_token_bitmask_inplace, which runs through torch.compile (slow to
    start on a CPU and broken by any change to dynamo's settings in the same process)."""
    bits = (bitmask.unsqueeze(-1) >> torch.arange(32, dtype=bitmask.dtype)) & 1
    allowed = bits.flatten().bool()[:width]
    return torch.nn.functional.pad(allowed, (0, width - allowed.numel()), value=False)


def generate_draft(model, tokenizer, messages: list[dict], schema: dict, seed: int, max_new_tokens: int = 4096) -> dict:
    """The draft the model writes for `messages`, held to `schema`; sampled with `seed`."""
    from transformers import LogitsProcessorList

    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:  # the tiny model has no chat format: the messages one after another
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
    inputs = tokenizer(text, return_tensors="pt").to(model.device)
    processor = SchemaProcessor(tokenizer, schema)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        out = model.generate(
            **inputs, do_sample=True, temperature=0.7, top_p=1.0, max_new_tokens=max_new_tokens,
            logits_processor=LogitsProcessorList([processor]), eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )  # fmt: skip
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    try:
        return json.loads(text)
    except ValueError:
        raise InputError(
            f"the language model stopped before the story was complete (after {max_new_tokens} tokens); "
            "ask for fewer shots"
        ) from None
