"""A realistic synthetic shopper generator, for tests, evaluation and benchmarks.

The model, all vectorized with numpy:

- Users have a latent category preference (Dirichlet, concentrated: most people shop two or
  three categories), a latent style (a unit vector near the items they like), and an
  activity level (log-normal: a few heavy users, many light ones).
- Items have a style vector (real product embeddings, or synthetic) and a Zipf popularity.
- Activity comes in sessions. A session's day follows weekly and yearly seasonality; its
  category follows the user's preference; in it the user views 1 + Poisson(3) items, each
  chosen among a few random items of that category by style affinity + popularity
  (Gumbel-max sampling).
- Each view may turn into click -> save -> cart -> purchase, more likely the better the
  item fits the user's style (a funnel: roughly 25% / 30% / 35% / 50% at each step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

FUNNEL = (("click", 0.25), ("save", 0.30), ("cart", 0.35), ("purchase", 0.50))
EVENTS_PER_VIEW = 1.0 + 0.25 * (1 + 0.30 * (1 + 0.35 * (1 + 0.50)))  # expected, at affinity 0


@dataclass(frozen=True)
class SynthConfig:
    users: int = 1000
    events: int = 100_000  # at most; short of it by less than one session
    start: datetime = datetime(2025, 1, 1)
    days: int = 180
    seed: int = 0
    category_concentration: float = 0.3  # Dirichlet alpha: lower = more focused users
    style_strength: float = 6.0  # how much style, vs popularity, drives a choice
    candidates_per_view: int = 12
    chunk: int = 500_000  # views drawn at once (bounds memory; see also style_affinity)


def generate_events(item_ids: list[str], categories: Sequence[str] | np.ndarray,
                    styles: np.ndarray, config: SynthConfig | None = None) -> pa.Table:
    """Events (user_id, item_id, event, ts) for a catalog with per-item style vectors."""
    import numpy as np
    import pyarrow as pa

    c = config or SynthConfig()
    rng = np.random.default_rng(c.seed)
    styles = styles / np.maximum(np.linalg.norm(styles, axis=1, keepdims=True), 1e-12)
    names, item_category = np.unique(np.asarray(categories, dtype=object), return_inverse=True)
    n_cat, n_items = len(names), len(item_ids)
    by_category = [np.flatnonzero(item_category == k) for k in range(n_cat)]
    popularity = np.log(1.0 / (1.0 + rng.permutation(n_items)) ** 0.8)

    # Users: category preference, a style near a few items of their favourite category.
    preference = rng.dirichlet(np.full(n_cat, c.category_concentration), size=c.users)
    favourite = preference.argmax(axis=1)
    anchors = np.stack([rng.choice(by_category[f], size=3) for f in favourite])
    # The anchors' mean, without a (users, 3, dim) array.
    centre = (styles[anchors[:, 0]] + styles[anchors[:, 1]] + styles[anchors[:, 2]]) / 3
    user_style = centre + rng.normal(0, 0.3 / np.sqrt(styles.shape[1]),
                                     size=(c.users, styles.shape[1]))
    del centre
    user_style /= np.linalg.norm(user_style, axis=1, keepdims=True)
    activity = rng.lognormal(0, 1, size=c.users)

    # Sessions: who, when (weekly + yearly seasonality), which category, how many views.
    n_sessions = max(1, int(c.events / (4 * EVENTS_PER_VIEW)))
    session_user = rng.choice(c.users, size=n_sessions, p=activity / activity.sum())
    day_weight = (1 + 0.3 * np.sin(2 * np.pi * np.arange(c.days) / 7)
                  + 0.4 * np.sin(2 * np.pi * np.arange(c.days) / 365 + 1.0))
    session_day = rng.choice(c.days, size=n_sessions, p=day_weight / day_weight.sum())
    session_start = session_day * 86400 + rng.uniform(8 * 3600, 23 * 3600, size=n_sessions)
    cumulative = preference[session_user].cumsum(axis=1)
    session_category = (cumulative < rng.random((n_sessions, 1))).sum(axis=1).clip(0, n_cat - 1)
    views_per_session = 1 + rng.poisson(3, size=n_sessions)

    view_session = np.repeat(np.arange(n_sessions), views_per_session)
    view_user = session_user[view_session]
    view_category = session_category[view_session]
    view_item = np.empty(len(view_session), dtype=np.int64)
    view_affinity = np.empty(len(view_session), dtype=np.float32)
    sizes = np.array([len(items) for items in by_category])
    padded = np.zeros((n_cat, sizes.max()), dtype=np.int64)
    for k, items in enumerate(by_category):
        padded[k, :len(items)] = items
    for start in range(0, len(view_session), c.chunk):
        part = slice(start, start + c.chunk)
        cats = view_category[part]
        picks = (rng.random((len(cats), c.candidates_per_view)) * sizes[cats][:, None])
        candidates = padded[cats[:, None], picks.astype(np.int64)]
        affinity = style_affinity(user_style, styles, view_user[part], candidates)
        utility = (c.style_strength * affinity + popularity[candidates]
                   + rng.gumbel(size=affinity.shape))
        best = utility.argmax(axis=1)
        view_item[part] = candidates[np.arange(len(cats)), best]
        view_affinity[part] = affinity[np.arange(len(cats)), best]

    # The funnel: each step more likely when the item fits the user's style.
    offset = (np.arange(len(view_session)) - np.repeat(np.cumsum(views_per_session)
                                                       - views_per_session, views_per_session))
    view_time = session_start[view_session] + 45.0 * offset
    rows_user, rows_item, rows_event, rows_time = [view_user], [view_item], \
        [np.full(len(view_item), "view", dtype=object)], [view_time]
    alive, alive_steps = np.ones(len(view_item), dtype=bool), []
    boost = 1.0 + np.clip(view_affinity, 0, 1)
    for step, (event, probability) in enumerate(FUNNEL, start=1):
        alive = alive & (rng.random(len(view_item)) < np.clip(probability * boost, 0, 0.95))
        alive_steps.append(alive)
        rows_user.append(view_user[alive])
        rows_item.append(view_item[alive])
        rows_event.append(np.full(int(alive.sum()), event, dtype=object))
        rows_time.append(view_time[alive] + 20.0 * step)

    # A style match raises the funnel above EVENTS_PER_VIEW, so there are more sessions'
    # events than asked for: whole sessions, drawn at random, are kept up to the count
    # (a purchase never loses its view).
    row_session = np.concatenate([view_session] + [view_session[a] for a in alive_steps])
    per_session = np.bincount(row_session, minlength=n_sessions)
    drawn = rng.permutation(n_sessions)
    kept = np.zeros(n_sessions, dtype=bool)
    kept[drawn[np.cumsum(per_session[drawn]) <= c.events]] = True
    keep = kept[row_session]
    seconds = np.concatenate(rows_time)[keep]
    order = np.argsort(seconds, kind="stable")
    start_us = int(c.start.timestamp() * 1_000_000) if c.start.tzinfo else int(
        (c.start - datetime(1970, 1, 1)).total_seconds() * 1_000_000)
    ts = (start_us + (seconds[order] * 1_000_000).astype(np.int64))
    user_names = np.array([f"u{n:06d}" for n in range(c.users)], dtype=object)
    return pa.table({
        "user_id": pa.array(user_names[np.concatenate(rows_user)[keep][order]], pa.string()),
        "item_id": pa.array(np.asarray(item_ids, dtype=object)[
            np.concatenate(rows_item)[keep][order]], pa.string()),
        "event": pa.array(np.concatenate(rows_event)[keep][order], pa.string()),
        "ts": pa.array(ts, pa.timestamp("us")),
    })


def style_affinity(user_style: np.ndarray, styles: np.ndarray, users: np.ndarray,
                   candidates: np.ndarray, block: int = 4096) -> np.ndarray:
    """(views, k) cosines of each view's user style with its k candidate items' styles, a
    block of views at a time: all at once, 500,000 views of 12 candidates of 384-d text
    vectors held 9 GB."""
    import numpy as np

    affinity = np.empty(candidates.shape, dtype=np.result_type(user_style, styles))
    for start in range(0, len(candidates), block):
        rows = slice(start, start + block)
        affinity[rows] = np.einsum("vd,vkd->vk", user_style[users[rows]],
                                   styles[candidates[rows]])
    return affinity


def synthetic_catalog(items: int, categories: int = 12, dim: int = 32, seed: int = 0
                      ) -> tuple[pa.Table, np.ndarray]:
    """A catalog table (id, title, category, price) and style vectors that cluster by
    category, for benchmarks at sizes no real sample covers."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    category = rng.integers(0, categories, size=items)
    centres = rng.normal(size=(categories, dim))
    styles = centres[category] + rng.normal(scale=0.8, size=(items, dim))
    styles /= np.linalg.norm(styles, axis=1, keepdims=True)
    names = [f"category{k:02d}" for k in range(categories)]
    table = pa.table({
        "id": [f"i{n:07d}" for n in range(items)],
        "title": [f"Item {n} ({names[k]})" for n, k in enumerate(category)],
        "category": [names[k] for k in category],
        "price": np.round(rng.lognormal(4, 0.8, size=items), 2),
    })
    return table, styles.astype(np.float32)


def write_synthetic_workspace(root: str, items: int = 2000, users: int = 2000,
                              events: int = 100_000, seed: int = 0) -> pa.Table:
    """A workspace with a synthetic catalog whose style vectors stand in as its product
    embeddings (kind product_text, model id 'synthetic-style'), and no events yet; returns
    generated events to ingest."""
    import pyarrow.csv as pcsv

    from ..io.catalog import load_catalog
    from ..workspace.embeddings import part_key, write_part
    from ..workspace.layout import Workspace
    from ..workspace.storage import write_parquet

    ws = Workspace.open(root, create=True)
    catalog, styles = synthetic_catalog(items, seed=seed)
    source = ws.root / "synthetic-catalog.csv"
    pcsv.write_csv(catalog, source)
    normalized = load_catalog(source).table
    write_parquet(normalized, ws.catalog, checked=True)
    ids = catalog.column("id").to_pylist()
    hashes = normalized.column("product_text_hash").to_pylist()
    for start in range(0, items, 10_000):
        chunk = slice(start, start + 10_000)
        write_part(ws, "product_text", "synthetic-style", ids[chunk], hashes[chunk],
                   styles[chunk], part_key(*ids[chunk]))
    ws.update_settings(embedder="synthetic", text_model_id="synthetic-style")
    return generate_events(ids, catalog.column("category").to_pylist(), styles,
                           SynthConfig(users=users, events=events, seed=seed))


def generate_for_workspace(out: str | Path, config: SynthConfig,
                           workspace: str | Path | None = None) -> int:
    """Events for the workspace's catalog, styled by its product text embeddings (every row
    has one), written to `out` (.parquet or .csv)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    from ..errors import PinshopError
    from ..workspace.embeddings import load_embeddings
    from ..workspace.layout import Workspace
    from ..workspace.storage import read_parquet, write_parquet

    out = Path(out)
    if out.is_dir():
        raise PinshopError(f"{out} is a directory: name the events file to write")
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise PinshopError(f"{out.name}: events are written as .parquet or .csv")
    # At most one shopper per event: each shopper's style is held in memory, and shoppers
    # past the events would have none (10M of them for 100 events asked for 43 GB).
    config = replace(config, users=min(config.users, config.events))
    ws = Workspace.open(workspace)
    catalog = read_parquet(ws.catalog)
    model = ws.settings().get("text_model_id")
    vectors = load_embeddings(ws, "product_text", model) if model else None
    if catalog is None or vectors is None or not vectors.ids:
        raise PinshopError(f"no embedded catalog in {ws.root}: run `pinshop ingest` first")
    # Each embedded product's category, by an Arrow lookup (not a dict of the catalog).
    at = pc.index_in(pa.array(vectors.ids, pa.string()), catalog.column("id"))
    categories = pc.fill_null(catalog.column("category").take(at), "")
    events = generate_events(vectors.ids, categories.to_numpy(zero_copy_only=False),
                             vectors.vectors, config)
    if not events.num_rows:
        raise PinshopError(f"no whole shopping session fits in {config.events} events: ask "
                           "for more (a session holds about 5)")
    if out.suffix.lower() == ".csv":
        out.parent.mkdir(parents=True, exist_ok=True)  # as write_parquet does
        pcsv.write_csv(events, out)
    else:
        write_parquet(events, out)
    return int(events.num_rows)
