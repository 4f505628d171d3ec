"""`duplicates`: clusters of near-duplicate products across ids, brands and merchants.

Candidate pairs come from the indexes' neighbour graphs (each product's nearest products by
image and by text), so the work grows with n * k, not n^2. Each pair is scored on both
image and text cosine; pairs at or above the threshold are edges, and connected components
of those edges (union-find) are the clusters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PinshopError
from ..index.hnsw import LoadedIndex
from ..retrieval.retriever import Retriever
from ..workspace.storage import write_parquet

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

NEIGHBOURS = 10  # nearest products per product that are considered as duplicates of it
#: A cluster larger than this is a chain of products that are merely alike, each near the
#: next (titles from one template, text alone at the photo-fitted threshold: 99,998 of a
#: 100k catalog in one cluster): inside it the bar is raised by BAR_STEP until none is.
MAX_CLUSTER = 100
BAR_STEP = 0.02
BATCH = 8192  # neighbour queries per hnswlib call
# The default threshold and image weight (pair score = w * image cosine + (1 - w) * text
# cosine) are the best F1 on planted duplicates of the real sample photos, measured by
# bench/eval_look.py for the default embedders and kept with their curve in this file.
# Another embedder has other cosines: pass --threshold, guided by the curve in the report.
CURVE_FILE = Path(__file__).with_name("duplicate_curve.json")


def measured_curve() -> dict[str, Any]:
    """The planted-duplicates curve: embedder, image_weight, threshold, curve points."""
    return dict(json.loads(CURVE_FILE.read_text()))


def neighbour_graph(loaded: LoadedIndex, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, neighbour, cosine) label arrays: each live label's k nearest other labels."""
    import numpy as np

    labels = loaded.label_table.column("label").to_numpy()
    k = min(k, len(labels) - 1)
    if k < 1:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    sources, neighbours, cosines = [], [], []
    for start in range(0, len(labels), BATCH):
        chunk = labels[start:start + BATCH]
        found, similarity = loaded.knn(loaded.vectors_of(chunk), k + 1)
        keep = found != chunk[:, None]  # drop the product itself
        sources.append(np.repeat(chunk, k + 1)[keep.ravel()])
        neighbours.append(found[keep])
        cosines.append(similarity[keep])
    return np.concatenate(sources), np.concatenate(neighbours), \
        np.concatenate(cosines).astype(np.float32)


def _label_maps(loaded: LoadedIndex, ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(position by label, label by position): between an index's labels and the positions
    of products in `ids` (-1 where there is none)."""
    import numpy as np
    import pyarrow.compute as pc

    labels = loaded.label_table.column("label").to_numpy()
    positions = pc.index_in(loaded.label_table.column("id"), value_set=ids)
    positions = pc.fill_null(positions, -1).to_numpy().astype(np.int64)
    position_by_label = np.full(loaded.index.get_max_elements(), -1, np.int64)
    position_by_label[labels] = positions
    label_by_position = np.full(len(ids), -1, np.int64)
    label_by_position[positions[positions >= 0]] = labels[positions >= 0]
    return position_by_label, label_by_position


def pair_cosines(loaded: LoadedIndex | None, label_by_position: np.ndarray | None,
                 left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Cosine of each (left, right) product pair in `loaded` (NaN where one is missing)."""
    import numpy as np

    result = np.full(len(left), np.nan, dtype=np.float32)
    if loaded is None or label_by_position is None or len(left) == 0:
        return result
    a, b = label_by_position[left], label_by_position[right]
    both = (a >= 0) & (b >= 0)
    for start in range(0, int(both.sum()), BATCH * 8):  # bounded memory at 10^7 pairs
        rows = np.flatnonzero(both)[start:start + BATCH * 8]
        result[rows] = np.einsum("ij,ij->i", loaded.vectors_of(a[rows]),
                                 loaded.vectors_of(b[rows]))
    return result


@dataclass
class CandidatePairs:
    """Each unordered pair of products that some neighbour graph links, with both cosines.
    Products are positions in `ids` (integers until the end: 10^7 pairs stay small)."""

    ids: pa.Array  # product ids (strings; taken by position only for the rows shown)
    left: np.ndarray  # int64 positions in ids, left < right
    right: np.ndarray
    image: np.ndarray  # float32, NaN where a product has no image vector
    text: np.ndarray
    families: np.ndarray  # each product's stated colour family (colour_families)

    def scores(self, image_weight: float) -> np.ndarray:
        """w * image + (1 - w) * text; the one that exists where the other is missing;
        -inf where both state a colour, of two families (a yellow bed, a grey bed): two
        products, however alike their texts or photos (colour variants look alike)."""
        import numpy as np

        mixed = image_weight * self.image + (1 - image_weight) * self.text
        scores = np.where(np.isnan(self.image), self.text,
                          np.where(np.isnan(self.text), self.image, mixed))
        two_colours = colours_differ(self.families[self.left], self.families[self.right])
        return np.where(two_colours, -np.inf, scores)


def candidate_pairs(retriever: Retriever, k: int = NEIGHBOURS) -> CandidatePairs:
    import numpy as np

    indexes = {kind: retriever.index(kind) for kind in ("product_image", "product_text")}
    if not any(indexes.values()):
        raise PinshopError(f"no product index in {retriever.ws.root}: run `pinshop index`")
    con = retriever.store.con
    colour = "color" if "color" in con.sql("SELECT * FROM catalog LIMIT 0").columns else "NULL"
    catalog = con.sql(f"SELECT id, {colour} AS color FROM catalog").to_arrow_table()
    ids, families = catalog.column("id").combine_chunks(), colour_families(catalog)
    n = len(ids)
    keys, maps = [], {}
    for kind, loaded in indexes.items():
        if loaded is None:
            continue
        position_by_label, maps[kind] = _label_maps(loaded, ids)
        source, neighbour, _ = neighbour_graph(loaded, k)
        a, b = position_by_label[source], position_by_label[neighbour]
        known = (a >= 0) & (b >= 0)  # labels of rows no longer in the catalog drop out
        a, b = a[known], b[known]
        keys.append(np.minimum(a, b) * n + np.maximum(a, b))
    unique = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    left, right = unique // max(n, 1), unique % max(n, 1)
    return CandidatePairs(
        ids, left, right,
        pair_cosines(indexes["product_image"], maps.get("product_image"), left, right),
        pair_cosines(indexes["product_text"], maps.get("product_text"), left, right),
        families)


def colours_differ(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Per pair of colour family codes (colour_families; -1: none stated): True where both
    state a colour, of two families. Neighbours count as two as well: a catalog's white
    and grey pendants are two products far more often than one merchant's silver is
    another's grey (at 100k templated products, letting white-grey, beige-brown ... pair
    chained 2,236 clusters of mixed colours)."""
    return (left >= 0) & (right >= 0) & (left != right)


def clusters_of_two_colours(families: np.ndarray, component: np.ndarray) -> int:
    """How many clusters (`component` per member) hold two stated colour families
    (`families` per member)."""
    import numpy as np

    from ..detection.colors import FAMILIES

    stated = families >= 0
    present = np.zeros((int(component.max(initial=-1)) + 1, len(FAMILIES)), bool)
    present[component[stated], families[stated]] = True
    return int((present.sum(axis=1) > 1).sum())


def colour_families(catalog: pa.Table) -> np.ndarray:
    """Each row's stated colour as the code of its family (detection/colors.py: "navy" and
    "blue" are one), -1 where none is stated or known: one lookup per distinct colour."""
    import numpy as np
    import pyarrow.compute as pc

    from ..detection.colors import FAMILIES, word_family

    if "color" not in catalog.column_names:
        return np.full(catalog.num_rows, -1, np.int64)
    colours = pc.dictionary_encode(catalog.column("color")).combine_chunks()
    codes = np.asarray([FAMILIES.index(f) if (f := word_family(c)) else -1
                        for c in colours.dictionary.to_pylist()] + [-1], np.int64)
    return codes[pc.fill_null(colours.indices, -1).to_numpy()]


def clusters_of(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, component) of the connected components of the edges left-right."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids, inverse = np.unique(np.concatenate([left, right]), return_inverse=True)
    n = len(ids)
    a, b = inverse[:len(left)], inverse[len(left):]
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return ids, component


def split_chains(left: np.ndarray, right: np.ndarray, scores: np.ndarray, threshold: float
                 ) -> tuple[np.ndarray, float]:
    """The edges (indices into the pairs) making the clusters: pairs at `threshold`, and
    inside a component of over MAX_CLUSTER products only pairs at a bar raised in BAR_STEPs
    until none is that large (or it passes 1); and the highest bar used."""
    import numpy as np

    edges, bar = np.flatnonzero(scores >= threshold), threshold
    while bar < 1:
        nodes, component = clusters_of(left[edges], right[edges])
        chained = nodes[np.bincount(component)[component] > MAX_CLUSTER]
        if len(chained) == 0:
            break
        bar = round(bar + BAR_STEP, 4)
        inside = np.isin(left[edges], chained)  # an edge's two ends share a component
        # (float32 cosines of identical vectors reach 0.99999994: they pass a bar of 1)
        edges = edges[~inside | (scores[edges] >= min(bar, 1 - 1e-6))]
    return edges, bar


@dataclass
class DuplicateClusters:
    threshold: float
    pairs_checked: int
    table: pa.Table  # one row per member: cluster, size, id, catalog columns, evidence
    notes: list[str] = field(default_factory=list)

    @property
    def clusters(self) -> int:
        import pyarrow.compute as pc

        return pc.count_distinct(self.table.column("cluster")).as_py()

    def to_dict(self, limit: int = 50, members: int = 20) -> dict[str, Any]:
        """Summary and the first `limit` clusters, largest first, with at most `members`
        members each (`size` says how many there are; duplicates.parquet has all)."""
        import pyarrow.compute as pc

        shown = self.table.filter(pc.and_(pc.less_equal(self.table.column("cluster"), limit),
                                          pc.less_equal(self.table.column("rank"), members)))
        grouped: dict[int, list[dict[str, Any]]] = {}
        for row in shown.to_pylist():  # the shown clusters only
            grouped.setdefault(row["cluster"], []).append(row)
        return {"threshold": self.threshold, "pairs_checked": self.pairs_checked,
                "clusters": self.clusters, "products": self.table.num_rows,
                "shown": [{"cluster": c, "members": m} for c, m in grouped.items()],
                "notes": self.notes}


def find_duplicates(workspace: str | Path | None = None, threshold: float | None = None,
                    image_weight: float | None = None, retriever: Retriever | None = None,
                    write: bool = True) -> DuplicateClusters:
    """Cluster near-duplicate products; writes duplicates.parquet in the workspace.
    Threshold and image weight default to the measured ones (see `measured_curve`)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    measured = measured_curve()
    threshold = measured["threshold"] if threshold is None else threshold
    if not -1 <= threshold <= 1:  # (NaN too: typer's range check called it "above 1")
        raise PinshopError(f"--threshold is a cosine, from -1 to 1, not {threshold:g}")
    image_weight = measured["image_weight"] if image_weight is None else image_weight
    retriever = retriever or Retriever(workspace, allow_stale=False)
    pairs = candidate_pairs(retriever)
    scores = pairs.scores(image_weight)
    edge, bar = split_chains(pairs.left, pairs.right, scores, threshold)
    nodes, component = clusters_of(pairs.left[edge], pairs.right[edge])
    # Evidence per member: its best edge (the pair that put it in the cluster).
    edges = pa.table({"a": pairs.ids.take(pairs.left[edge]),
                      "b": pairs.ids.take(pairs.right[edge]),
                      "score": scores[edge], "image": pairs.image[edge],
                      "text": pairs.text[edge]})
    members = pa.table({"id": pairs.ids.take(nodes),
                        "cluster": component.astype(np.int64)})
    con = retriever.store.con
    con.register("members", members)
    con.register("edges", edges)
    try:
        table = con.sql("""
            WITH both_ways AS (SELECT a AS id, b AS nearest, score, image, text FROM edges
                               UNION ALL SELECT b, a, score, image, text FROM edges),
            best AS (SELECT id, arg_max(nearest, score) AS nearest, max(score) AS score,
                            arg_max(image, score) AS image_similarity,
                            arg_max(text, score) AS text_similarity
                     FROM both_ways GROUP BY id),
            sized AS (SELECT *, count(*) OVER (PARTITION BY cluster) AS size,
                             min(id) OVER (PARTITION BY cluster) AS first_id FROM members),
            numbered AS (SELECT *, dense_rank() OVER (ORDER BY size DESC, first_id)
                                   AS number FROM sized)
            SELECT s.number AS cluster, s.size,
                   row_number() OVER (PARTITION BY s.number ORDER BY b.score DESC, s.id)
                       AS rank,
                   s.id, c.title, c.brand, c.category, c.price::DOUBLE AS price, c.image,
                   b.nearest, round(b.score::DOUBLE, 4) AS score,
                   CASE WHEN isnan(b.image_similarity) THEN 'text only'
                        WHEN isnan(b.text_similarity) THEN 'image only'
                        ELSE 'image and text' END AS evidence,
                   round(nullif(b.image_similarity, 'NaN'::FLOAT)::DOUBLE, 4)
                       AS image_similarity,
                   round(nullif(b.text_similarity, 'NaN'::FLOAT)::DOUBLE, 4)
                       AS text_similarity
            FROM numbered s JOIN best b USING (id) JOIN catalog c USING (id)
            ORDER BY cluster, rank""").to_arrow_table()
    finally:
        con.unregister("members")
        con.unregister("edges")
    result = DuplicateClusters(threshold, len(scores), table)
    text_only = pc.sum(pc.equal(table.column("evidence"), "text only")).as_py() or 0
    if text_only:
        result.notes.append(
            f"{text_only} product{'s are' if text_only > 1 else ' is'} clustered on text "
            "alone (no photo on one side): texts that differ in one word (a material, a "
            "model) score near 1, so check those; photos tell products apart better")
    mixed = clusters_of_two_colours(pairs.families[nodes], component)
    if mixed:
        result.notes.append(
            f"{mixed} cluster{'s hold' if mixed > 1 else ' holds'} two stated colours, "
            "linked through a product that states none (a pair of two colours is never "
            "linked itself): check them; `similar --offers` leaves the other colour out")
    if bar > threshold:
        largest = int(np.bincount(component).max()) if len(component) else 0
        result.notes.append(
            f"at {threshold:g} products chained into clusters of more than {MAX_CLUSTER} "
            f"(alike, each near the next, not the same product): inside those only pairs "
            f"at {bar:g} or more count" + (f"; the largest still holds {largest} products"
                                           if largest > MAX_CLUSTER else ""))
    if write:
        with retriever.ws.lock():
            write_parquet(table, retriever.ws.root / "duplicates.parquet")
    return result
