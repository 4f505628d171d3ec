"""The llama.cpp worker: a child process that holds one GGUF model and generates on request.

Generation runs here, not in the pinshop process, because llama-cpp-python is native code:
a crash in it (0.3.36 segfaults on the second generation in a process) kills only this
worker, and the parent turns it into a one-line error that names the library, its version
and the fix, instead of a silent exit 139.

Protocol: length-prefixed JSON frames on stdin/stdout (`write_frame` / `read_frame`).

    parent -> {"path", "n_ctx", "n_threads", "seed", "n_gpu_layers"}   once, at start
    worker -> {"ready": true, "version": "0.3.16", "gpu_offload": false}
              | {"error": "...", "type": "load"}
    parent -> {"op": "tokenize", "text": "..."}       worker -> {"count": n}
    parent -> {"op": "stream", "messages": [...], "max_tokens": n, ...}
    worker -> {"piece": "..."} ... then {"done": true} | {"error": "...", "type": "value"}
    parent -> {"op": "stop"}  (while streaming: the worker ends the answer and says done)

The worker exits when its stdin closes, so it never outlives the parent.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

HEADER = struct.Struct(">I")


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    data = json.dumps(message, ensure_ascii=False).encode()
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next message, or None when the other side is gone."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    body = _read_exactly(stream, HEADER.unpack(header)[0])
    return None if body is None else dict(json.loads(body))


def _stop_requested(requests: BinaryIO) -> bool:
    """True when the parent sent a frame (only ever "stop") while an answer streams."""
    readable, _, _ = select.select([requests], [], [], 0)
    return bool(readable) and read_frame(requests) is not None


def _stream(llama: Any, request: dict[str, Any], requests: BinaryIO, replies: BinaryIO) -> None:
    options: dict[str, Any] = {}
    if request.get("json_schema") is not None:
        options["response_format"] = {"type": "json_object", "schema": request["json_schema"]}
    try:
        chunks = llama.create_chat_completion(
            messages=request["messages"], max_tokens=request["max_tokens"],
            temperature=request["temperature"], repeat_penalty=request["repeat_penalty"],
            stream=True, seed=request["seed"], **options)
        for chunk in chunks:
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                write_frame(replies, {"piece": piece})
            if _stop_requested(requests):
                chunks.close()
                break
    except ValueError as exc:  # e.g. the prompt overflowed the context
        write_frame(replies, {"error": str(exc), "type": "value"})
        return
    write_frame(replies, {"done": True})


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    import llama_cpp

    config = read_frame(requests)
    if config is None:
        return
    try:
        with _native_stderr_silenced():  # llama.cpp logs notes even with verbose=False
            llama = llama_cpp.Llama(model_path=config["path"], n_ctx=config["n_ctx"],
                                    n_threads=config["n_threads"], n_batch=512,
                                    seed=config["seed"],
                                    n_gpu_layers=config.get("n_gpu_layers", 0), verbose=False)
    except (ValueError, RuntimeError, OSError) as exc:
        write_frame(replies, {"error": str(exc), "type": "load"})
        return
    write_frame(replies, {"ready": True, "version": llama_cpp.__version__,
                          "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())})
    while (request := read_frame(requests)) is not None:
        if request["op"] == "tokenize":
            tokens = llama.tokenize(request["text"].encode(), add_bos=False, special=True)
            write_frame(replies, {"count": len(tokens)})
        elif request["op"] == "stream":
            _stream(llama, request, requests, replies)
        # "stop" arriving after an answer already finished needs no reply.


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Native code's writes to stderr go nowhere meanwhile (a failure still reaches the
    parent: as an exception's message, or as the worker's exit)."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main() -> None:
    # Frames travel on the original stdout; anything native code prints goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    # Ctrl-C reaches the whole process group: the parent decides, and sends "stop".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        serve(os.fdopen(0, "rb", buffering=0), replies)
    except BrokenPipeError:  # the parent is gone (it quit while the model loaded): no one
        os._exit(0)          # to tell, and flushing at exit would only raise again


if __name__ == "__main__":
    main()
