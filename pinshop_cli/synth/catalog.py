"""Synthetic catalogs for scale benchmarks: realistic titles, categories, prices, brands and
colours, generated column-wise with numpy (a million rows in about a second)."""

from __future__ import annotations

from pathlib import Path

CATEGORIES = {  # category -> (nouns, median price)
    "sofa": (["Sofa", "Loveseat", "Sectional", "Daybed"], 900),
    "chair": (["Armchair", "Dining Chair", "Lounge Chair", "Accent Chair"], 250),
    "table": (["Dining Table", "Coffee Table", "Side Table", "Console"], 400),
    "bed": (["Bed Frame", "Platform Bed", "Headboard"], 700),
    "lamp": (["Floor Lamp", "Table Lamp", "Pendant", "Wall Light"], 120),
    "rug": (["Rug", "Runner", "Kilim"], 200),
    "vase": (["Vase", "Bud Vase", "Vessel"], 45),
    "shelf": (["Bookcase", "Wall Shelf", "Shelving Unit"], 300),
    "mirror": (["Round Mirror", "Floor Mirror", "Wall Mirror"], 150),
    "plant": (["Planter", "Plant Stand", "Pot"], 40),
}
MATERIALS = ["Oak", "Walnut", "Velvet", "Linen", "Boucle", "Rattan", "Marble", "Brass",
             "Leather", "Ceramic", "Cane", "Teak", "Wool", "Glass", "Steel"]
STYLES = ["Nordic", "Mid-Century", "Japandi", "Industrial", "Coastal", "Classic", "Modern",
          "Rustic", "Art Deco", "Minimal"]
COLORS = ["black", "white", "grey", "beige", "cream", "green", "blue", "terracotta",
          "natural", "brown", "pink", "yellow"]
BRANDS = [f"{a}{b}" for a in ("Nor", "Ama", "Vel", "Kin", "Sol", "Luma", "Ter", "Ode")
          for b in ("dic", "ro", "vet", "fold", "stad", "form", "haus", "line")]


def write_catalog(path: str | Path, rows: int, seed: int = 0) -> Path:
    """Write a text-only catalog of `rows` products to CSV or Parquet (by suffix)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    names = list(CATEGORIES)
    category = rng.integers(0, len(names), rows)
    noun_index = rng.integers(0, 4, rows)
    nouns = np.array([CATEGORIES[c][0][i % len(CATEGORIES[c][0])] for c in names
                      for i in range(4)], dtype=object).reshape(len(names), 4)
    median = np.array([CATEGORIES[c][1] for c in names], dtype=np.float64)
    price = np.round(median[category] * rng.lognormal(0.0, 0.45, rows), 2)
    pick = lambda values: np.asarray(values, dtype=object)[  # noqa: E731
        rng.integers(0, len(values), rows)]
    style, material, color = pick(STYLES), pick(MATERIALS), pick(COLORS)
    title = pc.binary_join_element_wise(
        pa.array(style, pa.string()), pa.array(material, pa.string()),
        pa.array(nouns[category, noun_index], pa.string()), " ")
    table = pa.table({
        "id": pc.binary_join_element_wise("P", pa.array(np.arange(rows)).cast(pa.string()), ""),
        "title": title,
        "category": pa.array(np.asarray(names, dtype=object)[category], pa.string()),
        "brand": pa.array(pick(BRANDS), pa.string()),
        "color": pa.array(color, pa.string()),
        "price": pa.array(price).cast(pa.string()),
        "currency": pa.array(np.full(rows, "EUR", dtype=object), pa.string()),
        "description": pc.binary_join_element_wise(
            "A ", pa.array(color, pa.string()), " ", pa.array(style, pa.string()).cast(
                pa.string()), " piece in ", pa.array(material, pa.string()), ".", ""),
    })
    path = Path(path)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pcsv.write_csv(table, path)
    return path
