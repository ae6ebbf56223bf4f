"""POST /v1/audio/transcriptions: speech to text on the device (the packaged Whisper base, lm/speech.py), as
OpenAI's API answers it, so an app (or the page's microphone) can send a recording without it leaving the device.
The recording is transcribed in memory and never stored: `create_app` keeps uploads up to the route's size limit in
memory (Starlette would spool a part over 1 MB to a temporary file)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse

from pllm.api.deps import Authorised, Served
from pllm.errors import ModelNotFoundError, UsageError
from pllm.lm.models import WHISPER
from pllm.openai_http import ApiError, error_responses

TRANSCRIPTIONS = "/v1/audio/transcriptions"
MODEL_NAMES = (WHISPER.name, "whisper-1")  # what apps written for OpenAI ask for is answered by the same model
FIELDS = {"file", "model", "language", "prompt", "response_format", "temperature"}

router = APIRouter(prefix="/v1", tags=["audio"], dependencies=[Authorised],
                   responses=error_responses(400, 401, 404, 413, 503))


@router.post("/audio/transcriptions", response_model=None, responses={
    200: {"description": "json: {text}; verbose_json: with language, duration and segments; text: the text alone",
          "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def create_transcription(
    request: Request,
    served: Served,
    file: Annotated[UploadFile, File(description="The recording: wav, mp3, m4a, ogg, flac, webm, ...")],
    model: Annotated[str, Form(description="whisper-base (whisper-1 is answered by it)")] = WHISPER.name,
    language: Annotated[str | None, Form(max_length=8, description="ISO-639-1, e.g. en; empty: detected")] = None,
    prompt: Annotated[str | None, Form(max_length=1000, description="Text the speech continues (names, spellings)")
                      ] = None,
    response_format: Annotated[Literal["json", "text", "verbose_json"], Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0, description="Accepted, not used: decoding is a beam "
                                       "search of 5")] = 0.0,
) -> Any:
    unknown = sorted(set((await request.form()).keys()) - FIELDS)
    if unknown:  # a parameter this server does not take is never ignored
        raise ApiError(400, f"{unknown[0]} is not supported by this server", "invalid_request_error")
    if model not in MODEL_NAMES:
        raise ApiError(404, f"no speech model {model!r}: this device serves {WHISPER.name}", "invalid_request_error",
                       "model_not_found")
    audio = await file.read()
    from starlette.concurrency import run_in_threadpool  # the event loop keeps serving while Whisper works

    try:
        transcriber = await run_in_threadpool(served.transcriber)
    except (UsageError, ModelNotFoundError) as exc:  # no `voice` extra, or its model is missing: the server's lack
        raise ApiError(503, str(exc), "server_error", "voice_unavailable") from None
    transcript = await run_in_threadpool(
        lambda: transcriber.transcribe(audio, name=file.filename or "the upload", language=language, prompt=prompt))
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    if response_format == "verbose_json":
        return transcript.verbose()
    return {"text": transcript.text}
