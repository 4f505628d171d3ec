"""Chat models: quantized GGUF files run by llama.cpp (llama-cpp-python)."""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import PinshopError
from .base import ChatModel

# Every core: on the 2-core test machine 2 threads generate 25.7 tok/s against 16.4 for 1,
# with no stall in about 50 generations (an earlier build did stall; --threads /
# PINSHOP_THREADS override).
DEFAULT_THREADS = int(os.environ.get("PINSHOP_THREADS", "0")) or (os.cpu_count() or 1)


GGUF_MAGIC = b"GGUF"


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


class LlamaCppChatModel(ChatModel):
    def __init__(self, path: Path, model_id: str, n_ctx: int = 4096,
                 n_threads: int | None = None, seed: int = 0) -> None:
        self.path, self.model_id, self.n_ctx = path, model_id, n_ctx
        self.n_threads = n_threads or DEFAULT_THREADS
        self.seed = seed
        self._llama: Any = None
        self._lock = threading.Lock()

    def llama(self) -> Any:
        with self._lock:
            if self._llama is None:
                from llama_cpp import Llama

                check_gguf(self.path)
                try:
                    self._llama = Llama(model_path=str(self.path), n_ctx=self.n_ctx,
                                        n_threads=self.n_threads, n_batch=512, seed=self.seed,
                                        verbose=False)
                except (ValueError, RuntimeError, OSError) as exc:
                    # llama.cpp says only "Failed to load model from file": a truncated
                    # download or a model architecture this llama.cpp build does not know.
                    raise PinshopError(
                        f"cannot load chat model {self.path}: {exc} (a truncated or corrupt "
                        "GGUF file, or an architecture this llama-cpp-python does not "
                        "support; `pinshop models verify` checks the registered files)"
                    ) from None
            return self._llama

    def stream(self, messages: list[dict[str, str]], max_tokens: int = 256,
               temperature: float = 0.2, json_schema: dict[str, Any] | None = None,
               repeat_penalty: float = 1.0) -> Iterator[str]:
        options: dict[str, Any] = {}
        if json_schema is not None:
            options["response_format"] = {"type": "json_object", "schema": json_schema}
        try:
            chunks = self.llama().create_chat_completion(
                messages=messages, max_tokens=max_tokens, temperature=temperature,
                repeat_penalty=repeat_penalty, stream=True, seed=self.seed, **options)
            first = next(chunks, None)
        except ValueError as exc:
            # The prompt plus max_tokens overflowed the context: answer shorter, never crash.
            overflow = re.search(r"Requested tokens \((\d+)\) exceed context window of (\d+)",
                                 str(exc))
            if not overflow or max_tokens - 16 < int(overflow[1]) - int(overflow[2]):
                raise PinshopError(f"prompt too long for the {self.n_ctx}-token context "
                                   "(use a larger --ctx)") from None
            shorter = max_tokens - (int(overflow[1]) - int(overflow[2])) - 1
            yield from self.stream(messages, shorter, temperature, json_schema, repeat_penalty)
            return
        if first is None:
            return
        for chunk in itertools.chain([first], chunks):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                yield piece

    def count_tokens(self, text: str) -> int:
        return len(self.llama().tokenize(text.encode(), add_bos=False, special=True))
