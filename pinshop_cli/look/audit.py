"""`audit`: a catalog quality report. Every check is a query in DuckDB or one matrix product
in numpy, so it runs on a million rows; findings go to audit.parquet (one row per finding),
the summary to JSON and HTML.

Checks:
- category: the product photo is closer to another category's centre (mean image vector,
  leaving the product itself out) than to its own declared category's;
- image: missing, tiny (longer side under 128 px), or the same file under several ids;
- price: outliers within a category by robust z-score (median and MAD) of the log price
  (prices are roughly log-normal, so a slipped decimal point reads the same either way),
  and prices of 0;
- title: the same title under several ids;
- rejects: what ingest refused, by kind of reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..retrieval.retriever import Retriever
from ..workspace.storage import sql_path, write_parquet

if TYPE_CHECKING:
    import duckdb
    import numpy as np
    import pyarrow as pa

TINY_SIDE = 128  # px: a photo whose longer side is shorter is too small to show or embed
ROBUST_Z = 3.5  # |0.6745 (price - median) / MAD| above this is an outlier (Iglewicz-Hoaglin)
MIN_PRICED = 5  # products with a price a category needs before outliers mean anything
# A product is flagged when another category's centre is closer than its own by this much
# (cosine): chosen on planted wrong categories in the sample (bench/eval_look.py).
CATEGORY_MARGIN = 0.1
MIN_CATEGORY = 2  # members a category needs (besides the product) to have a centre
BATCH = 16_384

CHECKS = ("category", "image", "price", "title")


class NotChecked(Exception):
    """A check that cannot run on this workspace (the reason is the message)."""


def category_mismatches(retriever: Retriever, margin: float = CATEGORY_MARGIN,
                        kind: str = "product_image") -> pa.Table:
    """(id, declared, looks_like, margin) for products whose photo sits nearer another
    category's centre than its own (leave-one-out centres, cosine). `kind` is for
    benchmarks on synthetic vectors; product texts name their category, so only photos
    make an independent witness."""
    import numpy as np
    import pyarrow as pa
    from scipy.sparse import csr_matrix

    empty = pa.table({"id": pa.array([], pa.string()), "declared": pa.array([], pa.string()),
                      "looks_like": pa.array([], pa.string()),
                      "margin": pa.array([], pa.float32())})
    loaded = retriever.index(kind)
    if loaded is None:
        raise NotChecked(f"no {kind} index: run `pinshop index` (it needs product photos)")
    columns = retriever.label_columns(loaded)
    names = np.empty(len(columns.categories), dtype=object)
    for name, code in columns.categories.items():
        names[code] = name
    has = columns.category_codes >= 0
    labels, codes = columns.labels[has], columns.category_codes[has]
    if len(labels) == 0:
        return empty
    sizes = np.bincount(codes, minlength=len(names))
    # A batch's scores are rows x categories: keep that matrix near 64 MB.
    batch = int(max(256, min(BATCH, 2 ** 24 // max(len(names), 1))))
    sums = np.zeros((len(names), loaded.manifest.dim), np.float64)
    for start in range(0, len(labels), batch):
        chunk = codes[start:start + batch]  # a category-indicator matrix sums the vectors
        indicator = csr_matrix((np.ones(len(chunk)), (chunk, np.arange(len(chunk)))),
                               shape=(len(names), len(chunk)))
        sums += indicator @ loaded.vectors_of(labels[start:start + batch])
    centres = (sums / np.maximum(np.linalg.norm(sums, axis=1), 1e-12)[:, None]).astype(
        np.float32)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(labels), batch):
        vectors = loaded.vectors_of(labels[start:start + batch])
        own = codes[start:start + batch]
        # Own centre without the product itself; other centres as they are.
        own_score = _cosine(vectors.astype(np.float64), sums[own] - vectors)
        scores = vectors @ centres.T
        scores[np.arange(len(own)), own] = -np.inf
        scores[:, sizes < MIN_CATEGORY] = -np.inf
        best = scores.argmax(axis=1)
        gap = scores[np.arange(len(own)), best] - own_score
        flagged = (gap >= margin) & (sizes[own] > MIN_CATEGORY)
        found.append((labels[start:start + batch][flagged], own[flagged], best[flagged],
                      gap[flagged]))
    flagged_labels = np.concatenate([f[0] for f in found])
    return pa.table({
        "id": pa.array(loaded.ids_by_label[flagged_labels].astype(str), pa.string()),
        "declared": pa.array(names[np.concatenate([f[1] for f in found])].astype(str)),
        "looks_like": pa.array(names[np.concatenate([f[2] for f in found])].astype(str)),
        "margin": pa.array(np.concatenate([f[3] for f in found]).astype(np.float32)),
    })


def _cosine(vectors: np.ndarray, others: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.maximum(np.linalg.norm(others, axis=1), 1e-12)
    return np.einsum("ij,ij->i", vectors, others) / norms




def _shared(key: str, check: str, what: str) -> str:
    """Rows sharing `key` ('{t}' stands for the table) with other rows: 'same title as P2,
    P7 and 41 others'. Grouped first (one pass), so 10^5 rows sharing a placeholder photo
    are not 10^10 pairs."""
    inner, outer = key.format(t="catalog"), key.format(t="c")
    return f"""
SELECT c.id, '{check}', '{what} as ' || array_to_string(
           list_filter(g.first_ids, lambda x: x <> c.id)[1:3], ', ')
       || CASE WHEN g.n = 5 THEN ' and 1 other'
               WHEN g.n > 5 THEN ' and ' || (g.n - 4) || ' others' ELSE '' END,
       g.n - 1
FROM catalog c JOIN (SELECT {inner} AS key, count(*) AS n, list(id ORDER BY id)[1:4]
                            AS first_ids
                     FROM catalog WHERE {inner} IS NOT NULL GROUP BY 1 HAVING count(*) > 1) g
     ON g.key = {outer} """


# Each check's findings as (id, check_name, detail, value) rows, over the in-memory catalog.
_TINY_SQL = f"""
SELECT id, 'image' AS check_name, 'tiny image ' || image_width || 'x' || image_height AS detail,
       greatest(image_width, image_height)::DOUBLE AS value
FROM catalog WHERE greatest(image_width, image_height) < {TINY_SIDE}
UNION ALL
"""  # catalogs ingested before image sizes were kept lack the columns
_FINDINGS_SQL = f"""
SELECT id, 'image' AS check_name, 'no image' AS detail, NULL::DOUBLE AS value
FROM catalog WHERE image IS NULL
UNION ALL
{_shared("{t}.image_sha256", "image", "same image file")}
UNION ALL
SELECT id, 'price', printf('price %.2f is %.3gx the %s median %.2f (robust z %.1f)',
       price, price / median, category, median, z), z
FROM (SELECT id, category, price, exp(median_log) AS median,
             0.6745 * (ln(price) - median_log) / mad AS z
      FROM (SELECT id, category, price, median_log,
                   count(*) OVER w AS priced,
                   median(abs(ln(price) - median_log)) OVER w AS mad
            FROM (SELECT id, category, price::DOUBLE AS price,
                         median(ln(price::DOUBLE)) OVER (PARTITION BY category) AS median_log
                  FROM catalog WHERE price > 0 AND category IS NOT NULL)
            WINDOW w AS (PARTITION BY category))
      WHERE priced >= {MIN_PRICED} AND mad > 0)
WHERE abs(z) > {ROBUST_Z}
UNION ALL
{_shared("lower(trim({t}.title))", "title", "same title")}
UNION ALL
SELECT id, 'price', 'price is 0', 0 FROM catalog WHERE price = 0
"""


def _rejects(con: duckdb.DuckDBPyConnection, rejects_dir: Path) -> pa.Table:
    """Rejected rows by source and kind of reason (values and numbers blanked out)."""
    import pyarrow as pa

    path = rejects_dir / "catalog.parquet"
    if not path.exists():
        return pa.table({"source": pa.array([], pa.string()), "reason": pa.array([], pa.string()),
                         "rows": pa.array([], pa.int64()), "example": pa.array([], pa.string())})
    return con.sql(f"""
        SELECT source, kind AS reason, count(*) AS rows, min(reason) AS example
        FROM (SELECT source, reason, regexp_replace(regexp_replace(reason,
                     '^image .*?: ', 'image: '), '''[^'']*''|"[^"]*"|[0-9]+', '…', 'g') AS kind
              FROM read_parquet({sql_path(path)}))
        GROUP BY ALL ORDER BY rows DESC, reason""").to_arrow_table()


@dataclass
class AuditReport:
    products: int
    findings: pa.Table  # id, check_name, detail, value (+ title, category, price, image)
    rejects: pa.Table  # source, reason, rows, example
    counts: dict[str, int | None] = field(default_factory=dict)  # None: not checked
    notes: list[str] = field(default_factory=list)  # checks that could not run, and why

    def to_dict(self, limit: int = 20) -> dict[str, Any]:
        """Counts, the reject summary and the first `limit` findings of each check (a note
        says which checks have more)."""
        import pyarrow.compute as pc

        shown = {check: self.findings.filter(pc.equal(self.findings.column("check_name"), check))
                 .slice(0, limit).to_pylist() for check in CHECKS}
        cut = [f"{check}: the first {limit} of {count:,} findings (audit.parquet has all)"
               for check, count in self.counts.items() if count is not None and count > limit]
        return {"products": self.products, "counts": self.counts, "notes": self.notes + cut,
                "findings": shown, "rejects": self.rejects.to_pylist()}


def audit(workspace: str | Path | None = None, retriever: Retriever | None = None,
          margin: float = CATEGORY_MARGIN, write: bool = True,
          kind: str = "product_image") -> AuditReport:
    """Run every check over the workspace's catalog; writes audit.parquet."""
    import pyarrow as pa

    from ..errors import StaleIndexError

    retriever = retriever or Retriever(workspace, allow_stale=False)
    con = retriever.store.con
    notes = []
    try:
        mismatches = category_mismatches(retriever, margin, kind)
    except (NotChecked, StaleIndexError) as exc:
        notes.append(f"category check not run: {exc}")
        mismatches = pa.table({"id": pa.array([], pa.string()),
                               "declared": pa.array([], pa.string()),
                               "looks_like": pa.array([], pa.string()),
                               "margin": pa.array([], pa.float32())})
    con.register("mismatches", mismatches)
    columns = {r[0] for r in con.execute("DESCRIBE catalog").fetchall()}
    tiny = _TINY_SQL if "image_width" in columns else ""
    try:
        findings = con.sql(f"""
            WITH f AS ({tiny}{_FINDINGS_SQL}
                UNION ALL
                SELECT id, 'category', 'photo looks like ' || looks_like || ', declared ' ||
                       declared, margin FROM mismatches)
            SELECT f.id, f.check_name, f.detail, round(f.value::DOUBLE, 4) AS value, c.title,
                   c.category, c.price::DOUBLE AS price, c.image
            FROM f JOIN catalog c USING (id)
            -- worst first: the largest margins and z-scores, the smallest photos
            ORDER BY f.check_name, CASE WHEN f.detail LIKE 'tiny%' THEN f.value
                                        ELSE -abs(f.value) END NULLS LAST, f.id
            """).to_arrow_table()
    finally:
        con.unregister("mismatches")
    counted = findings.group_by("check_name").aggregate([("id", "count")])
    counts = dict(zip(counted.column("check_name").to_pylist(),
                      counted.column("id_count").to_pylist(), strict=True))
    products = con.sql("SELECT count(*) FROM catalog").fetchall()[0][0]
    report = AuditReport(int(products), findings, _rejects(con, retriever.ws.rejects_dir),
                         {check: int(counts.get(check, 0)) for check in CHECKS}, notes)
    if notes:
        report.counts["category"] = None
    if write:
        with retriever.ws.lock():
            write_parquet(findings, retriever.ws.root / "audit.parquet")
    return report
