"""How much an anonymous browsing session should weigh, on a real purchase history.

    python bench/session_weight.py WORKSPACE EVENTS.csv [--cut 2017-10-20] [--users 100]
                                   [--weights 0 1 1.3 2]

WORKSPACE is a catalog workspace of the history (eval_recommend.py's completejourney one,
say) and EVENTS.csv its events. The history is cut at `--cut` into a copy of the workspace.
A test user (5 or more items bought before the cut, something bought in the 14 days after)
becomes an anonymous shopper whose session is their last 5 distinct purchases before the
cut, as views; hit@10 counts any of the 10 recommended bought in those 14 days. The
default (unfitted) blend, `RecommendConfig.session_weight` varied. No data set here holds
real sessions, so this is a stand-in: a basket for a browsing session.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
from datetime import date, timedelta
from pathlib import Path


def main() -> None:
    import duckdb

    from pinshop_cli import ingest_events
    from pinshop_cli.recommendation.api import recommend
    from pinshop_cli.recommendation.config import RecommendConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("workspace", type=Path)
    parser.add_argument("events", type=Path)
    parser.add_argument("--cut", default="2017-10-20")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--weights", type=float, nargs="+", default=[0, 1, 1.3, 2])
    args = parser.parse_args()
    end = str(date.fromisoformat(args.cut) + timedelta(days=14))
    with tempfile.TemporaryDirectory() as name:
        ws = Path(name) / "ws"
        shutil.copytree(args.workspace, ws, ignore=shutil.ignore_patterns(
            "events.parquet", ".events.parquet.check.json", "events.csv", ".lock",
            "recommend_tuning.json"))
        con = duckdb.connect()
        con.execute("CREATE TABLE e AS SELECT user_id::VARCHAR AS u, item_id::VARCHAR AS i, "
                    "event, ts FROM read_csv_auto($path)", {"path": str(args.events)})
        before = Path(name) / "before.csv"
        con.execute(f"COPY (SELECT u AS user_id, i AS item_id, event, ts FROM e "
                    f"WHERE ts < '{args.cut}') TO '{before}' (HEADER)")
        ingest_events(before, ws)
        users = [r[0] for r in con.execute(f"""
            SELECT u FROM e WHERE event = 'purchase' GROUP BY u
            HAVING count(DISTINCT i) FILTER (WHERE ts < '{args.cut}') >= 5
               AND count(*) FILTER (WHERE ts >= '{args.cut}' AND ts < '{end}') > 0
            ORDER BY u""").fetchall()]
        random.Random(0).shuffle(users)
        users = users[:args.users]
        hits = dict.fromkeys(args.weights, 0)
        pulled = dict.fromkeys(args.weights, 0)
        for user in users:
            last = con.execute(f"""
                SELECT i, max(ts) AS t FROM e WHERE u = $u AND event = 'purchase'
                AND ts < '{args.cut}' GROUP BY i ORDER BY t DESC LIMIT 5""",
                               {"u": user}).fetchall()
            session = [{"item_id": i, "event": "view", "ts": str(t)} for i, t in reversed(last)]
            bought = {r[0] for r in con.execute(f"""
                SELECT i FROM e WHERE u = $u AND event = 'purchase'
                AND ts >= '{args.cut}' AND ts < '{end}'""", {"u": user}).fetchall()}
            for weight in args.weights:
                found = recommend(ws, None, RecommendConfig(session_weight=weight),
                                  session=session)[:10]
                hits[weight] += any(r.item_id in bought for r in found)
                pulled[weight] += sum(r.reason.startswith("because you looked at")
                                      for r in found)
    print(f"{len(users)} anonymous sessions, cut {args.cut}")
    print("| session_weight | hit@10 | session items in the 10 |")
    print("|---|---|---|")
    for weight in args.weights:
        print(f"| {weight:g} | {hits[weight] / len(users):.3f} | "
              f"{pulled[weight] / len(users):.1f} |")


if __name__ == "__main__":
    main()
