"""The Starlette app: routes, the API key, body limits, and errors as OpenAI error objects.

Every endpoint goes through `endpoint()`, which checks the key, turns an
APIError into its JSON and status, and any other exception into a 500
without a traceback (the server goes on), and counts the request.
"""

from __future__ import annotations

import json
import time
from typing import Any, Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .auth import OPEN_PATHS, check_key
from .errors import APIError
from .sse import SSE_HEADERS
from .state import ServerState

__all__ = ["build_app", "MAX_BODY_BYTES", "read_json"]

MAX_BODY_BYTES = 8 * 1024 * 1024

Handler = Callable[[Request, ServerState], Awaitable[Response]]


def _error_response(e: APIError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


async def read_json(request: Request) -> Any:
    """The request body as JSON: 413 past MAX_BODY_BYTES (read no further), 400 when it is not JSON."""
    too_big = APIError(413, f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB",
                       code="request_too_large")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_big
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        where = f" (line {e.lineno} column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise APIError(400, f"We could not parse the JSON body of your request{where}: it is not valid JSON",
                       code="invalid_json") from None


def endpoint(state: ServerState, name: str, handler: Handler, needs_model: bool = True) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            key = state.settings.api_key
            if key and request.url.path not in OPEN_PATHS:
                check_key(request.headers.get("authorization"), key)
            if needs_model:
                state.require_model()
            response = await handler(request, state)
        except APIError as e:
            response = _error_response(e)
        except Exception as e:  # a bug: one line on stderr, an error object to the client
            detail = f": {e}" if state.settings.verbose else ""  # an exception text may quote the prompt
            state.log_error(f"internal error in {request.method} {request.url.path}: {type(e).__name__}{detail}")
            response = _error_response(APIError(500, "internal server error", code="internal_error"))
        state.metrics.request(name, response.status_code)
        state.log(f"{request.method} {request.url.path} {response.status_code} {time.perf_counter() - t0:.3f}s")
        return response

    return run


# -- the endpoints ---------------------------------------------------------------------


async def health(request: Request, state: ServerState) -> Response:
    if state.load_error is not None:
        raise APIError(503, f"the model failed to load: {state.load_error}", code="model_load_failed")
    state.require_model()
    return JSONResponse({"status": "ok"})


def _model_object(state: ServerState) -> dict[str, Any]:
    return {"id": state.model_id, "object": "model", "created": state.created, "owned_by": "gptoss"}


async def models(request: Request, state: ServerState) -> Response:
    return JSONResponse({"object": "list", "data": [_model_object(state)]})


async def model(request: Request, state: ServerState) -> Response:
    name = request.path_params["name"]
    if name not in state.model_names:
        raise APIError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
    return JSONResponse(_model_object(state))


async def metrics(request: Request, state: ServerState) -> Response:
    return PlainTextResponse(state.metrics.text(), media_type="text/plain; version=0.0.4")


async def _generate(request: Request, state: ServerState, parse: Any, submit: Any, stream: Any, whole: Any,
                    streaming: Callable[[Any], bool]) -> Response:
    """The shape every generating endpoint shares: parse, then an SSE stream or one JSON object.
    A stream's job is queued before the response starts, so 429 and 503 are HTTP statuses."""
    req = parse(await read_json(request), state)
    if streaming(req):
        pipe, job = submit(req, state)
        return StreamingResponse(stream(req, state, pipe, job), media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(await whole(req, state, request.receive))


async def chat_completions(request: Request, state: ServerState) -> Response:
    from .chat import chat_chunks, chat_completion, parse_chat, submit_stream

    return await _generate(request, state, parse_chat, submit_stream, chat_chunks, chat_completion,
                           lambda req: req.stream)


async def responses(request: Request, state: ServerState) -> Response:
    from .responses import create_response, parse_response_request, response_events, submit_response

    return await _generate(request, state, parse_response_request, submit_response, response_events,
                           create_response, lambda req: req.stream)


def _completion_streams(req: dict[str, Any]) -> bool:
    if req["stream"] and req["max_tokens"] == 0:
        raise APIError(400, "a streamed completion needs max_tokens >= 1", param="max_tokens")
    return bool(req["stream"])


async def completions(request: Request, state: ServerState) -> Response:
    from .completions import completion, completion_chunks, parse_completion, submit_completion

    return await _generate(request, state, parse_completion, submit_completion, completion_chunks, completion,
                           _completion_streams)


def build_app(state: ServerState, extra: list[tuple[str, str, Handler, list[str]]] | None = None) -> Starlette:
    """The ASGI app over a ServerState (loaded or not: /health says which)."""

    def route(path: str, name: str, handler: Handler, methods: list[str], needs_model: bool = True) -> Route:
        return Route(path, endpoint(state, name, handler, needs_model), methods=methods)

    routes = [
        route("/health", "health", health, ["GET"], needs_model=False),
        route("/v1/models", "models", models, ["GET"], needs_model=False),
        route("/v1/models/{name:path}", "models", model, ["GET"], needs_model=False),
        route("/metrics", "metrics", metrics, ["GET"], needs_model=False),
        route("/v1/chat/completions", "chat.completions", chat_completions, ["POST"]),
        route("/v1/responses", "responses", responses, ["POST"]),
        route("/v1/completions", "completions", completions, ["POST"]),
    ]
    for path, name, handler, methods in extra or []:
        routes.append(route(path, name, handler, methods))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        text = {404: f"no endpoint {request.method} {request.url.path}", 405: f"{request.method} is not allowed on"
                f" {request.url.path}"}.get(status, "request refused")
        state.metrics.request("other", status)
        return _error_response(APIError(status, text, code="not_found" if status == 404 else None))

    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
