"""Style clusters: the product index's vectors (product photos, else product texts)
grouped by spherical k-means, so that demand can be followed per style as well as per
category ("trending: black lamp style this week"), and shoppers grouped by the style they
like most (serendipity.py).

    k            = min(STYLES, products / MIN_PER_STYLE), at least 1
    centroids    = k products chosen by k-means++ seeding (seeded: the same every fit),
                   then ITERATIONS rounds of: each product to its nearest centroid by
                   cosine; each centroid the normalized sum of its products (an empty
                   one keeps its place)
    label(style) = its products' most common colour, when at least half of them have one,
                   and most common category: "black lamp style"; a tie goes to the name
                   first in alphabetical order

Every step is a matrix product or a scatter-add in numpy; no loop over products. The fit
is cached in the workspace (STYLE_FILE) under a hash of the index's files (the manifest's
sha256 of each) and of the settings above. Only writers holding the workspace lock write
the cache (`recommend --tune`, `recommend --all`: `uncached_styles` then `save_styles`);
answering reads it, and without a current one fits in memory and writes nothing, so a
read-only workspace, or one a writer holds, still gets answers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from .config import ScoringContext

STYLES = 32
MIN_PER_STYLE = 20
ITERATIONS = 12
SEED = 0
STYLE_FILE = "recommend_styles.parquet"
CHUNK = 65_536  # products per (chunk x k) similarity block
#: Per workspace, the last fit made in memory and its index generation's key: a server
#: answering without a current cache fits once per index generation, not per request
#: (a deterministic fit, so this is a cache, never a source of different answers).
_LAST_FITS: dict[str, tuple[str, pa.Table]] = {}


def style_tables(scorer: ScoringContext) -> bool:
    """Tables item_styles(item_id, style) and style_names(style, name) for the workspace's
    product index, read from the cache or fitted in memory (never written here: see
    save_styles); empty, and False, without an index. The fit is kept as scorer.styles."""
    import pyarrow as pa

    index = scorer.product_index()
    con = scorer.con
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'item_styles'"
                   ).fetchall()[0][0]:
        return bool(con.execute("SELECT count(*) > 0 FROM item_styles").fetchall()[0][0])
    fitted = _cached_or_fitted(scorer, index) if index is not None else None
    scorer.styles = fitted
    if fitted is None:
        fitted = pa.table({"label": pa.array([], pa.int64()), "style": pa.array([], pa.int32())})
        names: list[str] = []
    else:
        names = json.loads((fitted.schema.metadata or {})[b"names"])
    con.register("fitted_styles", fitted)
    con.register("fitted_names", pa.table({
        "style": pa.array(range(len(names)), pa.int32()), "name": pa.array(names, pa.string())}))
    con.execute("CREATE OR REPLACE TEMP TABLE item_styles AS SELECT l.key AS item_id, s.style "
                "FROM fitted_styles s JOIN item_labels l USING (label)")
    con.execute("CREATE OR REPLACE TEMP TABLE style_names AS SELECT * FROM fitted_names")
    con.unregister("fitted_styles")
    con.unregister("fitted_names")
    return fitted.num_rows > 0


def uncached_styles(scorer: ScoringContext) -> pa.Table | None:
    """The fit to write with save_styles when the workspace's cache does not hold this
    index generation's (fitted in memory now unless the scorer already has it); None when
    the cache is current or there is no product index. Fits without the lock, so that the
    writer holds it only for the write."""
    index = scorer.product_index()
    if index is None or _read_cache(scorer.ws.root / STYLE_FILE, _key(index)) is not None:
        return None
    style_tables(scorer)
    return scorer.styles


def save_styles(root: Path, fitted: pa.Table) -> None:
    """Write a fit (uncached_styles) to the workspace's cache, whole by a rename or not at
    all; for a writer holding the workspace lock."""
    from ..workspace.storage import write_parquet

    write_parquet(fitted, Path(root) / STYLE_FILE)


def _key(index: Any) -> str:
    """The content hash of the index generation's files and the fit's settings."""
    manifest = index.manifest
    files = {name: entry.get("sha256") for name, entry in sorted(manifest.files.items())}
    text = json.dumps([manifest.name, manifest.generation, manifest.count, files,
                       STYLES, MIN_PER_STYLE, ITERATIONS, SEED], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_cache(path: Path, key: str) -> pa.Table | None:
    """The cached fit when it is there, readable and of this index generation (`key`)."""
    import pyarrow.parquet as pq

    try:
        cached = pq.read_table(path)
    except (OSError, ValueError):  # none yet, damaged or unreadable: fitted again
        return None
    return cached if (cached.schema.metadata or {}).get(b"hash") == key.encode() else None


def _cached_or_fitted(scorer: ScoringContext, index: Any) -> pa.Table:
    """(label, style) with the styles' names in the schema metadata: the workspace's cache
    when its hash matches the index, else this process's last fit for the workspace when
    it is of the same index generation, else a new fit, in memory only."""
    key = _key(index)
    cached = _read_cache(scorer.ws.root / STYLE_FILE, key)
    if cached is not None:
        return cached
    root = str(Path(scorer.ws.root).resolve())
    if (last := _LAST_FITS.get(root)) is not None and last[0] == key:
        return last[1]
    labels = index.label_table.column("label").to_numpy()
    styles = fit_styles(index.vectors_of(labels), STYLES, MIN_PER_STYLE)
    fitted = _named(scorer, index, labels, styles)
    _LAST_FITS[root] = (key, fitted)
    return fitted


def fit_styles(vectors: np.ndarray, most: int = STYLES, min_size: int = MIN_PER_STYLE,
               iterations: int = ITERATIONS, seed: int = SEED) -> np.ndarray:
    """Each vector's style (0 .. k-1) by spherical k-means, k = min(most, n // min_size)."""
    import numpy as np
    from scipy.sparse import csr_matrix

    n = len(vectors)
    if n == 0:
        return np.zeros(0, np.int32)
    unit = np.asarray(vectors, np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    k = max(1, min(most, n // max(1, min_size)))
    rng = np.random.default_rng(seed)
    centroids = [unit[rng.integers(n)]]
    closest = 1 - unit @ centroids[0]  # k-means++: the next seed far from those chosen
    for _ in range(1, k):
        weights = np.maximum(closest, 0) ** 2
        total = weights.sum()
        pick = rng.choice(n, p=weights / total) if total > 0 else rng.integers(n)
        centroids.append(unit[pick])
        closest = np.minimum(closest, 1 - unit @ unit[pick])
    centers = np.stack(centroids)
    assigned = np.zeros(n, np.int32)
    for _ in range(iterations):
        assigned = _nearest(unit, centers)
        members = csr_matrix((np.ones(n, np.float32), (assigned, np.arange(n))), shape=(k, n))
        sums = np.asarray(members @ unit)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centers = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centers)
    return _nearest(unit, centers)


def _nearest(unit: np.ndarray, centers: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.concatenate([np.argmax(unit[s:s + CHUNK] @ centers.T, axis=1)
                           for s in range(0, len(unit), CHUNK)]).astype(np.int32)


def _named(scorer: ScoringContext, index: Any, labels: np.ndarray, styles: np.ndarray
           ) -> pa.Table:
    """(label, style) with each style's name, its products' most common colour and
    category, in the schema metadata (and the cache hash)."""
    import pyarrow as pa

    from ..workspace.storage import sql_path

    table = pa.table({"label": pa.array(labels, pa.int64()), "style": pa.array(styles, pa.int32())})
    con = scorer.con
    con.register("fit_rows", table)
    con.register("fit_ids", index.label_table)
    columns = {r[0] for r in con.execute(
        f"DESCRIBE SELECT * FROM read_parquet({sql_path(scorer.ws.catalog)})").fetchall()}
    colour = "c.color" if "color" in columns else "NULL::VARCHAR"
    # Each style's most common colour and category; a tie goes to the first name (DuckDB's
    # mode() breaks ties by whichever row its parallel aggregation met first).
    rows = dict(con.execute(f"""
        WITH members AS (
            SELECT f.style, nullif(trim(lower({colour})), '') AS colour, c.category
            FROM fit_rows f JOIN fit_ids i USING (label)
            LEFT JOIN read_parquet({sql_path(scorer.ws.catalog)}) c ON c.id = i.id
        ), sizes AS (
            SELECT style, count(*) AS products, count(colour) AS coloured
            FROM members GROUP BY style
        ), colours AS (
            SELECT style, colour FROM members WHERE colour IS NOT NULL GROUP BY style, colour
            QUALIFY row_number() OVER (PARTITION BY style ORDER BY count(*) DESC, colour) = 1
        ), categories AS (
            SELECT style, category FROM members WHERE category IS NOT NULL
            GROUP BY style, category
            QUALIFY row_number() OVER (PARTITION BY style ORDER BY count(*) DESC,
                                       category) = 1
        )
        SELECT s.style, concat_ws(' ', CASE WHEN 2 * s.coloured >= s.products
                                            THEN o.colour END,
                                  coalesce(g.category, 'catalog')) || ' style'
        FROM sizes s LEFT JOIN colours o USING (style) LEFT JOIN categories g USING (style)
        """).fetchall())
    con.unregister("fit_rows")
    con.unregister("fit_ids")
    names = [rows.get(style, "catalog style") for style in range(int(styles.max()) + 1)]
    return table.replace_schema_metadata({"hash": _key(index), "names": json.dumps(names)})
