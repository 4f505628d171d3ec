"""Recommendations in context: the browsing session pulls in its neighbours, "because you
looked at X", exactly where the session component put them."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from pinshop_cli.commands.main import app
from pinshop_cli.io.events import ingest_events
from pinshop_cli.recommendation.api import recommend
from pinshop_cli.recommendation.config import BlendWeights, RecommendConfig
from pinshop_cli.recommendation.session import read_session

NO_DECAY = dict(half_life_days=1e9, popularity_half_life_days=1e9)
POPULAR_ONLY = RecommendConfig(weights=BlendWeights(0, 0, 1), **NO_DECAY)


@pytest.fixture
def shop(hand_worked_events):
    """The hand-worked events of test_recommend.py (conftest.py has the arithmetic)."""
    return hand_worked_events


def session_file(tmp_path, rows, user="new"):  # noqa: ANN001, ANN201
    path = tmp_path / "session.csv"
    path.write_text("user_id,item_id,event,ts\n" + "".join(
        f"{user},{i},{e},2025-02-01 10:00:{n:02d}\n" for n, (i, e) in enumerate(rows)))
    return path


def test_a_session_view_pulls_in_its_neighbours_because_you_looked_at_it(shop, tmp_path):
    # Cold user: popularity A 1, D 0.75, B 0.25, C 0.25 (A is left out: it is being looked
    # at); session C 1, B 0.302/0.452 = 0.67, D 0.213/0.452 = 0.47 (weight 1 = the largest):
    # C 1.25, D 1.22, B 0.92.
    recs = recommend(shop, "new", POPULAR_ONLY, session=session_file(tmp_path, [("A", "view")]))
    by_id = {r.item_id: r for r in recs}
    assert [r.item_id for r in recs] == ["C", "D", "B"]
    assert by_id["C"].reason == by_id["B"].reason == "because you looked at Item A"
    assert by_id["D"].reason == "popular in lamp"  # popularity 0.75 > session 0.47
    assert by_id["C"].score == pytest.approx(1.25, abs=1e-3)
    # Without the session the same user gets plain popularity, A first.
    assert [r.item_id for r in recommend(shop, "new", POPULAR_ONLY)][:2] == ["A", "D"]


def test_live_prices_and_stock_reach_recommendations(shop):
    """A server's PATCH (the change log, not folded yet) is what recommendations show: a
    sold-out product is not offered, a new price is the one shown."""
    from pinshop_cli.retrieval.updates import ProductChange, write_changes
    from pinshop_cli.workspace import Workspace

    assert [r.item_id for r in recommend(shop, "new", POPULAR_ONLY)][:2] == ["A", "D"]
    write_changes(Workspace.open(shop), [ProductChange("A", availability="out_of_stock"),
                                         ProductChange("D", price=77)])
    recs = recommend(shop, "new", POPULAR_ONLY)
    assert [r.item_id for r in recs] == ["D", "B", "C"]
    assert recs[0].price == 77
    # Left out before each component's top N: one candidate a component still fills.
    assert [r.item_id for r in recommend(shop, "new", replace(POPULAR_ONLY, candidates=1))
            ] == ["D"]


def test_a_session_of_unknown_items_is_an_error_not_a_popular_list(shop, tmp_path):
    from pinshop_cli.errors import PinshopError

    unknown = session_file(tmp_path, [("NOPE", "view"), ("ZZZ", "save")])
    with pytest.raises(PinshopError, match=r"none of the session's items is in the catalog "
                                           r"\(e.g. 'NOPE', 'ZZZ'\)"):
        recommend(shop, None, POPULAR_ONLY, session=unknown)
    # One known item is enough: the unknown ones are left out, and said so.
    mixed = session_file(tmp_path, [("NOPE", "view"), ("A", "view")])
    notes: list[str] = []
    assert [r.item_id for r in recommend(shop, "new", POPULAR_ONLY, session=mixed,
                                         notes=notes)] == ["C", "D", "B"]
    assert notes == ["1 of the session's 2 items is not in the catalog and pulls in nothing: "
                     "'NOPE'", "user 'new' has no events: popular items and what the "
                     "session pulls in"]
    from typer.testing import CliRunner

    from commands.main import app

    done = CliRunner().invoke(app, ["recommend", "--session", str(mixed), "-w", str(shop)])
    assert done.exit_code == 0 and "is not in the catalog and pulls in nothing" in done.output


def test_a_session_is_one_shoppers_events(shop, tmp_path):
    """A session file's user_id column was not read: another user's session, or an export
    mixing several, was taken as this shopper's without a word."""
    from pinshop_cli.errors import PinshopError

    path = tmp_path / "session.csv"
    path.write_text("user_id,item_id,event\nnew,A,view\nann,D,view\n,C,view\n")
    notes: list[str] = []
    only_new = recommend(shop, "new", POPULAR_ONLY, session=path, notes=notes)
    # D, ann's, is left out: it is neither pulled from nor kept out of the list.
    assert "D" in [r.item_id for r in only_new]
    assert {"A", "C"}.isdisjoint(r.item_id for r in only_new)
    assert notes[0] == ("1 of the session's 3 events names another user than 'new' ('ann') "
                        "and was left out")
    with pytest.raises(PinshopError, match="session.csv mixes the events of 2 users "
                                           r"\('ann', 'new'\): a session is one shopper's"):
        recommend(shop, None, POPULAR_ONLY, session=path)
    with pytest.raises(PinshopError, match="session.csv holds no events of user 'bob': its "
                                           "user_id names 'ann', 'new'"):
        path.write_text("user_id,item_id,event\nnew,A,view\nann,D,view\n")
        recommend(shop, "bob", POPULAR_ONLY, session=path)
    path.write_text("user_id,item_id,event\nann,A,view\n")
    notes.clear()
    recommend(shop, None, POPULAR_ONLY, session=path, notes=notes)
    assert notes == ["the session names user 'ann': recommended for an anonymous shopper; "
                     "give the user id to add their history"]
    done = CliRunner().invoke(app, ["recommend", "--user", "bob", "--session", str(path),
                                    "-w", str(shop)])
    assert done.exit_code == 1
    assert "holds no events of user 'bob'" in done.output + str(done.exception)


def test_a_user_without_events_is_said_so(shop):
    """A mistyped user id got the bestsellers with no word: nothing told it from a real
    shopper's list."""
    notes: list[str] = []
    assert recommend(shop, "u9", POPULAR_ONLY, notes=notes)
    assert notes == ["user 'u9' has no events: popular items"]
    notes.clear()
    recommend(shop, "u1", POPULAR_ONLY, notes=notes)
    assert notes == []
    done = CliRunner().invoke(app, ["recommend", "--user", "u9", "-w", str(shop)])
    assert done.exit_code == 0 and "user 'u9' has no events: popular items" in done.output


def test_a_session_file_that_is_not_utf8_says_how_it_was_read(shop, tmp_path):
    """A stray 0xFF made the whole file Windows-1252 without a word: the only sign was
    "'P\xff06' is not in the catalog"."""
    path = tmp_path / "session.csv"
    path.write_bytes(b"item_id,event\nA,view\nB\xff,view\n")
    notes: list[str] = []
    recommend(shop, None, POPULAR_ONLY, session=path, notes=notes)
    assert notes[0] == "session.csv is not UTF-8: read as windows-1252"


def test_the_newest_session_item_pulls_hardest(shop, tmp_path):
    # D then A: A, the newest, weighs 1; D, one event older, 0.5 ** (1/5).
    recs = recommend(shop, None, POPULAR_ONLY,
                     session=[{"item_id": "D", "event": "view", "ts": "2025-02-01 10:00"},
                              {"item_id": "A", "event": "view", "ts": "2025-02-01 10:01"}])
    assert recs[0].user_id == "(session)"
    assert {r.item_id for r in recs} == {"B", "C"}  # A and D are the session itself
    assert all(r.reason.startswith("because you looked at Item ") for r in recs)


def test_session_input_is_checked(tmp_path):
    from pinshop_cli import PinshopError

    with pytest.raises(PinshopError, match="session event 1: unknown event type 'stare'"):
        read_session([{"item_id": "A", "event": "stare"}])
    with pytest.raises(PinshopError, match=r"the session lacks column\(s\) event; it needs "
                                           r"item_id, event \(user_id, ts, weight optional\)"):
        read_session([{"item_id": "A"}])
    assert read_session([]).num_rows == 0  # a conversation that has shown nothing yet
    # A key that only later events carry is read (the first event set the columns).
    with pytest.raises(PinshopError, match="session event 1: missing ts; give ts on every "
                                           r"event or on none \(without ts, the last"):
        read_session([{"item_id": "A", "event": "view"},
                      {"item_id": "B", "event": "view", "ts": "2024-01-02"}])
    weighted = read_session([{"item_id": "A", "event": "view"},
                             {"item_id": "B", "event": "view", "weight": 3}])
    assert weighted.column("weight").to_pylist() == [3.0, 1.0]


@pytest.mark.parametrize("content, error", [
    ("item_id,event,ts,weight\nA,view,2025-02-01,heavy\n",
     "session.csv line 2: bad weight 'heavy'"),
    ("item_id,event,ts,weight\nA,view,2025-02-01,nan\nB,view,2025-02-01,-1\n",
     "session.csv line 2: bad weight 'nan': not a finite number \\(and 1 more\\)"),
    ("item_id,event,ts,weight\nA,view,2025-02-01,1e308\n",
     "line 2: bad weight '1e308': must be from 0 to 1e9"),
    ("item_id,event,ts\nA,view,yesterday\n", "line 2: bad timestamp 'yesterday'"),
    ("item_id,event,weight\nA,view,-5\n", "line 2: bad weight '-5'"),  # no ts: checked too
    ("item_id,event,ts\n,view,2025-02-01\n", "line 2: missing item_id"),
    ("item_id,event,ts\nA,,2025-02-01\n", "line 2: missing event"),
    ("item_id,event,ts\n", "session.csv has no events"),
    ("", "cannot read session.csv|session.csv is empty"),
    (b"\x00\x01\x02PK\x03\x04" * 50, "session.csv"),
    ("item_id;event\nA;view\n", "lacks column\\(s\\) item_id, event; .* \\(its header is "
     "one column, 'item_id;event': fields are separated by commas, not ';'\\)"),
])
def test_a_bad_session_file_is_a_one_line_error(tmp_path, content, error):
    from pinshop_cli import PinshopError

    path = tmp_path / "session.csv"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises(PinshopError, match=error) as caught:
        read_session(path)
    assert "\n" not in str(caught.value)


def test_a_session_file_must_be_csv_or_parquet_and_a_file(tmp_path):
    from pinshop_cli import PinshopError

    (tmp_path / "session.jsonl").write_text('{"item_id": "A", "event": "view"}\n')
    with pytest.raises(PinshopError, match="unsupported session format '.jsonl'"):
        read_session(tmp_path / "session.jsonl")
    (tmp_path / "fake.parquet").write_text("item_id,event\nA,view\n")
    with pytest.raises(PinshopError, match="cannot read fake.parquet: not a readable Parquet"):
        read_session(tmp_path / "fake.parquet")
    with pytest.raises(PinshopError, match="is a directory: name the session file"):
        read_session(tmp_path)


def test_session_times_are_read_as_times_and_the_newest_weighs_most(tmp_path):
    # Epoch seconds, an ISO time with an offset and a plain one: ordered as instants, not
    # as text ("9..." sorts after "2..." as text, and is the oldest here).
    path = tmp_path / "session.csv"
    path.write_text("item_id,event,ts\n"
                    "OLD,view,946684800\n"  # 2000-01-01
                    "NEW,view,2025-02-01T12:00:00+02:00\n"  # 10:00 UTC
                    "MID,save,2025-02-01 09:00:00\n")
    session = read_session(path).to_pydict()
    assert session["item_id"] == ["NEW", "MID", "OLD"]
    assert session["position"] == [0, 1, 2]
    assert session["weight"] == [1.0, 4.0, 1.0]  # the event types' defaults
    # Without ts, the rows' order is the session's: the last row is the newest.
    path.write_text("item_id,event\nA,view\nB,view\n")
    assert read_session(path).column("item_id").to_pylist() == ["B", "A"]


@pytest.mark.parametrize("argv, error", [
    (["--user", "t", "--all"], "--user recommends for one shopper"),
    (["--user", "t", "--evaluate"], "--user recommends for one shopper"),
    (["--all", "--cut", "2025-01-01"], "--cut is the evaluation's cut date"),
    (["--tune", "--evaluate"], "separate runs: pass one"),  # ran --tune alone, silently
    (["--user", " "], "a user id cannot be blank"),
    (["--user", "t", "--per-category", "0"], "Invalid value for '--per-category'"),
])
def test_recommend_refuses_options_that_do_not_go_together(shop, argv, error):
    result = CliRunner().invoke(app, ["recommend", *argv, "-w", str(shop)])
    # A usage error is in the output; a PinshopError is what `pinshop` prints as "Error:".
    said = result.output + str(result.exception or "")
    assert result.exit_code != 0 and error in said, said


def test_session_option_on_the_command_line(shop, tmp_path):
    result = CliRunner().invoke(app, ["recommend", "--user", "t", "--session",
                                      str(session_file(tmp_path, [("B", "save")], "t")),
                                      "-w", str(shop), "--json"])
    assert result.exit_code == 0, result.output
    recs = json.loads(result.stdout)
    assert "B" not in [r["item_id"] for r in recs]
    assert any(r["reason"] == "because you looked at Item B" for r in recs)


def test_a_gain_inside_the_noise_is_not_significant():
    import numpy as np

    from pinshop_cli.recommendation.significance import interval, significant_gain

    rng = np.random.default_rng(1)
    baseline = rng.integers(0, 2, 300).astype(float)  # hit or miss per user
    noise = baseline.copy()
    noise[rng.choice(300, 6, replace=False)] = 1  # a handful of users flip
    noise[rng.choice(300, 5, replace=False)] = 0
    assert not significant_gain(noise, baseline)[2]
    better = np.maximum(baseline, rng.integers(0, 2, 300))  # a quarter of users gain a hit
    gain, low, significant = significant_gain(better, baseline)
    assert significant and 0 < low < gain
    low, high = interval(np.r_[np.zeros(50), np.ones(50)])
    assert low < 0.5 < high and high - low < 0.25


def test_intra_list_diversity_and_novelty_by_hand_with_a_fake_index():
    """Fake index (plumbing): u1's list is two orthogonal vectors (distance 1), u2's two
    equal ones (distance 0): diversity 0.5. Novelty: A reaches 1 of 2 training users,
    B none: -log2(2/3) and -log2(1/3)."""
    import duckdb
    import numpy as np

    from pinshop_cli.recommendation.novelty import diversity, novelty

    class FakeIndex:
        def vectors_of(self, labels):  # noqa: ANN001, ANN202
            return np.eye(3, dtype=np.float32)[[0, 1, 2]][labels]

    con = duckdb.connect()
    con.execute("CREATE TABLE recs AS SELECT * FROM (VALUES (1, 10), (1, 11), (2, 12), "
                "(2, 12)) t(user_id, item_id)")
    con.execute("CREATE TABLE item_labels AS SELECT * FROM (VALUES (10, 0), (11, 1), "
                "(12, 2)) t(key, label)")
    assert diversity(con, FakeIndex()) == 0.5
    assert diversity(con, None) is None
    con.execute("CREATE TABLE interactions AS SELECT * FROM (VALUES (1, 10), (2, 99)) "
                "t(user_id, item_id)")
    con.execute("CREATE OR REPLACE TABLE recs AS SELECT * FROM (VALUES (1, 10), (1, 11)) "
                "t(user_id, item_id)")
    assert novelty(con) == pytest.approx((-np.log2(2 / 3) - np.log2(1 / 3)) / 2, abs=1e-4)


def test_trending_and_seasonal_reasons_appear_exactly_where_they_put_the_item(
        events_workspace, tmp_path):
    """Scoring date 2025-06-30 12:00:01. Chairs: 30 the week before last, 10 last week
    (falling). Lamps: 1 then 22 (D bought twice, C viewed twice): growth (22+5)/(1+5) = 4.5,
    trending D 3.5*20 = 70, C 3.5*2 = 7 -> 1 and 0.1. A year ago (52 weeks and 3 days) a
    sofa E sold. All-time popularity A 40, D 20, E 10, C 3 -> 1, 0.5, 0.25, 0.075.
    Blend 1/1/1: D 1.5 (trending), E 1.25 (seasonal), A 1 (popular), C 0.175 (trending)."""
    rows = [("u1", "A", "purchase", "2025-06-18 10:00:00"),
            ("u2", "A", "purchase", "2025-06-18 10:00:00"),
            ("u3", "A", "purchase", "2025-06-18 10:00:00"),
            ("u1", "C", "view", "2025-06-18 11:00:00"),
            ("u4", "A", "purchase", "2025-06-28 10:00:00"),
            ("u1", "D", "purchase", "2025-06-29 10:00:00"),
            ("u2", "D", "purchase", "2025-06-29 10:00:00"),
            ("u3", "C", "view", "2025-06-29 10:00:00"),
            ("u4", "C", "view", "2025-06-30 12:00:00"),
            ("u5", "E", "purchase", "2024-07-04 10:00:00")]
    source = tmp_path / "events.csv"
    source.write_text("user_id,item_id,event,ts\n" + "".join(
        f"{u},{i},{e},{t}\n" for u, i, e, t in rows))
    ingest_events(source, events_workspace)
    weights = BlendWeights(cf=0, taste=0, popularity=1, trending=1, seasonal=1)
    recs = recommend(events_workspace, "new", RecommendConfig(weights=weights, **NO_DECAY))
    assert [(r.item_id, r.reason) for r in recs] == [
        ("D", "trending in lamp this week"), ("E", "in season: it sold this time last year"),
        ("A", "popular in chair"), ("C", "trending in lamp this week")]
    assert [r.score for r in recs] == pytest.approx([1.5, 1.25, 1.0, 0.175], abs=1e-3)
    # Without the trend components no such reason appears, and the order is popularity's.
    plain = recommend(events_workspace, "new", POPULAR_ONLY)
    assert [r.item_id for r in plain] == ["A", "D", "E", "C"]
    assert not any("trending" in r.reason or "season" in r.reason for r in plain)


def test_the_chat_passes_the_session_it_holds_and_image_neighbours_come_with_it(
        copy_workspace, tmp_path):
    """The chat (a scripted fake model: plumbing) shows lamps; the recommender, given the
    chat's session, pulls in the lamps' nearest products in the image index, each "because
    you looked at" one of the lamps shown."""
    import re

    from pinshop_cli.assistant.session import ShoppingAssistant
    from pinshop_cli.shop import Shop
    from pinshop_cli.testing import ScriptedChatModel

    def cite_first(messages):  # noqa: ANN001, ANN202
        first = re.search(r'<product id="([^"]+)"', messages[0]["content"])
        return f"The [{first.group(1)}] is a great fit for you."

    root = copy_workspace()
    with Shop(root) as shop:
        ids = [row[0] for row in shop.sql("SELECT id FROM catalog ORDER BY id LIMIT 2").rows]
    (tmp_path / "events.csv").write_text(  # an events table to score against, no more
        "user_id,item_id,event,ts\n" + "".join(f"u1,{i},view,2025-01-01\n" for i in ids))
    ingest_events(tmp_path / "events.csv", root)
    assistant = ShoppingAssistant(root, ScriptedChatModel([cite_first]))
    reply = assistant.ask("a black lamp under 150")
    shown = {p.id: p.title for p in reply.products}
    assert [e["item_id"] for e in assistant.looked_at] == list(reversed(list(shown)))
    with Shop(root) as shop:
        recs = shop.recommend("someone", RecommendConfig(weights=BlendWeights(0, 0, 1)),
                              session=assistant.looked_at)
    looked = [r for r in recs if r.reason.startswith("because you looked at ")]
    assert looked and not {r.item_id for r in recs} & set(shown)
    assert {r.reason.removeprefix("because you looked at ") for r in looked} <= set(
        shown.values())
    assistant.reset()
    assert assistant.looked_at == []


def test_shoppers_of_the_same_taste_bring_what_they_bought(copy_workspace, tmp_path):
    """me bought X; mate bought X and Y; other bought Z and W. Taste vectors: me = v(X),
    mate = v(X) + v(Y) normalized, other = v(Z) + v(W): mate is the nearer of the two (it
    shares X), so Y, which only mate has, comes first, for that reason; X is bought."""
    from pinshop_cli.shop import Shop

    root = copy_workspace()
    with Shop(root) as shop:
        x, y, z, w = (row[0] for row in shop.sql(
            "SELECT id FROM catalog ORDER BY id LIMIT 4").rows)
    rows = [("me", x), ("mate", x), ("mate", y), ("other", z), ("other", w)]
    (tmp_path / "events.csv").write_text("user_id,item_id,event,ts\n" + "".join(
        f"{u},{i},purchase,2025-01-01 10:00:0{n}\n" for n, (u, i) in enumerate(rows)))
    ingest_events(tmp_path / "events.csv", root)
    recs = recommend(root, "me", RecommendConfig(weights=BlendWeights.alone("tastemates")))
    assert recs[0].item_id == y and recs[0].score == pytest.approx(1.0)
    assert recs[0].reason == "shoppers with your taste bought or saved this"
    assert x not in [r.item_id for r in recs]
    assert {r.item_id for r in recs} <= {y, z, w}


def test_mmr_trades_a_near_duplicate_for_a_different_item_with_a_fake_index():
    """Fake index (plumbing): items 1 and 2 have the same photo, 3 another. Relevance 1,
    0.95, 0.5. lambda 1 keeps 1, 2; lambda 0.5 takes 3 second (0.5*0.5 - 0 = 0.25 beats
    0.5*0.95 - 0.5*1 = -0.025)."""
    from types import SimpleNamespace

    import duckdb
    import numpy as np

    from pinshop_cli.recommendation.mmr import rerank

    vectors = np.array([[1, 0], [1, 0], [0, 1]], np.float32)
    index = SimpleNamespace(manifest=SimpleNamespace(dim=2),
                            vectors_of=lambda labels: vectors[labels])
    con = duckdb.connect()
    con.execute("CREATE TABLE item_labels AS SELECT * FROM (VALUES (1, 0), (2, 1), (3, 2)) "
                "t(key, label)")
    pool = ("SELECT * FROM (VALUES (7, 1, 1.0, 1), (7, 2, 0.95, 2), (7, 3, 0.5, 3)) "
            "t(user_id, item_id, score, rank)")
    for lam, expected in ((1.0, [1, 2]), (0.5, [1, 3])):
        con.execute(f"CREATE OR REPLACE TABLE recs AS {pool}")
        rerank(con, index, "recs", lam, k=2)
        assert [r[0] for r in con.execute("SELECT item_id FROM recs ORDER BY rank")
                .fetchall()] == expected


def test_mmr_keeps_the_protected_head_in_the_blends_order_with_a_fake_index():
    """Fake index (plumbing): items 1, 2 and 4 have the same photo, 3 another; relevance
    1, 0.95, 0.5, 0.4; k 3, lambda 0.5. No head: 1, then 3 (0.25 beats 2's 0.5*0.95 -
    0.5*1 = -0.025), then 2 (-0.025 beats 4's -0.3). A head of 2 keeps the blend's 1, 2
    and MMR fills the third place: 3. User 8's pool holds two items: at lambda 0 (no
    relevance left, only variety) both, in pick order, and nothing invented."""
    from types import SimpleNamespace

    import duckdb
    import numpy as np

    from pinshop_cli.recommendation.mmr import rerank

    vectors = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], np.float32)
    index = SimpleNamespace(manifest=SimpleNamespace(dim=2),
                            vectors_of=lambda labels: vectors[labels])
    con = duckdb.connect()
    con.execute("CREATE TABLE item_labels AS SELECT * FROM (VALUES (1, 0), (2, 1), (3, 2), "
                "(4, 3)) t(key, label)")
    pool = ("SELECT * FROM (VALUES (7, 1, 1.0, 1), (7, 2, 0.95, 2), (7, 3, 0.5, 3), "
            "(7, 4, 0.4, 4), (8, 2, 1.0, 1), (8, 4, 0.9, 2)) t(user_id, item_id, score, rank)")
    for lam, head, expected in ((0.5, 0, [1, 3, 2]), (0.5, 2, [1, 2, 3]),
                                (0.0, 0, [1, 3, 2])):
        con.execute(f"CREATE OR REPLACE TEMP TABLE recs AS {pool}")  # as rerank's own
        rerank(con, index, "recs", lam, k=3, head=head)
        lists = {u: [r[0] for r in con.execute(
            "SELECT item_id FROM recs WHERE user_id = ? ORDER BY rank", [u]).fetchall()]
            for u in (7, 8)}
        assert lists[7] == expected, (lam, head)
        assert lists[8] == [2, 4]
        assert con.execute("SELECT list(rank ORDER BY rank) FROM recs WHERE user_id = 7"
                           ).fetchone()[0] == [1, 2, 3]


def test_a_wider_mmr_pool_raises_diversity_and_a_full_head_is_the_plain_blend(
        copy_workspace, tmp_path):
    """On the demo workspace (real image index) with generated shoppers, k 3, lambda 0.3:
    a pool of k leaves MMR only the order to choose (the plain blend's items, as varied);
    a pool of 10 k is more varied; a head of k is the plain blend again."""
    from pinshop_cli.recommendation.novelty import diversity
    from pinshop_cli.recommendation.reasons import blend, recommendations
    from pinshop_cli.recommendation.scorer import Scorer, scoring_date
    from pinshop_cli.workspace import Workspace

    root = copy_workspace()
    result = CliRunner().invoke(app, ["generate-events", str(tmp_path / "ev.parquet"),
                                      "--users", "60", "--events", "3000", "-w", str(root)])
    assert result.exit_code == 0, result.output
    ingest_events(tmp_path / "ev.parquet", root)
    base = RecommendConfig(k=3, weights=BlendWeights(), mmr_lambda=0.3, **NO_DECAY)
    scorer = Scorer(Workspace.open(root), base)
    try:
        scorer.prepare(scoring_date(scorer))
        index = scorer.product_index()
        assert index is not None
        measured = {}
        for name, overrides in (("plain", dict(mmr_lambda=1.0)), ("pool k", dict(mmr_pool=1)),
                                ("pool 10 k", dict(mmr_pool=10)), ("head k", dict(
                                    mmr_pool=10, mmr_head=3))):
            scorer.config = replace(base, **overrides)
            blend(scorer, base.blend_weights)
            measured[name] = (diversity(scorer.con, index),
                              recommendations(scorer).select(["user_id", "item_id"]))
    finally:
        scorer.close()
    plain, lists = measured["plain"]
    assert measured["head k"][1].equals(lists)
    assert measured["pool k"][1].sort_by([("user_id", "ascending"), ("item_id", "ascending")]
                                        ).equals(lists.sort_by([("user_id", "ascending"),
                                                                ("item_id", "ascending")]))
    assert measured["pool k"][0] == plain
    assert measured["pool 10 k"][0] > plain + 0.01


def test_style_clusters_by_spherical_k_means():
    """Plumbing: two tight bundles of directions, 30 vectors each, at any length: k = 60 //
    20 = 3 at most, and no cluster mixes the bundles; a second fit is the same."""
    import numpy as np

    from pinshop_cli.recommendation.style import fit_styles

    rng = np.random.default_rng(3)
    a = np.array([1, 0, 0, 0], np.float32) + rng.normal(0, 0.05, (30, 4))
    b = np.array([0, 0, 1, 0], np.float32) + rng.normal(0, 0.05, (30, 4))
    vectors = np.vstack([a, b]) * rng.uniform(0.5, 3, (60, 1))
    styles = fit_styles(vectors, most=8, min_size=20)
    assert styles.max() < 3
    assert not set(styles[:30]) & set(styles[30:])
    assert (fit_styles(vectors, most=8, min_size=20) == styles).all()
    assert len(fit_styles(np.zeros((0, 4)), 8, 20)) == 0


def planted_styles(monkeypatch, styled):  # noqa: ANN001, ANN201
    """The style fit replaced by hand: the products in `styled` (ids) are style 1, every
    other product style 0."""
    import numpy as np

    from pinshop_cli.recommendation import style

    def fit(vectors, most=0, min_size=0):  # noqa: ANN001, ANN202, ARG001
        ids = planted["ids"]
        return np.array([int(i in styled) for i in ids], np.int32)

    planted: dict = {}
    real_cached = style._cached_or_fitted

    def cached(scorer, index):  # noqa: ANN001, ANN202
        planted["ids"] = index.label_table.column("id").to_pylist()
        return real_cached(scorer, index)

    monkeypatch.setattr(style, "fit_styles", fit)
    monkeypatch.setattr(style, "_cached_or_fitted", cached)


def write_events(root, tmp_path, rows):  # noqa: ANN001, ANN201
    (tmp_path / "events.csv").write_text("user_id,item_id,event,ts\n" + "".join(
        f"{u},{i},{e},{t}\n" for u, i, e, t in rows))
    ingest_events(tmp_path / "events.csv", root)


def test_a_style_that_grows_more_than_its_category_trends_by_its_style(
        copy_workspace, tmp_path, monkeypatch):
    """Planted styles: style 1 = {P001 (a natural oak chair), P004 (a table)}. The week
    before last: 3 purchases of the chair P007 (style 0), 1 of P004. Last week: 2 of
    P001. Chairs: (20+5)/(30+5) < 1, falling; style 1: (20+5)/(10+5) = 1.67, growing:
    P001 trends by its style, 0.67 * 20 = 13.3. Lamps: P010 viewed twice last week, none
    before: (2+5)/5 = 1.4, trending by category, 0.4 * 2 = 0.8 -> 0.06 of P001's.
    Style 1's name is a tie, one product each: colours natural oak and white, categories
    chair and table; a tie goes to the first name, "natural oak chair style" (DuckDB's
    mode() once named it "natural oak table style")."""
    from pinshop_cli.shop import Shop

    planted_styles(monkeypatch, {"P001", "P004"})
    root = copy_workspace()
    with Shop(root) as shop:
        lamp = shop.sql("SELECT id FROM catalog WHERE category = 'lamp' ORDER BY id "
                        "LIMIT 1").rows[0][0]
        chair = shop.sql("SELECT id FROM catalog WHERE category = 'chair' AND id <> 'P001' "
                         "ORDER BY id LIMIT 1").rows[0][0]
    rows = [(f"b{n}", chair, "purchase", f"2025-06-1{7 + n} 10:00:00") for n in range(3)]
    rows += [("b9", "P004", "purchase", "2025-06-18 10:00:00"),
             ("c1", "P001", "purchase", "2025-06-28 10:00:00"),
             ("c2", "P001", "purchase", "2025-06-29 10:00:00"),
             ("c3", lamp, "view", "2025-06-29 11:00:00"),
             ("c4", lamp, "view", "2025-06-30 12:00:00")]
    write_events(root, tmp_path, rows)
    recs = recommend(root, "new", RecommendConfig(weights=BlendWeights.alone("trending"),
                                                  serendipity=False, **NO_DECAY))
    assert [r.item_id for r in recs] == ["P001", lamp]
    assert recs[0].reason == "trending: natural oak chair style this week"
    assert recs[1].reason == "trending in lamp this week"
    assert [r.score for r in recs] == pytest.approx([1.0, 0.06], abs=1e-3)


def test_the_serendipity_slot_brings_what_the_same_style_cohort_liked_elsewhere(
        copy_workspace, tmp_path, monkeypatch):
    """Planted styles: the chairs P001 and the vase are style 1, the rest style 0. me and
    u2 like chairs most (style 1); u3 likes a lamp (style 0). The cohort of style 1 (me,
    u2) bought P001 twice and saved the vase once; u3's lamp is another cohort's. me shops
    chairs only: the slot is the vase, at the end of the list, for that reason; the lamp,
    liked by more shoppers overall but of another taste, is not. Without the option no
    slot; a user with no likes gets none."""
    from pinshop_cli.shop import Shop

    root = copy_workspace()
    with Shop(root) as shop:
        vase, lamp = (shop.sql(f"SELECT id FROM catalog WHERE category = '{c}' ORDER BY id "
                               "LIMIT 1").rows[0][0] for c in ("vase", "lamp"))
        chairs = [r[0] for r in shop.sql("SELECT id FROM catalog WHERE category = 'chair' "
                                         "AND id <> 'P001' ORDER BY id").rows]
    planted_styles(monkeypatch, {"P001", vase})
    rows = [("me", "P001", "purchase", "2025-06-01 10:00:00"),
            ("u2", "P001", "purchase", "2025-06-02 10:00:00"),
            ("u2", vase, "save", "2025-06-02 11:00:00"),
            ("u3", lamp, "purchase", "2025-06-03 10:00:00"),
            ("u4", lamp, "purchase", "2025-06-03 10:00:00"),
            ("u3", chairs[0], "view", "2025-06-03 11:00:00")]
    write_events(root, tmp_path, rows)
    config = RecommendConfig(weights=BlendWeights(0, 0, 1), serendipity=True, **NO_DECAY)
    recs = recommend(root, "me", config)
    assert [r.item_id for r in recs] == [chairs[0], vase]
    assert recs[-1].reason == "something different: shoppers with your taste liked this vase"
    assert recs[0].reason == "popular in chair"
    assert recs[-1].score == recs[0].score
    plain = recommend(root, "me", replace(config, serendipity=False))
    assert [r.item_id for r in plain] == [chairs[0]]
    assert recommend(root, "me", RecommendConfig(weights=config.weights, **NO_DECAY)) == plain
    for flag in ("--serendipity", "--no-serendipity"):  # the option reaches the config
        out = CliRunner().invoke(app, ["recommend", "--user", "me", flag, "--json",
                                       "-w", str(root)])
        assert out.exit_code == 0, out.output
        reasons = [r["reason"] for r in json.loads(out.stdout)]
        assert flag == "--serendipity" or not any("different" in r for r in reasons)
    assert not any(r.reason.startswith("something different") for r in
                   recommend(root, "nobody", config))
    # The k-th place is the slot's, but a list of one has no place to spare: no slot.
    assert recommend(root, "me", replace(config, k=1)) == recommend(
        root, "me", replace(config, k=1, serendipity=False))



def test_tune_refuses_a_history_that_is_all_validation(events_workspace, tmp_path):
    """Every event at one moment: the fit chose among rows of zeros and reported success."""
    from pinshop_cli.errors import PinshopError
    from pinshop_cli.io.events import ingest_events
    from pinshop_cli.recommendation.api import tune

    source = tmp_path / "events.csv"
    source.write_text("user_id,item_id,event,ts\n" + "".join(
        f"u{n},A,purchase,2025-01-01 00:00:00\n" for n in range(5)))
    ingest_events(source, events_workspace)
    with pytest.raises(PinshopError, match="too little history to fit the blend on"):
        tune(events_workspace)
