"""Detectors: any ultralytics checkpoint, or the whole image as one region."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError, first_line
from .base import Detection, Detector
from .device import CPU, Device

if TYPE_CHECKING:
    from PIL import Image

WHOLE_IMAGE_CLASS = "whole_image"
# ultralytics tasks whose results carry boxes (segment/pose models detect too).
BOX_TASKS = ("detect", "segment", "pose")


def whole_image(image: Image.Image) -> Detection:
    width, height = image.size
    return Detection((0.0, 0.0, float(width), float(height)), WHOLE_IMAGE_CLASS, "", 1.0,
                     WHOLE_IMAGE_CLASS)


class WholeImageDetector(Detector):
    """Used when no detector resolves: every pin is one region, recorded as such."""

    model_id = "whole-image"
    is_fallback = True

    def __init__(self, note: str = "") -> None:
        self.note = note

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        return [[whole_image(image)] for image in images]


class UltralyticsDetector(Detector):
    """Any ultralytics checkpoint with boxes (.pt): YOLO, the open-vocabulary YOLOE and
    YOLO-World, or a custom-trained product detector. Boxes carry the model's class names;
    detection/vocabulary.py maps them to the catalog's categories."""

    def __init__(self, weights: Path, model_id: str | None = None, conf: float = 0.25,
                 imgsz: int = 640, min_box_px: int = 16, device: Device = CPU) -> None:
        self.weights = Path(weights)
        self.device = device
        self.model_id = model_id or self.weights.name
        self.conf = conf
        self.imgsz = imgsz
        self.min_box_px = min_box_px
        self._model: Any = None
        self.prompts: list[str] = []  # text prompts for a prompted open-vocabulary model

    def _load(self) -> Any:
        if self._model is None:
            # Predictions run with verbose=False; the CLI entry point also turns off
            # ultralytics' run-time pip installs and banners (YOLO_AUTOINSTALL/VERBOSE).
            import numpy as np
            from ultralytics import YOLO

            if not self.weights.is_file():
                raise PinshopError(f"detector file not found: {self.weights}")
            try:
                model = YOLO(str(self.weights))
                if self.weights.suffix != ".pt":  # an export loads its backend on first use
                    model.predict(np.zeros((64, 64, 3), np.uint8), verbose=False,
                                  device=str(self.device))
            except Exception as exc:  # torch/pickle/ultralytics each raise their own types
                from .registry import list_models

                fix = (f"rm '{self.weights}' && pinshop models pull {self.model_id}"
                       if self.model_id in {m.name for m in list_models()}
                       else f"replace {self.weights}")
                raise PinshopError(f"cannot load detector {self.weights}: not an ultralytics "
                                   f"checkpoint ({_reason(exc)}); {fix}, or pass --detector "
                                   "regions, which needs no weights") from None
            # A classification checkpoint loads fine but has no boxes to give.
            if getattr(model, "task", "detect") not in BOX_TASKS:
                raise PinshopError(f"cannot use {self.weights} as a detector: it is an "
                                   f"ultralytics {model.task!r} model, not a detection model")
            if self.prompts:
                self._set_prompts(model)
            self._model = model
        return self._model

    def prompt(self, classes: Sequence[str]) -> None:
        """Detect these classes (the catalog's categories) with a prompted YOLOE or
        YOLO-World model; other models keep their own classes."""
        self.prompts = sorted(set(classes))

    def _set_prompts(self, model: Any) -> None:
        if not hasattr(model, "set_classes") or "-pf" in self.weights.stem:  # prompt-free
            return
        try:  # both encode the prompts with a text model they download on first use
            model.set_classes(self.prompts)
        except Exception as exc:
            self.note = (f"{self.model_id}: the catalog's categories could not be set as "
                         f"prompts ({_reason(exc)}); it detects its own classes")

    def detect_batch(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        if not images:  # a batch whose pins all failed to decode; ultralytics refuses []
            return []
        model = self._load()
        results = model.predict(list(images), conf=self.conf, imgsz=self.imgsz,
                                verbose=False, device=str(self.device))
        batch: list[list[Detection]] = []
        for result in results:
            found: list[Detection] = []
            names = result.names
            boxes = result.boxes
            for xyxy, cls, score in zip(boxes.xyxy.tolist(), boxes.cls.tolist(),
                                        boxes.conf.tolist(), strict=True):
                class_name = str(names[int(cls)])
                x1, y1, x2, y2 = (float(v) for v in xyxy)
                if min(x2 - x1, y2 - y1) < self.min_box_px:
                    continue
                found.append(Detection((x1, y1, x2, y2), class_name, class_name.lower(),
                                       float(score)))
            batch.append(found)
        return batch


def _reason(exc: BaseException) -> str:
    """The first line of a loader's error, without ultralytics' "ERROR ❌" decoration."""
    line = first_line(exc)
    return line.removeprefix("ERROR").lstrip(" ❌\ufe0f") or type(exc).__name__
