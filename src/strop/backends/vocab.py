"""Tokenizers without a model: what the openai backend needs to speak in token ids.

A remote server samples, but strop's methods work on token ids (cut points,
suffixes). These load only the vocabulary of a GGUF file (llama.cpp's
``vocab_only``) or a transformers tokenizer, locally and quickly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from strop.backends.native import quiet_stderr
from strop.backends.text import check_text, hf_control_texts, hf_tokenize, hf_tokenize_text
from strop.errors import ModelLoadError
from strop.models import check_gguf, is_gguf_spec


class Vocab(Protocol):
    n_vocab: int
    eos_token_ids: frozenset[int]
    control_ids: frozenset[int]  # ids of the tokens ``tokenize`` parses from text and ``tokenize_text`` does not
    bos_token: str
    eos_token: str
    chat_template: str | None
    context_length: int

    def tokenize(self, text: str) -> list[int]: ...
    def tokenize_text(self, text: str) -> list[int]: ...
    def control_texts(self) -> tuple[str, ...]: ...
    def detokenize(self, ids: Sequence[int]) -> str: ...


class GGUFVocab:
    """Tokenizer, special tokens and chat template of a GGUF model, read through llama.cpp."""

    def __init__(self, llm) -> None:
        import llama_cpp

        self._llm = llm
        self.n_vocab = llm.n_vocab()
        self.chat_template = llm.metadata.get("tokenizer.chat_template")
        # A vocab-only load reports 0 here; the GGUF metadata has the real value.
        meta = llm.metadata
        arch = meta.get("general.architecture", "llama")
        self.context_length = llm._model.n_ctx_train() or int(meta.get(f"{arch}.context_length", 0) or 2048)
        vocab = llm._model.vocab
        self.eos_token_ids = frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, t))
        # What llama.cpp parses only with special=True: control and unknown tokens (user-defined ones are parsed either way).
        control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
        self.control_ids = frozenset(t for t in range(self.n_vocab) if llama_cpp.llama_vocab_get_attr(vocab, t) & control)
        self._controls = tuple(sorted({p for p in map(self._piece, self.control_ids) if p}))
        self.bos_token = self._piece(llm.token_bos())
        self.eos_token = self._piece(llm.token_eos())

    @classmethod
    def load(cls, path: str) -> GGUFVocab:
        import llama_cpp

        check_gguf(Path(path))
        try:
            with quiet_stderr():
                llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        except (ValueError, RuntimeError, OSError) as e:
            raise ModelLoadError(f"llama.cpp could not read the vocabulary of {path}: {e}") from e
        return cls(llm)

    def _piece(self, token: int) -> str:
        return "" if token < 0 else self._llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str) -> list[int]:
        check_text(text, "the text")
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def tokenize_text(self, text: str) -> list[int]:
        check_text(text, "the text")
        return list(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def control_texts(self) -> tuple[str, ...]:
        return self._controls

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._llm.detokenize(list(ids), special=True).decode("utf-8", errors="replace")


class HFVocab:
    """A transformers tokenizer (local folder or hub id)."""

    def __init__(self, spec: str) -> None:
        try:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(spec)
        except ImportError as e:
            raise ModelLoadError("a Hugging Face tokenizer needs transformers: pip install 'strop[hf]'") from e
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"could not load tokenizer '{spec}': {str(e).splitlines()[0]}") from e
        t = self._tok
        self.n_vocab = len(t)
        self.chat_template = getattr(t, "chat_template", None)
        self.context_length = int(min(getattr(t, "model_max_length", 4096), 1 << 20))
        self.eos_token_ids = frozenset({t.eos_token_id} if t.eos_token_id is not None else set())
        self.bos_token = t.bos_token or ""
        self.eos_token = t.eos_token or ""
        self.control_ids = frozenset(int(i) for i in t.all_special_ids)
        self._controls = hf_control_texts(t)

    def tokenize(self, text: str) -> list[int]:
        return hf_tokenize(self._tok, text)

    def tokenize_text(self, text: str) -> list[int]:
        return hf_tokenize_text(self._tok, text)

    def control_texts(self) -> tuple[str, ...]:
        return self._controls

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)


def load_vocab(spec: str) -> Vocab:
    """A GGUF path gives a ``GGUFVocab``; anything else is a transformers tokenizer."""
    return GGUFVocab.load(spec) if is_gguf_spec(spec) else HFVocab(spec)
