"""``strop serve``: every method behind an OpenAI-compatible API."""

from __future__ import annotations

from typing import Annotated

import typer

from strop.cli.common import BackendOpt, BaseUrlOpt, ChatKwOpt, KvLayoutOpt, ModelOpt, NCtxOpt, RCPromptsOpt, ThinkTagsOpt, TokOpt, err, load, model_format
from strop.methods.options import parsed


def serve(
    backend: BackendOpt = "llamacpp", model: ModelOpt = None, base_url: BaseUrlOpt = None, tokenizer: TokOpt = None, n_ctx: NCtxOpt = None,
    kv_layout: KvLayoutOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    served_model_name: Annotated[str | None, typer.Option(
        help="The model id clients send (default: smollm2 for the embedded model, else the model's file or folder name).")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="STROP_API_KEY", help="Require Authorization: Bearer KEY (or set STROP_API_KEY).")] = None,
    max_tokens: Annotated[int, typer.Option(help="Most tokens one generation may ask for (max_tokens, H_R, H_S).")] = 4096,
    max_request_tokens: Annotated[int, typer.Option(help="Most tokens one request may decode in all (n x the method's budget).")] = 65536,
    max_pending: Annotated[int, typer.Option(help="Requests running or queued at once; one more gets 429.")] = 16,
    timeout: Annotated[float, typer.Option(help="Per-request time limit in seconds, queueing included (then 503).")] = 600.0,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (then 413).")] = 1 << 20,
    graceful_timeout: Annotated[float, typer.Option(help="On Ctrl-C / SIGTERM: seconds to let in-flight requests finish before they are cancelled.")] = 30.0,
    max_batch: Annotated[int | None, typer.Option(help="Most rows decoded together per round, across requests (default: the backend's;"
                                                       " 1: one row at a time).")] = None,
    rc_prompts: RCPromptsOpt = None,
    think_tags: ThinkTagsOpt = None, chat_template_kwarg: ChatKwOpt = None,
    conversation: Annotated[str, typer.Option(help="rc/self-refine/long given a chat with earlier turns: refuse (400) or context"
                                                   " (the earlier turns become part of the problem; docs/serving.md).")] = "refuse",
) -> None:
    """Serve strop's methods behind an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models, /health)."""
    from pathlib import Path

    import uvicorn

    from strop.server import ServeConfig, create_app

    name = served_model_name or ("smollm2" if model is None else Path(model.rstrip("/")).name.removesuffix(".gguf"))
    config = ServeConfig(model_name=name, max_tokens=max_tokens, max_request_tokens=max_request_tokens, max_pending=max_pending,
                         timeout_s=timeout, max_body_bytes=max_body_bytes, api_key=api_key, max_rows=max_batch,
                         conversation=conversation, **parsed({"rc_prompts": rc_prompts}) if rc_prompts else {})
    be = load(backend, model, base_url, tokenizer, n_ctx, kv_layout, **model_format(think_tags, chat_template_kwarg))
    err.print(f"serving {name} ({backend}) on http://{host}:{port}/v1  methods by model prefix, e.g. rc/{name}, or extra_body={{'strop': {{...}}}}")
    uvicorn.run(create_app(be, config), host=host, port=port, timeout_graceful_shutdown=graceful_timeout, log_level="warning")
