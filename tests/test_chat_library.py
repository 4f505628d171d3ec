"""The installed llama-cpp-python, and pinshop's guard around it: generation runs in a worker
process, so a crash of the native library is a one-line error, never a silent exit 139."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pinshop_cli.errors import PinshopError
from pinshop_cli.models.llm import ChatLibraryCrashed

TWO_GENERATIONS = """
import sys
from llama_cpp import Llama
llama = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=1, verbose=False)
for prompt in ("Name a sofa colour.", "Say hello to a shopper."):
    reply = llama.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=8)
    print(repr(reply["choices"][0]["message"]["content"]))
"""


def test_the_installed_library_runs_two_generations_in_one_process(smollm2) -> None:
    """llama-cpp-python 0.3.36 segfaulted on the second generation in a process: run the
    five lines that showed it, bare, in a child so a crash fails this test only."""
    done = subprocess.run([sys.executable, "-c", TWO_GENERATIONS, str(smollm2.path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-500:]}"
    assert len(done.stdout.strip().splitlines()) == 2


def test_generations_stream_through_the_worker_and_stop_early(smollm2) -> None:
    messages = [{"role": "user", "content": "List ten colours of sofas."}]
    first = smollm2.generate(messages, max_tokens=12, temperature=0.0)
    assert first and smollm2.generate(messages, max_tokens=12, temperature=0.0) == first
    pieces = smollm2.stream(messages, max_tokens=200, temperature=0.0)
    next(pieces)
    pieces.close()  # the guard stops reading mid-answer: the worker ends the answer there
    assert smollm2.generate(messages, max_tokens=12, temperature=0.0) == first
    assert smollm2.count_tokens("a green velvet sofa") > 0


def test_a_crash_in_the_native_library_is_one_line_and_the_next_answer_works(smollm2) -> None:
    from pinshop_cli.models import get_chat_model

    model = get_chat_model("smollm2", n_ctx=512, n_threads=1)
    model.count_tokens("warm up")  # the worker has loaded the model
    os.kill(model._worker.process.pid, signal.SIGSEGV)  # what 0.3.36 did on its own
    with pytest.raises(ChatLibraryCrashed) as crashed:
        model.generate([{"role": "user", "content": "hi"}], max_tokens=4)
    message = str(crashed.value)
    assert "\n" not in message
    assert "llama-cpp-python" in message and "SIGSEGV" in message
    assert "pip install 'llama-cpp-python==" in message
    assert model.generate([{"role": "user", "content": "hi"}], max_tokens=4)  # a new worker
    model.close()


def test_chat_once_reports_a_crash_on_one_line_with_exit_1(demo_workspace, tmp_path) -> None:
    """End to end: a chat model whose native load dies (a fake llama_cpp module that
    segfaults, first on the worker's path) gives `Error: ...` and exit 1, not 139. The
    child finds the demo build's ONNX exports in the run's models cache: no torch import."""
    fake = tmp_path / "fake" / "llama_cpp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import os, signal\n__version__ = 'crashing'\n"
        "class Llama:\n    def __init__(self, **kwargs):\n"
        "        os.kill(os.getpid(), signal.SIGSEGV)\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "pinshop_cli.commands.main", "chat", "--model", "smollm2",
         "--once", "a green sofa", "--json", "-w", str(demo_workspace)],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: the chat library crashed: llama-cpp-python"), done.stderr
    assert "SIGSEGV" in error and done.stdout == ""


def test_a_missing_model_file_never_starts_a_worker(tmp_path) -> None:
    from pinshop_cli.models.llm import LlamaCppChatModel

    model = LlamaCppChatModel(tmp_path / "gone.gguf", "gone")
    with pytest.raises(PinshopError, match="cannot read chat model"):
        model.count_tokens("hi")
    assert model._worker is None


def test_a_worker_whose_parent_left_while_it_loaded_exits_quietly(smollm2) -> None:
    """`pinshop chat` quit before the model loaded: the worker's "ready" met a closed pipe
    and printed a BrokenPipeError traceback into the shopper's terminal."""
    from pinshop_cli.models.llama_worker import write_frame

    worker = subprocess.Popen([sys.executable, "-m", "pinshop_cli.models.llama_worker"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert worker.stdin is not None and worker.stdout is not None
    write_frame(worker.stdin, {"path": str(smollm2.path), "n_ctx": 512, "n_threads": 1,
                               "seed": 0})
    worker.stdout.close()  # the parent is gone before the model is ready
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 0 and b"Traceback" not in stderr, stderr.decode()[-500:]
