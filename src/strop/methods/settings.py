"""One place that turns flat settings (command-line options, server request fields) into a method's configuration."""

from __future__ import annotations

from typing import Any


def method_settings(method: str, *, temperature: float = 1.0, top_p: float = 1.0, max_tokens: int = 256, n: int = 4,
                    top_k: int | None = None, alpha: float = 4.0, block_size: int = 192, mcmc_steps: int = 10, cut: str = "uniform",
                    beta: float = 4.0, proposal_temperature: float | None = None, turns: int = 4, reasoning_tokens: int = 256,
                    summary_tokens: int = 96, ttrl: dict[str, Any] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``run_method`` from flat settings (validated by the configs): the CLI's options and the server's request fields.

    The defaults are ``strop solve``'s; a server request overrides only what it names.
    """
    from strop.backends import SamplingParams
    from strop.methods import get_method

    get_method(method)  # fail on a bad name before loading a model
    if method == "ttrl":
        from strop.ladder.ttrl import TTRLConfig

        return {"config": TTRLConfig(temperature=temperature, max_tokens=max_tokens, num_generations=max(2, n), **(ttrl or {}))}
    if method == "power":
        from strop.methods.power import PowerConfig

        return {"config": PowerConfig(alpha=alpha, block_size=block_size, mcmc_steps=mcmc_steps, max_tokens=max_tokens, cut=cut,
                                      beta=beta, proposal_temperature=proposal_temperature, top_k=top_k)}
    if method in ("rc", "self-refine", "long"):
        from strop.methods.rc import RCConfig

        return {"config": RCConfig(turns=turns, reasoning_tokens=reasoning_tokens, summary_tokens=summary_tokens,
                                   temperature=temperature, top_p=top_p)}
    out: dict[str, Any] = {"params": SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k)}
    if method in ("best-of-n", "majority"):
        out["n"] = n
    return out
