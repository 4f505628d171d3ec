"""`pinshop doctor`: is this installation usable, and if not, what fixes it.

Each check is a `Check` with a status (ok, warn, fail), what was found, and for anything
not ok the fix on one line. Checks that load native code (torch with torchvision, a llama.cpp
generation) run in child processes, so a crash there is a finding, not the end of doctor.
Doctor never writes to the workspace or the models directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import PinshopError

#: The native (compiled) libraries pinshop depends on, by distribution name.
NATIVE = ("llama-cpp-python", "torch", "torchvision", "onnxruntime", "onnx", "duckdb",
          "hnswlib", "pyarrow", "numpy", "ultralytics", "open_clip_torch", "ray")
#: Free space below which a directory is a warning: the default chat model is 1.1 GB.
LOW_DISK_BYTES = 2 * 1024**3
CHILD_TIMEOUT_S = 300


@dataclass
class Check:
    name: str
    status: str  # ok | absent (an optional model) | warn | fail
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """pinshop is usable: no check failed (warnings are fine)."""
        return all(check.status != "fail" for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(check) for check in self.checks]}


def doctor(workspace: str | Path | None = None, models_dir: str | Path | None = None,
           chat_model: str | None = None, generate: bool = True) -> DoctorReport:
    """Run every check. `chat_model` picks the model for the one-token generation (default:
    the default chat model when present, else the smallest present one)."""
    from .models.resolve import models_dir as resolve_models_dir
    from .workspace.layout import DEFAULT_WORKSPACE

    directory = resolve_models_dir(models_dir)
    report = DoctorReport()
    report.checks += version_checks()
    report.checks += model_checks(directory)
    report.checks += export_checks(directory)
    report.checks += device_checks()
    if generate:
        report.checks.append(generation_check(directory, chat_model))
    root = Path(workspace or os.environ.get("PINSHOP_HOME") or DEFAULT_WORKSPACE).expanduser()
    report.checks.append(directory_check("workspace", root))
    if root.is_dir() and ((root / "workspace.json").exists() or (root / "catalog.parquet")
                          .exists()):
        report.checks.append(workspace_data_check(root))
    report.checks.append(directory_check("models directory", directory))
    return report


def workspace_data_check(root: Path) -> Check:
    """The workspace's own files: its settings and tables readable, its indexes whole and
    current (a quick check: sizes, not every byte). Reads only."""
    from .errors import DamagedFileError
    from .index.status import index_status
    from .workspace.integrity import (
        CATALOG_COLUMNS,
        CATALOG_FIX,
        DETECTIONS_FIX,
        require_parquet,
    )
    from .workspace.layout import EVENTS_AGAIN, Workspace

    ws = Workspace.open(root)
    problems: list[tuple[str, str]] = []  # (what, its fix)
    tables = [(ws.catalog, CATALOG_FIX, CATALOG_COLUMNS), (ws.events, EVENTS_AGAIN, ()),
              (ws.detections, DETECTIONS_FIX, ()), (ws.pins, DETECTIONS_FIX, ())]
    for path, fix, columns in tables:
        try:
            if path.exists():
                require_parquet(path, fix, columns, full=True)  # every byte, not a sample
        except DamagedFileError as exc:
            problems.append((f"{Path(exc.path).name}: {exc.reason}", exc.fix))
    try:
        ws.settings()
        # The indexes are judged against the tables: not while one of those is damaged.
        for index in [] if problems else index_status(ws.root, full=False):
            if index.damage or index.stale:
                problems.append((f"index {index.name}: {index.damage or 'stale'}",
                                 "`pinshop index`"))
    except DamagedFileError as exc:
        problems.append((f"{Path(exc.path).name}: {exc.reason}", exc.fix))
    if not problems:
        return Check("workspace data", "ok", f"{root}: tables readable, indexes current")
    fixes = list(dict.fromkeys(fix for _, fix in problems))
    shown = "; ".join(what for what, _ in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    # A stale index still answers (with a note): a warning; anything damaged fails.
    status = "warn" if all(what.endswith(": stale") for what, _ in problems) else "fail"
    return Check("workspace data", status, f"{shown}{more}", "run " + ", then ".join(fixes))


# -- versions -----------------------------------------------------------------------------

def _tested_ranges() -> dict[str, str]:
    """Distribution name -> the version range pinshop's own metadata asks for."""
    from packaging.requirements import Requirement

    try:
        required = metadata.requires("pinshop") or []
    except metadata.PackageNotFoundError:
        return {}
    ranges: dict[str, str] = {}
    for line in required:
        requirement = Requirement(line)
        if str(requirement.specifier):
            ranges.setdefault(_canonical(requirement.name), str(requirement.specifier))
    return ranges


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-")


def version_checks() -> list[Check]:
    from packaging.specifiers import SpecifierSet

    ranges = _tested_ranges()
    checks = [Check("python", "ok", sys.version.split()[0])]
    for name in NATIVE:
        wanted = ranges.get(_canonical(name))
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            optional = name == "ray"
            package = "ray[data]" if optional else name
            checks.append(Check(name, "warn" if optional else "fail", "not installed",
                                f"pip install '{package}{wanted or ''}'"
                                + (" (only for --engine ray)" if optional else "")))
            continue
        if wanted and not SpecifierSet(wanted).contains(version, prereleases=True):
            checks.append(Check(name, "fail", f"{version}, outside the tested range {wanted}",
                                f"pip install '{name}{wanted}' (or install with the repository's "
                                "constraints.txt)"))
        else:
            checks.append(Check(name, "ok", version + (f" (tested: {wanted})" if wanted else "")))
    return checks


# -- models -------------------------------------------------------------------------------

def model_checks(directory: Path) -> list[Check]:
    """Each registered model: present where, and verified against its size and sha256."""
    from .models import list_models, model_status
    from .models.llm import check_gguf
    from .models.resolve import FILE_STARTS

    checks = []
    for spec in list_models():
        status = model_status(spec, directory)
        name = f"model {spec.name}"
        if status.path is None:  # optional: each command says what it uses instead
            checks.append(Check(name, "absent", f"not present ({spec.task})",
                                f"pinshop models pull {spec.name}"))
            continue
        file = spec.files[0]
        try:
            problem = file.verify(status.path)
            if problem is None and status.path.suffix == ".gguf":
                check_gguf(status.path)
        except (OSError, PinshopError) as exc:
            problem = str(exc)
        if problem:
            checks.append(Check(name, "fail", f"{status.path}: {problem}",
                                f"rm '{status.path}' && pinshop models pull {spec.name}"))
            continue
        how = ("verified (size, sha256)" if file.sha256 else "present (no recorded checksum"
               + ("; its format checked)" if status.path.suffix in FILE_STARTS else ")"))
        checks.append(Check(name, "ok", f"{how}, from {status.where}: {status.path}"))
    return checks


def export_checks(directory: Path) -> list[Check]:
    from .models.onnx import list_exports

    checks = []
    for export in list_exports(directory):
        manifest = export.manifest
        name = f"onnx {manifest.get('model')} ({manifest.get('precision')})"
        detail = f"{manifest.get('check')}: {export.path.name}"
        if not export.accepted and manifest.get("precision") == "int8":
            # Refused by its agreement check, as designed: the fp32 export runs instead.
            checks.append(Check(name, "ok", f"{detail}; refused by its check, fp32 runs"))
        elif not export.accepted:
            checks.append(Check(name, "warn", f"{detail}; not accepted, torch runs instead"))
        elif not export.path.exists():
            checks.append(Check(name, "warn", f"{detail}; the .onnx file is missing",
                                "pinshop models export"))
        else:
            checks.append(Check(name, "ok", detail))
    if not checks:
        checks.append(Check("onnx exports", "warn", f"none in {directory / 'onnx'} (made on "
                            "first use)", "pinshop models export offline"))
    return checks


# -- devices ------------------------------------------------------------------------------

# Runs in a child: importing torch and torchvision is where a mismatched pair fails
# ("operator torchvision::nms does not exist"), and CUDA initialisation can crash.
_DEVICE_PROBE = """
import json, torch, torchvision, onnxruntime
cuda = [{"name": torch.cuda.get_device_name(i),
         "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
        for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
print(json.dumps({"cuda": cuda, "onnxruntime": onnxruntime.get_available_providers(),
                  "torch_cuda_build": torch.version.cuda}))
"""


def cpu_features() -> list[str]:
    """SIMD features llama.cpp and ONNX Runtime use, as the kernel lists them."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith(("flags", "Features"))), [])
    except OSError:
        return []
    wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "amx_tile", "neon",
              "asimd", "sve")
    return [flag for flag in wanted if flag in flags]


def device_checks() -> list[Check]:
    features = cpu_features()
    checks = [Check("cpu", "ok", f"{os.cpu_count()} cores; "
                    + (", ".join(features) if features else "features unknown"))]
    done = _child([sys.executable, "-c", _DEVICE_PROBE])
    if isinstance(done, str):
        checks.append(Check("torch + torchvision", "fail", done,
                            "pip install 'torch==2.14.1' 'torchvision==0.29.1' (a matching pair)"))
        return checks
    found = json.loads(done.stdout.strip().splitlines()[-1])
    gpus = ", ".join(f"cuda:{n} {gpu['name']} ({gpu['memory_gib']} GiB)"
                     for n, gpu in enumerate(found["cuda"])) or "no CUDA device visible"
    checks.append(Check("torch + torchvision", "ok", "import together"))
    from .models.device import resolve_device

    checks.append(Check("gpu", "ok", f"{gpus}; onnxruntime providers: "
                        f"{', '.join(found['onnxruntime'])}; --device auto runs on "
                        f"{resolve_device('auto')}"))
    return checks


def _child(command: list[str]) -> subprocess.CompletedProcess[str] | str:
    """A child's result, or why it failed (its last line of stderr, or the signal)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"no answer within {CHILD_TIMEOUT_S} s"
    if done.returncode < 0:
        return f"crashed ({_signal_name(-done.returncode)})"
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"exit status {done.returncode}"
    return done


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# -- chat ---------------------------------------------------------------------------------

def generation_check(directory: Path, name: str | None = None) -> Check:
    """Two one-token generations in the llama.cpp worker (0.3.36 crashed on the second)."""
    from .models import get_chat_model, list_models, model_status

    if name is None:
        present = [(spec.files[0].size or 0, spec.name) for spec in list_models()
                   if spec.task == "chat" and model_status(spec, directory).present]
        default = "qwen2.5-coder-1.5b"
        name = default if any(n == default for _, n in present) else min(present)[1] \
            if present else None
    if name is None:
        return Check("chat generation", "warn", "no chat model present, nothing to run",
                     "pinshop models pull qwen2.5-coder-1.5b")
    try:
        model = get_chat_model(name, directory, n_ctx=512, n_threads=1)
        for prompt in ("Say hi.", "Name a colour."):
            model.generate([{"role": "user", "content": prompt}], max_tokens=1)
        version = model.library_version  # type: ignore[attr-defined]
        model.close()  # type: ignore[attr-defined]
    except PinshopError as exc:
        from .models.llm import TESTED_LLAMA_CPP

        return Check("chat generation", "fail", f"{name}: {exc}",
                     f"pip install 'llama-cpp-python=={TESTED_LLAMA_CPP}'")
    return Check("chat generation", "ok",
                 f"{name}: two one-token answers in a child process (llama-cpp-python "
                 f"{version})")


# -- directories --------------------------------------------------------------------------

def directory_check(label: str, path: Path) -> Check:
    """Free space and write permission where `path` is, or would be created."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return Check(label, "fail", f"{existing} is a file, not a directory",
                     f"choose another {label} path")
    free = shutil.disk_usage(existing).free
    where = str(path) if existing == path else f"{path} (not created yet; {existing} exists)"
    detail = f"{where}: {free / 2**30:.1f} GiB free"
    if not os.access(existing, os.W_OK | os.X_OK):
        return Check(label, "fail", f"{detail}, not writable",
                     f"chmod u+w '{existing}', or choose another {label}")
    if free < LOW_DISK_BYTES:
        return Check(label, "warn", f"{detail}, low", f"free space on {existing}'s disk")
    return Check(label, "ok", f"{detail}, writable")
