"""COCO class -> shopping category. Classes absent from both tables (a custom-trained product
detector's own classes) are kept under their own name."""

COCO_TO_CATEGORY = {
    "couch": "sofa", "chair": "chair", "bed": "bed", "dining table": "table",
    "potted plant": "plant", "vase": "vase", "clock": "clock", "tv": "tv",
    "laptop": "laptop", "handbag": "handbag", "backpack": "backpack",
    "suitcase": "suitcase", "tie": "tie", "umbrella": "umbrella", "bottle": "bottle",
    "cup": "cup", "bowl": "bowl", "book": "book", "wine glass": "glass",
    "bench": "bench", "microwave": "appliance", "oven": "appliance", "toaster": "appliance",
    "refrigerator": "appliance", "sink": "sink", "keyboard": "electronics",
    "mouse": "electronics", "remote": "electronics", "cell phone": "electronics",
    "teddy bear": "toy", "scissors": "kitchen", "knife": "kitchen", "fork": "kitchen",
    "spoon": "kitchen", "hair drier": "appliance", "toothbrush": "bath",
    "sports ball": "sports", "skis": "sports", "snowboard": "sports",
    "skateboard": "sports", "surfboard": "sports", "tennis racket": "sports",
    "baseball bat": "sports", "baseball glove": "sports", "frisbee": "sports",
    "kite": "sports", "bicycle": "bicycle",
}  # fmt: skip

NON_PRODUCT_COCO = {
    "person", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "toilet",
}  # fmt: skip


def shopping_category(class_name: str) -> str | None:
    """None means 'not a product, drop it'."""
    name = class_name.strip().lower()
    if name in NON_PRODUCT_COCO:
        return None
    return COCO_TO_CATEGORY.get(name, name)
