"""The same scoring as pinshop_cli.recommend, written the straightforward pandas way.

Only the benchmark uses this: it is the reference pinshop's DuckDB SQL is measured against.
Ids are made categorical first (a fair, common pandas optimization). The taste component
calls the same numpy/hnswlib function as pinshop, so both sides do identical work there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from pinshop_cli.recommendation.config import LIKED_EVENTS, RecommendConfig
from pinshop_cli.recommendation.taste import nearest_labels, taste_profiles


def nearest_to_profiles(index, likes, k):  # noqa: ANN001, ANN201
    """pinshop's taste step (the same hnswlib query both implementations run): (user per
    row, product id, cosine) of the k products nearest each user's liked-vector mean."""
    users, labels, scores = nearest_labels(index, *taste_profiles(index, likes), k)
    return users, index.ids_by_label[labels], scores


def recommend_all_pandas(events_path: str, catalog_path: str, index,  # noqa: ANN001
                         config: RecommendConfig) -> pd.DataFrame:
    """`index`: the workspace's saved product index (taste.product_index), as DuckDB's
    scorer uses it."""
    c, w = config, config.blend_weights
    ev = pd.read_parquet(events_path)
    catalog = pd.read_parquet(catalog_path, columns=["id", "category"])
    as_of = ev["ts"].max() + pd.Timedelta(seconds=1)
    age_days = (as_of - ev["ts"]).dt.total_seconds() / 86400.0
    ev["strength"] = ev["weight"] * 0.5 ** (age_days / c.half_life_days)
    ev["pop"] = ev["weight"] * 0.5 ** (age_days / c.popularity_half_life_days)
    ev["purchased"] = ev["event"].eq("purchase")
    ev["liked"] = ev["event"].isin(LIKED_EVENTS)

    # interactions r(u, i)
    inter = ev.groupby(["user_id", "item_id"], observed=True).agg(
        strength=("strength", "sum"), last_ts=("ts", "max"), purchased=("purchased", "any"),
        liked=("liked", "any")).reset_index()
    recent = (inter.sort_values(["user_id", "last_ts", "item_id"], ascending=[True, False, True])
              .groupby("user_id", observed=True).head(c.history))[["user_id", "item_id",
                                                                   "strength"]]
    # item-item cosine over co-occurrence
    norms = np.sqrt((recent["strength"] ** 2).groupby(recent["item_id"], observed=True).sum())
    pairs = recent.merge(recent, on="user_id", suffixes=("", "_n"))
    pairs = pairs[pairs["item_id"] != pairs["item_id_n"]]
    pairs["dot"] = pairs["strength"] * pairs["strength_n"]
    sim = pairs.groupby(["item_id", "item_id_n"], observed=True)["dot"].sum().reset_index()
    sim["sim"] = sim["dot"] / (norms.reindex(sim["item_id"]).to_numpy()
                               * norms.reindex(sim["item_id_n"]).to_numpy())
    sim = (sim.sort_values(["item_id", "sim"], ascending=[True, False])
           .groupby("item_id", observed=True).head(c.neighbors))
    cf = recent.merge(sim[["item_id", "item_id_n", "sim"]], on="item_id")
    cf["score"] = cf["strength"] * cf["sim"]
    cf = cf.groupby(["user_id", "item_id_n"], observed=True)["score"].sum().reset_index()
    cf = cf.rename(columns={"item_id_n": "item_id", "score": "cf"})

    # taste: identical work to pinshop (shared function)
    liked = inter[inter["liked"]]
    users, items, scores = nearest_to_profiles(
        index, pa.Table.from_pandas(liked[["user_id", "item_id", "strength"]],
                                    preserve_index=False), c.taste_pool)
    taste = pd.DataFrame({"user_id": users, "item_id": items, "taste": scores})

    # category popularity
    item_pop = ev.groupby("item_id", observed=True)["pop"].sum().reset_index()
    item_pop["item_id"] = item_pop["item_id"].astype(str)
    item_pop = item_pop.merge(catalog, left_on="item_id", right_on="id")
    top_in_cat = (item_pop.sort_values(["category", "pop"], ascending=[True, False])
                  .groupby("category").head(c.popular_pool))
    shares = inter.assign(item_id=inter["item_id"].astype(str)).merge(
        catalog, left_on="item_id", right_on="id")
    shares = shares.groupby(["user_id", "category"], observed=True)["strength"].sum()
    shares = (shares / shares.groupby(level=0, observed=True).transform("sum")).rename("share")
    popular = shares.reset_index().merge(top_in_cat[["category", "item_id", "pop"]],
                                         on="category")
    popular["pop"] = popular["share"] * popular["pop"]

    # candidates: each component's top items per user, relative to the user's best
    parts = []
    for frame, column, weight in ((cf, "cf", w.cf), (taste, "taste", w.taste),
                                  (popular, "pop", w.popularity)):
        frame = frame[["user_id", "item_id", column]].astype({"user_id": str, "item_id": str})
        frame[column] = frame[column].clip(lower=0)
        frame = frame.sort_values(["user_id", column, "item_id"], ascending=[True, False, True])
        frame = frame.groupby("user_id").head(c.candidates)
        best = frame.groupby("user_id")[column].transform("first")
        parts.append(pd.DataFrame({"user_id": frame["user_id"], "item_id": frame["item_id"],
                                   "part": (weight * frame[column] / best.replace(0, np.nan))
                                   .fillna(0)}))
    # blend
    cand = pd.concat(parts).groupby(["user_id", "item_id"])["part"].sum().reset_index()
    cand = cand.rename(columns={"part": "score"})
    bought = inter.loc[inter["purchased"], ["user_id", "item_id"]].astype(str)
    cand = cand.merge(bought.assign(bought=True), on=["user_id", "item_id"], how="left")
    cand = cand[cand["bought"].isna() & (cand["score"] > 0)]
    cand = cand.merge(catalog, left_on="item_id", right_on="id")
    cand = cand.sort_values(["user_id", "score", "item_id"], ascending=[True, False, True])
    cand = cand[cand.groupby(["user_id", "category"]).cumcount() < c.per_category]
    top = cand.groupby("user_id").head(c.k).copy()
    top["rank"] = top.groupby("user_id").cumcount() + 1
    return top[["user_id", "rank", "item_id", "score"]]
