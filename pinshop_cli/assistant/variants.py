"""Follow-ups answered among the shown product's own variants (its `item_group_id` family):
"in a larger size", "a size down", "in blue", "in size M", "in XL".

One DuckDB query over the family's rows: a colour is one of the family's own colours named
in the question (as whole words), a size step is the next size up or down in the family's
size order (XXS ... XXXL, else the first number in the size: 38, 2-seat). The variant kept
is the closest to the shown one: same colour or size where not asked to change, in stock
first. None when the question asks for no variant, or the family has none that fits: the
turn is then answered by search as before.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..retrieval.store import CatalogStore

LARGER = re.compile(r"\b(larger|bigger|size up|one size up|next size)\b")
SMALLER = re.compile(r"\b(smaller|size down|one size down)\b")
NAMED_SIZE = re.compile(r"\bin (?:an? )?size ([a-z0-9.-]+)\b")
#: Where a size phrase "in ..." ends: the question's end, a comma, or a word that joins
#: another wish ("in XL please", "in a medium and in blue"; "in a small room" is a room).
_PHRASE_END = r"(?=\s*(?:$|[?!.,;:]|\b(?:and|or|please|instead|too|then)\b))"
#: "in XL", "in a medium", "in an extra large size": a letter size or its word, ending the
#: phrase ("in a small room" is a room).
LETTER_SIZE = re.compile(r"\bin (?:an? )?(?:size )?(xxs|xs|s|m|l|xl|xxl|xxxl|small|medium|"
                         r"large|extra large)(?: size)?" + _PHRASE_END)
#: "in blue", "in dark green for my son?": "in" and a word without an article (only a size
#: takes one: "in a medium"), not a place or a state ("in the living room", "in my
#: bedroom", "in a flat", "in stock"). Whether the word is a colour is find_variant's
#: check, against the family's own colours: a word that is none ("made in italy") costs
#: one query and the turn is answered by search.
IN_VARIANT = re.compile(
    r"\bin (?!(?:a|an|the|my|our|your|his|her|their|this|that|these|those|it|stock|"
    r"store|here|there|total|person|time|general)\b)[a-z0-9-]+")
#: Letter sizes, smallest first (a size outside it is ranked by its first number).
SIZE_ORDER = ("xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl")
_WORDS = {"small": "s", "medium": "m", "large": "l", "extra large": "xl"}


def _size_rank(column: str) -> str:
    letters = ", ".join(f"'{s}'" for s in SIZE_ORDER)
    words = " ".join(f"WHEN '{w}' THEN '{s}'" for w, s in _WORDS.items())
    size = f"(CASE {column} {words} ELSE {column} END)"
    return (f"coalesce(nullif(list_position([{letters}], {size}), 0)::DOUBLE, "
            f"try_cast(regexp_extract({column}, '(\\d+(\\.\\d+)?)', 1) AS DOUBLE))")


def asks_for_variant(question: str) -> bool:
    """Whether the words could ask for another variant: a size step, a named size, or "in"
    and a word ("in blue": the colour is checked later, against the family's own colours);
    "anything in the living room?" asks for none."""
    text = question.lower()
    return bool(LARGER.search(text) or SMALLER.search(text) or NAMED_SIZE.search(text)
                or LETTER_SIZE.search(text) or IN_VARIANT.search(text))


def _named_size(text: str) -> str | None:
    """The size a question names ("in size M", "in XL", "in a medium"), lower case."""
    named = NAMED_SIZE.search(text) or LETTER_SIZE.search(text)
    return _WORDS.get(named.group(1), named.group(1)) if named else None


def find_variant(store: CatalogStore, product_id: str, question: str) -> str | None:
    """The id of the variant of `product_id` the question asks for, or None."""
    text = question.lower()
    step = 1 if LARGER.search(text) else -1 if SMALLER.search(text) else 0
    con = store.con.cursor()
    try:
        columns = {r[0] for r in con.execute(
            "SELECT column_name FROM (DESCRIBE catalog)").fetchall()}
        if "item_group_id" not in columns:
            return None

        def text_of(name: str) -> str:
            return (f"nullif(lower(trim({name}::VARCHAR)), '')" if name in columns
                    else "NULL::VARCHAR")

        words = " " + re.sub(r"[^a-z0-9]+", " ", text) + " "
        found = con.execute(f"""
            WITH family AS (
                SELECT id, {text_of('color')} AS colour, {text_of('size')} AS size,
                       availability, nullif(trim(item_group_id::VARCHAR), '') AS family
                FROM catalog
                WHERE item_group_id = (SELECT item_group_id FROM catalog WHERE id = $id)
            ), ranked AS (SELECT *, {_size_rank('size')} AS size_rank FROM family),
            me AS (SELECT * FROM ranked WHERE id = $id),
            wished AS (
                SELECT r.*,
                       r.colour IS NOT NULL AND contains($words, ' ' || r.colour || ' ')
                           AND r.colour IS DISTINCT FROM me.colour AS named_colour,
                       r.size_rank - me.size_rank AS size_step,
                       r.colour IS NOT DISTINCT FROM me.colour AS same_colour,
                       r.size IS NOT DISTINCT FROM me.size AS same_size
                FROM ranked r, me WHERE r.id <> $id AND me.family IS NOT NULL
            )
            SELECT id FROM wished
            WHERE CASE WHEN $named IS NOT NULL THEN size = $named
                       WHEN $step > 0 THEN size_step > 0
                       WHEN $step < 0 THEN size_step < 0
                       ELSE named_colour END
              AND (named_colour OR same_colour
                   OR NOT EXISTS (SELECT 1 FROM wished w WHERE w.named_colour))
            ORDER BY named_colour DESC, abs(size_step) NULLS LAST, same_size DESC,
                     same_colour DESC, availability IS DISTINCT FROM 'in_stock', id
            LIMIT 1""", {"id": product_id, "words": words, "step": step,
                         "named": _named_size(text)}).fetchall()
    finally:
        con.close()
    return str(found[0][0]) if found else None
