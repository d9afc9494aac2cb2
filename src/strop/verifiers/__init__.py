"""Verifiers: is an answer right. Answer extraction lives here too."""

from strop.verifiers.extract import extract_answer, extract_boxed, normalize_answer

__all__ = ["extract_answer", "extract_boxed", "normalize_answer"]
