"""A tiny character-level causal LM built in code, for training tests that must run in seconds on CPU.

Nothing is downloaded: the tokenizer is built with ``tokenizers`` from a
character list and the model is a 2-layer Llama from a config, saved to a
folder that any ``from_pretrained`` call (and strop's hf backend) can load.
"""

from __future__ import annotations

import string
from pathlib import Path

CHARS = string.digits + string.ascii_letters + " :?+-=\n.,"


def build_tiny_lm(folder: Path, *, seed: int = 0, hidden: int = 64, layers: int = 2, max_positions: int = 128) -> Path:
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + list(CHARS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=max_positions,
        pad_token_id=0, eos_token_id=1, bos_token_id=None, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def script_reward(trainer, score) -> None:
    """Replace the trainer's correctness reward by ``score(i, category)`` for row i of a batch (the trainer's
    per-category metrics and sources read what it returns)."""

    def correct(completions, category, **_):
        return [float(score(i, c)) for i, c in enumerate(category)]

    trainer.reward_funcs[0] = correct
