"""OpenAI-compatible HTTP, shared by the two services that speak it: the T-tier (`cloud/server.py`) and the device's
own API (`api/app.py`). Request schemas, OpenAI-shaped errors (`{"error": {"message", "type", "param", "code"}}`,
never a traceback), the request size limit, and answers as one JSON object or as server-sent events. Running a
server is `pllm.http_serving`.

    app = FastAPI(...)
    install_error_handlers(app)
    install_size_limit(app, limit=1 << 20)
    return respond(pieces, usage, stream, model, "chat.completion")
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Any, ClassVar, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from pllm.errors import PllmError
from pllm.lm.grammar import bounded_schema, schema_grammar
from pllm.lm.runtime import GenerationConfig, Usage
from pllm.lm.tools import ToolError, call_id, chosen, parse_tools, transcript

MAX_TOKENS_CAP = 1024  # one answer, at most


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer as JSON Schema means it: 3 and 3.0, never true, "3" or 3.5 (pydantic's lax mode takes all of those).
JsonInt = Annotated[int, Strict(), BeforeValidator(_integral)]




# -- schemas -----------------------------------------------------------------------------------------------------
class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="The arguments as JSON text.")


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """A message as clients send it: `developer` is the newer name of `system`; content may be a list of parts, of
    which only text is understood (an image or audio part is refused, never dropped); an assistant's `tool_calls` and
    the `tool` messages with their results (on a server that takes `tools`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["system", "user", "assistant", "tool"] = Field(
        json_schema_extra={"enum": ["system", "developer", "user", "assistant", "tool"]})
    content: Annotated[str, WithJsonSchema({"anyOf": [
        {"type": "string"}, {"type": "null"},
        {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"},
                                                                     "text": {"type": "string"}},
                                    "required": ["type"]}}]})] = ""
    name: str | None = Field(default=None, description="The participant's name (not used).")
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _developer_is_system(cls, role: Any) -> Any:
        return "system" if role == "developer" else role

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts(cls, content: Any) -> Any:
        if content is None:
            return ""
        if not isinstance(content, list):
            return content
        texts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise ValueError(f"content parts of type {kind!r} are not supported: send text parts")
            texts.append(part["text"])
        return "\n".join(texts)

    def as_message(self) -> dict[str, Any]:
        """The message as a dict, without the fields it leaves empty."""
        return self.model_dump(exclude_none=True)


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]

    def schema_text(self) -> str:
        return ""


class JsonObjectFormat(BaseModel):
    """Any JSON object."""

    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["json_object"]

    def schema_text(self) -> str:
        return json.dumps(bounded_schema({"type": "object"}))


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema the answer must match.")
    strict: bool | None = Field(default=None, description="Always held to: decoding follows the schema's grammar.")


class JsonSchemaFormat(BaseModel):
    """The answer matches `json_schema.schema`: decoding is constrained by its grammar, so strict or not the answer
    is valid (bounded so that it ends within its budget: lm/grammar.py)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["json_schema"]
    json_schema: JsonSchema

    def schema_text(self) -> str:
        return json.dumps(bounded_schema(self.json_schema.schema_))


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = Field(default=True, description="The last chunk carries the usage (always).")


class Sampling(BaseModel):
    """What a request may say about decoding; what it leaves out decodes as `GenerationConfig()` does. A parameter
    it does not declare (tools where the server has none, functions, audio, top_logprobs, ...) is a 400 that names it,
    never ignored, and the schema says so (no additional properties, strict types)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    takes_tools: ClassVar[bool] = False  # the device's chat route takes `tools` (lm/tools.py), the T-tier does not

    model: str | None = None
    max_tokens: JsonInt = Field(default=GenerationConfig.max_tokens, ge=1, le=MAX_TOKENS_CAP)
    max_completion_tokens: JsonInt | None = Field(default=None, ge=1, le=MAX_TOKENS_CAP)
    temperature: float = Field(default=GenerationConfig.temperature, ge=0.0, le=2.0)
    top_p: float = Field(default=GenerationConfig.top_p, gt=0.0, le=1.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    seed: JsonInt = GenerationConfig.seed
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    n: JsonInt = Field(default=1, ge=1, le=1, description="One choice per request: n > 1 is not supported.")
    logprobs: Annotated[bool, WithJsonSchema({"const": False})] | None = Field(
        default=None, description="Log probabilities are not returned.")
    user: str | None = Field(default=None, description="The app's id for its end user (not used).")

    @model_validator(mode="after")
    def _convertible(self) -> Sampling:
        if self.logprobs:
            raise ValueError("logprobs are not returned by this server")
        if self.response_format is not None and (schema := self.response_format.schema_text()):
            try:
                schema_grammar(schema)  # a schema the converter cannot take is the request's fault: say so now
            except PllmError as exc:
                raise ValueError(f"response_format: {exc}") from None
        return self

    def config(self) -> GenerationConfig:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        schema = self.response_format.schema_text() if self.response_format is not None else None
        return GenerationConfig(max_tokens=self.max_completion_tokens or self.max_tokens,
                                temperature=self.temperature, top_p=self.top_p, seed=self.seed, stop=tuple(stop),
                                frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
                                json_schema=schema or "")


class ChatCompletionCreate(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)

    @model_validator(mode="after")
    def _tool_messages(self) -> ChatCompletionCreate:
        if not self.takes_tools and any(m.role == "tool" or m.tool_calls for m in self.messages):
            raise ValueError("tool messages need `tools`, which this server does not support")
        return self


class ToolChatCompletionCreate(ChatCompletionCreate):
    """A chat request on a server that calls functions (lm/tools.py)."""

    takes_tools: ClassVar[bool] = True
    tools: list[dict[str, Any]] | None = Field(default=None, description="Functions, as OpenAI describes them.")
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = Field(default=None, description="At most one call is made per answer.")
    metadata: Annotated[dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
                        Field(max_length=16)] | None = Field(
        default=None, description="Tags for the request, as OpenAI takes them. `modality: voice` says the user spoke "
        "it (the page's microphone): the answer is short, to be read aloud, and the vault logs it as spoken.")

    @property
    def modality(self) -> str:
        return (self.metadata or {}).get("modality", "text")

    @model_validator(mode="after")
    def _usable_tools(self) -> ToolChatCompletionCreate:
        if self.modality not in ("text", "voice"):
            raise ValueError(f"metadata.modality is text or voice, not {self.modality!r}")
        try:  # a request whose tools cannot be used is the request's fault: say so now
            chosen(parse_tools(self.tools or []), self.tool_choice)
            transcript([m.as_message() for m in self.messages])
        except ToolError as exc:
            raise ValueError(str(exc)) from None
        return self


class CompletionCreate(Sampling):
    prompt: str


# -- the client ------------------------------------------------------------------------------------------------
BACKOFF_SECONDS = 0.5  # the first retry waits this long, doubling each time


class Unreachable(Exception):
    """Every attempt failed before an answer (no connection, a timeout, a 5xx): `problem` says the last one."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def sse_event(payload: dict[str, Any]) -> str:
    """One server-sent event carrying `payload`."""
    return f"data: {json.dumps(payload)}\n\n"


def sse_data(line: str) -> dict[str, Any] | None:
    """One line of a server-sent-event stream: its JSON payload, or None (a comment, a blank, `data: [DONE]`)."""
    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
        return None
    return dict(json.loads(line[5:]))


class OpenAIClient:
    """The one OpenAI-style HTTP client (httpx): a JSON request with retries and backoff where the server could not
    answer, and a server-sent-event stream. The device's T-tier client and the cloud's upstream both use it."""

    def __init__(self, base_url: str, *, key: str = "", timeout: float = 60.0, retries: int = 0) -> None:
        import httpx

        self.url = base_url.rstrip("/")
        self.retries = retries
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def request(self, method: str, path: str, body: str = "", *,
                before_attempt: Callable[[dict[str, str]], None] | None = None) -> Any:
        """The response to the first attempt the server answered below 500; `before_attempt(headers)` runs before
        each attempt (to log it, to sign it). Raises Unreachable when every attempt failed."""
        import httpx

        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
            headers = {"Content-Type": "application/json", **self.headers}
            if before_attempt is not None:
                before_attempt(headers)
            try:
                response = self.http.request(method, path, content=body.encode("utf-8") if body else None,
                                             headers=headers)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__ if not str(exc) else str(exc)
                continue
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}: {error_message(response)}"
                continue
            return response
        raise Unreachable(problem)

    def stream(self, path: str, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The JSON chunks of a streamed answer. Raises Unreachable (no connection) or ApiError (the server's
        status and message)."""
        import httpx

        try:
            with self.http.stream("POST", path, json=payload, headers=self.headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(response.status_code, error_message(response), "upstream_error")
                for line in response.iter_lines():
                    chunk = sse_data(line)
                    if chunk is not None:
                        yield chunk
        except httpx.HTTPError as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from None


def error_message(response: Any) -> str:
    """The OpenAI-shaped error's message of a response, else the start of its text."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


# -- errors ------------------------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error, as OpenAI shapes it."""

    error: ErrorDetail


ERROR_MEANINGS = {
    400: "The request is malformed, or asks for something this server does not support (the message names it).",
    401: "A bearer token is missing or wrong.",
    402: "This device has used its credits: contributions earn more.",
    403: "Not allowed: this route needs a bearer token configured, or consent for the destination.",
    404: "What the request names (a model, an adapter version, a completion, an expert) is not here.",
    409: "The server's state does not allow it now (no vault, nothing to roll back, a job already running).",
    413: "The request body, or the prompt with its answer, is too large.",
    429: "Too many requests or tokens for this key: wait and retry.",
    502: "The upstream model answered with an error.",
    503: "The model or an upstream service is not available.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route or router: each status with the error body's schema."""
    return {status: {"model": ErrorBody, "description": ERROR_MEANINGS[status]} for status in statuses}


def _schema_without_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI declares 422 for invalid bodies; these servers answer 400 (as OpenAI does), declared per route."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.headers = status, message, type_, code, headers


def error_response(status: int, message: str, type_: str, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": code}},
                        status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error as OpenAI-shaped JSON, by exception type: ours, validation (400), HTTP, and PllmError; the
    schema declares 400 where FastAPI would say 422."""
    app.openapi = _schema_without_422(app)  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.type, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "extra_forbidden":  # a parameter this server does not take: never ignored
            return error_response(400, f"{where} is not supported by this server", "invalid_request_error")
        return error_response(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}",
                              "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        if exc.status_code == 405:  # `Allow`: every method the path takes (Starlette names only its first route's)
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(app, request))}
        return error_response(exc.status_code, str(exc.detail), "invalid_request_error", headers=headers)

    @app.exception_handler(PllmError)
    async def pllm_error(_: Request, exc: PllmError) -> JSONResponse:
        return error_response(exc.http_status, str(exc), type(exc).__name__)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods the app's schema declares for the request's path (what `Allow` must say)."""
    import re

    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        if re.fullmatch(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)), request.url.path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


def install_size_limit(app: FastAPI, default_limit: int, record: list[tuple[str, bytes]] | None = None, *,
                       per_path: dict[str, int] | None = None) -> None:
    """413 for a body over the limit (`per_path`'s for its paths, else `default_limit`) in bytes, declared or
    (chunked) counted. With `record`, every POST's path and body is appended to it as received (the leak test reads
    what a server would see)."""

    @app.middleware("http")
    async def limit_size(request: Request, call_next: Any) -> Any:
        limit = (per_path or {}).get(request.url.path, default_limit)
        declared = request.headers.get("content-length")
        too_big = declared is not None and declared.isdigit() and int(declared) > limit
        if not too_big and request.method == "POST" and declared is None:
            too_big = len(await request.body()) > limit
        if record is not None and request.method == "POST":
            record.append((request.url.path, await request.body()))
        if too_big:
            return error_response(413, f"request body over {limit} bytes", "invalid_request_error",
                                  "request_too_large")
        return await call_next(request)


def bearer(request: Request) -> str:
    """The token of an `Authorization: Bearer ...` header, or ''."""
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


# -- answers -----------------------------------------------------------------------------------------------------
def completion_id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + uuid.uuid4().hex[:24]


def respond(pieces: Iterator[str], usage: Usage, stream: bool, model: str, kind: str, ident: str | None = None
            ) -> Any:
    """The whole answer as one JSON object, or server-sent event chunks ending in `data: [DONE]`.

    A stream's first piece is taken before the headers go out, so what fails before the first token (an unknown
    model, a prompt too long) is a plain HTTP error; a later error goes in the stream, as OpenAI does."""
    ident = ident or completion_id(kind)
    created = int(time.time())

    def choice(text: str, finish: str | None, final: bool) -> dict[str, Any]:
        if kind == "chat.completion":
            key = "message" if final else "delta"
            return {"index": 0, key: {"role": "assistant", "content": text}, "finish_reason": finish}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    if not stream:
        text = "".join(pieces)  # a PllmError raised here becomes its JSON error
        return {"id": ident, "object": kind, "created": created, "model": model,
                "choices": [choice(text, usage.finish_reason, True)], "usage": usage.as_dict()}

    chunk_kind = kind + ".chunk" if kind == "chat.completion" else kind
    pieces = iter(pieces)
    first = next(pieces, None)

    def chunks() -> Iterator[dict[str, Any]]:
        base = {"id": ident, "object": chunk_kind, "created": created, "model": model}
        for text in itertools.chain([] if first is None else [first], pieces):
            yield {**base, "choices": [choice(text, None, False)]}
        yield {**base, "choices": [choice("", usage.finish_reason, False)], "usage": usage.as_dict()}

    return sse_response(chunks())


def sse_response(chunks: Iterator[dict[str, Any]]) -> StreamingResponse:
    """Server-sent events, one per chunk, ending in `data: [DONE]`; a PllmError raised while the chunks are made ends
    the stream with its error event instead, as OpenAI does. The one framing every streamed answer uses."""

    def events() -> Iterator[str]:
        try:
            for chunk in chunks:
                yield sse_event(chunk)
        except PllmError as exc:
            yield sse_event({"error": {"message": str(exc), "type": type(exc).__name__, "param": None, "code": None}})
            return
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def respond_tool_call(name: str, arguments: str, usage: Usage, stream: bool, model: str, ident: str) -> Any:
    """A function call as the answer, OpenAI-shaped: one `tool_calls` entry and finish_reason `tool_calls`; streamed
    as the SDK assembles it (the call's id and name first, then its arguments)."""
    call = {"id": call_id(), "type": "function", "function": {"name": name, "arguments": arguments}}
    base = {"id": ident, "created": int(time.time()), "model": model}
    usage.finish_reason = "tool_calls"
    if not stream:
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {**base, "object": "chat.completion", "usage": usage.as_dict(),
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    opened = {"index": 0, **call, "function": {"name": name, "arguments": ""}}
    deltas = [{"role": "assistant", "content": None, "tool_calls": [opened]},
              {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}]

    chunk = {**base, "object": "chat.completion.chunk"}
    return sse_response(iter([*({**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
                                for delta in deltas),
                              {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                               "usage": usage.as_dict()}]))
