"""Chat models: quantized GGUF files run by llama.cpp (llama-cpp-python), in a worker process.

The model lives in a child process (`llama_worker`): native code that crashes there becomes
a one-line error naming the library, its version and the fix, and the next question starts
a fresh worker. Tokens stream back over a pipe (microseconds each, against ~40 ms to
generate one), and the worker loads the model while pinshop prepares the catalog.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from ..errors import PinshopError
from .base import ChatModel
from .device import CPU, Device
from .llama_worker import read_frame, write_frame

# Every core by default: on the 2-core test machine 2 threads generate 25.7 tok/s against
# 16.4 for 1, with no stall in about 50 generations (an earlier build did stall; the CLI's
# --threads / PINSHOP_THREADS override).
DEFAULT_THREADS = os.cpu_count() or 1

#: The llama-cpp-python release CI runs (constraints.txt pins it); 0.3.36 segfaults on the
#: second generation in a process.
TESTED_LLAMA_CPP = "0.3.16"

GGUF_MAGIC = b"GGUF"


class ChatLibraryCrashed(PinshopError):
    """llama-cpp-python's native code died (a signal) while loading or generating."""


def llama_cpp_version() -> str:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        raise PinshopError("llama-cpp-python is not installed: pip install "
                           f"'llama-cpp-python=={TESTED_LLAMA_CPP}'") from None


def check_gguf(path: Path) -> None:
    """Refuse, with a one-line reason, a file that cannot be a GGUF model: missing, empty,
    or not starting with the GGUF magic bytes (an HTML error page saved as .gguf, a
    safetensors file, a text file)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise PinshopError(f"cannot read chat model {path}: {exc.strerror or exc}") from None
    if not head:
        raise PinshopError(f"cannot load chat model {path}: the file is empty")
    if head != GGUF_MAGIC:
        raise PinshopError(f"cannot load chat model {path}: not a GGUF file "
                           f"(it starts with {head!r}, a GGUF file with {GGUF_MAGIC!r})")


class _Worker:
    """One running `llama_worker` process and its pipes."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pinshop_cli.models.llama_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests: IO[bytes] = self.process.stdin
        self.replies: IO[bytes] = self.process.stdout
        self.ready: dict[str, Any] | None = None
        self.send(config)

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the worker is gone: the next receive says why
            write_frame(self.requests, message)  # type: ignore[arg-type]

    def receive(self) -> dict[str, Any] | None:
        """The next reply, or None when the worker died."""
        return read_frame(self.replies)  # type: ignore[arg-type]

    def exit_description(self) -> str:
        code = self.process.wait()
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"

    def close(self) -> None:
        for pipe in (self.requests, self.replies):
            pipe.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class LlamaCppChatModel(ChatModel):
    """A GGUF model run by llama.cpp in a worker process. On a GPU every layer is offloaded
    when the installed llama-cpp-python was built with GPU support; `note` says when not."""

    def __init__(self, path: Path, model_id: str, n_ctx: int = 4096,
                 n_threads: int | None = None, seed: int = 0, device: Device = CPU) -> None:
        self.path, self.model_id, self.n_ctx = path, model_id, n_ctx
        self.n_threads = n_threads or DEFAULT_THREADS
        self.seed, self.device, self.note = seed, device, ""
        self._worker: _Worker | None = None
        self._lock = threading.RLock()

    def start(self) -> None:
        """Start loading the model in its worker and return at once (call it early: the
        load then overlaps whatever the caller prepares next)."""
        with self._lock:
            if self._worker is None:
                check_gguf(self.path)
                self._worker = _Worker({"path": str(self.path), "n_ctx": self.n_ctx,
                                        "n_threads": self.n_threads, "seed": self.seed,
                                        "n_gpu_layers": -1 if self.device.is_gpu else 0})

    def _ready_worker(self) -> _Worker:
        """The worker, once its model has loaded."""
        self.start()
        worker = self._worker
        assert worker is not None
        if worker.ready is None:
            reply = self._receive(worker, "loading")
            if "error" in reply:
                self.close()
                # llama.cpp says only "Failed to load model from file": a truncated
                # download or a model architecture this llama.cpp build does not know.
                raise PinshopError(
                    f"cannot load chat model {self.path}: {reply['error']} (a truncated or "
                    "corrupt GGUF file, or an architecture this llama-cpp-python does not "
                    "support; `pinshop models verify` checks the registered files)")
            worker.ready = reply
            if self.device.is_gpu and not reply.get("gpu_offload"):
                self.note = (f"llama-cpp-python {reply.get('version')} was built without GPU "
                             f"support: chat runs on the CPU, not {self.device}")
        return worker

    def _receive(self, worker: _Worker, doing: str) -> dict[str, Any]:
        reply = worker.receive()
        if reply is None:
            died = worker.exit_description()
            self._worker = None
            worker.close()
            version = llama_cpp_version()
            raise ChatLibraryCrashed(
                f"the chat library crashed: llama-cpp-python {version} {died} while {doing} "
                f"{self.path.name}; pinshop is tested with {TESTED_LLAMA_CPP}: "
                f"pip install 'llama-cpp-python=={TESTED_LLAMA_CPP}' "
                "(then `pinshop doctor` checks it)")
        return reply

    @property
    def library_version(self) -> str:
        """The llama-cpp-python version the worker runs (loads the model)."""
        with self._lock:
            return str(self._ready_worker().ready["version"])  # type: ignore[index]

    def stream(self, messages: list[dict[str, str]], max_tokens: int = 256,
               temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
               repeat_penalty: float = 1.0) -> Iterator[str]:
        with self._lock:
            worker = self._ready_worker()
            request = {"op": "stream", "messages": messages, "max_tokens": max_tokens,
                       "temperature": temperature, "json_schema": json_schema,
                       "repeat_penalty": repeat_penalty, "seed": self.seed}
            worker.send(request)
            try:
                while "piece" in (reply := self._receive(worker, "generating with")):
                    yield reply["piece"]
                if "error" in reply:
                    # The prompt plus max_tokens overflowed the context: answer shorter
                    # (nothing was generated yet), never crash.
                    request["max_tokens"] = _shorter(reply["error"], max_tokens, self.n_ctx)
                    worker.send(request)
                    while "piece" in (reply := self._receive(worker, "generating with")):
                        yield reply["piece"]
                    if "error" in reply:
                        raise PinshopError(f"cannot generate: {reply['error']}")
            except GeneratorExit:
                # The caller stopped reading (the guard cut the answer): end it there.
                worker.send({"op": "stop"})
                while (left := worker.receive()) is not None and "piece" in left:
                    pass
                raise
            except KeyboardInterrupt:
                # Ctrl-C may land inside a frame: a fresh worker is the only clean state.
                self.close()
                raise

    def count_tokens(self, text: str) -> int:
        with self._lock:
            worker = self._ready_worker()
            worker.send({"op": "tokenize", "text": text})
            return int(self._receive(worker, "tokenizing with")["count"])

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.close()
                self._worker = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _shorter(message: str, max_tokens: int, n_ctx: int) -> int:
    """The max_tokens that fits when `message` is llama-cpp-python's context overflow and
    16+ tokens of answer still fit; otherwise a one-line error."""
    found = re.search(r"Requested tokens \((\d+)\) exceed context window of (\d+)", message)
    if not found or max_tokens - 16 < int(found[1]) - int(found[2]):
        raise PinshopError(f"prompt too long for the {n_ctx}-token context (use a larger --ctx)")
    return max_tokens - (int(found[1]) - int(found[2])) - 1
