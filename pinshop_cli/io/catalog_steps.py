"""The catalog's normalize steps: a small pipeline over the table `records` (see
`records.py`), each step one SELECT over the table the step before made, kept as a temp table
of the step's name, so every stage can be queried while debugging:

1. typed: known columns trimmed, category lower-cased, the price read by its shape;
2. checked: the first rule a row breaks (the reader's problem, missing id or title,
   unparsable, negative or out-of-range price, a price or sale price in two currencies,
   a running sale above the price, sale dates that end before they start, an
   availability of no known spelling), as its reason;
3. imaged: distinct image files are checked and hashed in parallel threads, and joined in;
4. deduplicated: a second usable row of one id is refused (first on line N).

`split` then makes `catalog_out` (the clean rows) and `rejects_out` (line and a one-line
reason each).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import first_line
from ..workspace.storage import sha256_file
from .feeds import AVAILABILITY_PROBLEM, availability_sql, feed_sources
from .images import ImageRejected, check_image

if TYPE_CHECKING:
    import duckdb

    from .photo_fetch import PhotoStore

KNOWN_COLUMNS = (
    "id", "title", "description", "category", "brand", "color",
    "price", "currency", "image", "url", "availability",
)  # fmt: skip
#: Columns pinshop derives; a user column of the same name is kept with a suffix.
DERIVED_COLUMNS = ("image_sha256", "image_width", "image_height", "product_text",
                   "product_text_hash", "source_line")
PRICE_TYPE = "DECIMAL(18, 2)"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Currencies with three decimals (ISO 4217): "1.299 KWD" is a decimal; "1.299 EUR" could
#: be 1,299 (a point groups thousands in much of Europe) or a fuel price, so it is refused.
THREE_DECIMALS = ('BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND')
#: ISO 4217 codes a shop can price in (the list's currencies and fund codes, a few just
#: withdrawn; not precious metals, bond units or the test codes XTS and XXX).
_ISO_4217 = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP
    DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS
    INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR
    PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS
    SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW
    UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL"""
CURRENCIES = tuple(_ISO_4217.split())
#: What a currency column writes for a code: the symbols that name one currency, and the
#: common names that are not the ISO code.
CURRENCY_ALIASES = {"€": "EUR", "£": "GBP", "RMB": "CNY", "NTD": "TWD"}
MAX_PRICE = 1e16  # DECIMAL(18, 2) holds up to 9,999,999,999,999,999.99


# -- column names ---------------------------------------------------------------------------
def output_names(names: list[str]) -> list[str]:
    """The catalog column each input column becomes. Names are trimmed and lower-cased;
    when two inputs claim one name ('ID' and 'id ', 'Color' and 'color') the one already
    spelled that way (else the first) gets it and the other keeps its own spelling with a
    numeric suffix, so no value is lost. Derived names are never taken by user columns.
    Control characters are dropped first: a NUL would cut the name short inside Arrow and
    DuckDB and let two distinct names collide there."""
    names = [CONTROL.sub("", name) for name in names]
    keys = [name.strip().lower() or f"column_{n + 1}" for n, name in enumerate(names)]
    owner: dict[str, int] = {}
    for n, key in enumerate(keys):
        if key in DERIVED_COLUMNS:
            continue
        exact = names[n].strip() == key
        if key not in owner or (exact and names[owner[key]].strip() != key):
            owner[key] = n
    taken = set(owner) | set(DERIVED_COLUMNS)
    result = []
    for n, key in enumerate(keys):
        if owner.get(key) == n:
            result.append(key)
            continue
        base = names[n].strip() or key
        suffix = 2
        while f"{base}_{suffix}".lower() in taken:
            suffix += 1
        result.append(f"{base}_{suffix}")
        taken.add(result[-1].lower())
    return result


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- the pipeline --------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """What the steps need to know about the file."""

    columns: dict[str, str]  # output name -> its field in `records` (c0..cN)
    base: Path  # image paths are relative to it
    max_pixels: int
    threads: int
    #: Fetches photo URLs into the workspace's store (None: a URL photo is not fetched).
    photos: PhotoStore | None = None

    @classmethod
    def of(cls, names: list[str], base: Path, max_pixels: int, threads: int,
           photos: PhotoStore | None = None) -> Plan:
        columns = {name: f"c{n}" for n, name in enumerate(output_names(names))}
        return cls(columns, base, max_pixels, threads, photos)

    @property
    def sources(self) -> dict[str, list[str]]:
        """pinshop column -> its fields, feed aliases included (`link` feeds `url`)."""
        return feed_sources(self.columns)

    @property
    def extras(self) -> list[tuple[str, str]]:
        """The user's other columns as (field, output name): they keep their field names
        until the split, so no user name can collide with a working column."""
        return [(c, name) for name, c in self.columns.items()
                if name not in KNOWN_COLUMNS and name != "sale_price"]

    def text(self, name: str) -> str:
        """SQL for the trimmed text of a known column (NULL when empty or absent)."""
        fields = [f"nullif(trim({field}), '')" for field in self.sources.get(name, [])]
        if not fields:
            return "NULL::VARCHAR"
        return fields[0] if len(fields) == 1 else f"coalesce({', '.join(fields)})"


# The price text with currency symbols/codes removed and no-break spaces made plain
# (French "1\u202f299,00 €"), classified by shape.
#: A currency beside the amount: a symbol, an upper-case ISO 4217 code as feeds write it
#: ("49.99 USD", "EUR 12,50"), or a few common codes in lower case.
_CURRENCY = r"(?:[$€£¥]|[A-Z]{{3}}|usd|eur|gbp|chf|jpy)"
_NO_BREAK = "\u00a0\u202f"  # the spaces that group thousands in French and other locales
_SPACED = f"regexp_replace(trim({{p}}), '[{_NO_BREAK}]', ' ', 'g')"
_PRICE_CLEAN = (rf"lower(regexp_replace({_SPACED}, "
                rf"'^(?:{_CURRENCY}\s*)+|(?:\s*{_CURRENCY})+$', '', 'g'))")
#: The two symbols that name one currency (€, £) count as its code; $ and ¥ do not (USD or
#: CAD, JPY or CNY): their rows take the `currency` column or stay without one. A code
#: counts beside a symbol too ("$1,299.00 USD").
_CODE = "([A-Z]{{3}}|usd|eur|gbp|chf|jpy)"
_AMOUNT = f"\\d[\\d., {_NO_BREAK}]*"
_PRICE_CURRENCY = (
    f"CASE WHEN {_SPACED} ~ '^{_CODE}\\s*[$€£¥]?\\s*{_AMOUNT}$"
    f"|^[$€£¥]?\\s*{_AMOUNT}\\s*{_CODE}$' "
    f"THEN upper(regexp_extract({{p}}, '[A-Za-z]{{{{3}}}}')) "
    f"WHEN {_SPACED} ~ '^€\\s*{_AMOUNT}$|^{_AMOUNT}\\s*€$' THEN 'EUR' "
    f"WHEN {_SPACED} ~ '^£\\s*{_AMOUNT}$|^{_AMOUNT}\\s*£$' THEN 'GBP' END")
#: A sale whose effective dates ("2026-11-01T00:00-08:00/2026-11-30T23:59-08:00") both
#: parse and do not hold now is no sale; dates that do not parse leave the sale as given.
#: An end given as a date alone ("2026-12-01/2026-12-07") includes that day.
_SALE_OVER = ("coalesce(NOT (now() BETWEEN try_cast(split_part({d}, '/', 1) AS TIMESTAMPTZ) "
              "AND try_cast(split_part({d}, '/', 2) AS TIMESTAMPTZ) + CASE WHEN "
              "trim(split_part({d}, '/', 2)) ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}$' "
              "THEN INTERVAL 1 DAY ELSE INTERVAL 0 DAY END), false)")
#: Effective dates that both parse, the end before the start: a typo no date can satisfy.
_SALE_REVERSED = ("coalesce(try_cast(split_part({d}, '/', 2) AS TIMESTAMPTZ) "
                  "< try_cast(split_part({d}, '/', 1) AS TIMESTAMPTZ), false)")
_PRICE_SQL = """
    CASE
        WHEN {c} ~ '^\\d{{1,3}}( \\d{{3}})+(,\\d+)?$' THEN replace(replace({c}, ' ', ''), ',', '.')
        WHEN {c} ~ '^\\d{{1,3}}( \\d{{3}})+(\\.\\d+)?$' THEN replace({c}, ' ', '')
        WHEN {c} ~ '^\\d+(\\.\\d+)?$' THEN {c}
        WHEN {c} ~ '^\\d{{1,3}}(,\\d{{3}})+(\\.\\d+)?$' THEN replace({c}, ',', '')
        WHEN {c} ~ '^\\d{{1,3}}(\\.\\d{{3}})+(,\\d+)?$'
            THEN replace(replace({c}, '.', ''), ',', '.')
        WHEN {c} ~ '^\\d+,\\d{{1,2}}$' THEN replace({c}, ',', '.')
        WHEN {c} ~ '^\\d+(\\.\\d+)?e[+-]?\\d+$' THEN {c}
    END"""

#: A step: (connection, the table of the step before, plan) -> the SELECT of its own table.
Step = Callable[["duckdb.DuckDBPyConnection", str, Plan], str]


def typed(con: duckdb.DuckDBPyConnection, rows: str, plan: Plan) -> str:
    """Known columns trimmed (empty is NULL), the price cleaned of currency marks and read
    by its shape (`price_text`, `price_value`), its currency taken from a feed's "49.99 USD"
    when no `currency` column says it (else from the sale price's "39.99 USD" when the
    price shows no $ or ¥ of its own), likewise
    `sale_price` (while its effective dates hold); the category is the last
    segment of a path ("Home > Furniture > Sofas" is "sofas", "Home > Sofas >" too),
    lower-cased; the feed
    spellings of availability ("in stock", schema.org's "InStock") as the spec's
    (`in_stock`), NULL when unknown (`availability_raw` keeps it); user columns
    trimmed."""
    price_raw, sale_raw = plan.text("price"), plan.text("sale_price")
    known = ", ".join(f"{plan.text(name)} AS {name}" for name in KNOWN_COLUMNS
                      if name not in ("price", "category", "currency", "availability"))
    extras = "".join(f", nullif(trim({c}), '') AS {c}" for c, _ in plan.extras)
    stock = plan.text("availability")
    sale_dates = plan.text("sale_price_effective_date")
    return f"""
        WITH cleaned AS (
            SELECT *, {_PRICE_CLEAN.format(p=price_raw)} AS price_clean,
                   {_PRICE_CLEAN.format(p=sale_raw)} AS sale_clean FROM {rows}
        ), shaped AS (
            SELECT *, {_PRICE_SQL.format(c="price_clean")} AS price_text,
                   {_PRICE_SQL.format(c="sale_clean")} AS sale_text FROM cleaned
        )
        SELECT line, problem, raw, {known},
               nullif(lower(trim(regexp_extract(rtrim({plan.text("category")}, '> '),
                                                '([^>]*)$', 1))), '') AS category,
               upper(coalesce({_currency_column(plan.text("currency"))},
                              {_PRICE_CURRENCY.format(p=price_raw)},
                              CASE WHEN NOT coalesce({price_raw} ~ '[$¥]', false)
                                   THEN {_PRICE_CURRENCY.format(p=sale_raw)} END))
                   AS currency,
               {_PRICE_CURRENCY.format(p=price_raw)} AS price_currency,
               {availability_sql(stock)} AS availability, {stock} AS availability_raw,
               {price_raw} AS price_raw, price_text,
               try_cast(price_text AS DOUBLE) AS price_value,
               {sale_raw} AS sale_raw, sale_text, try_cast(sale_text AS DOUBLE) AS sale_parsed,
               {_PRICE_CURRENCY.format(p=sale_raw)} AS sale_currency,
               CASE WHEN {_SALE_OVER.format(d=sale_dates)}
                    THEN NULL ELSE try_cast(sale_text AS DOUBLE) END AS sale_value,
               {sale_dates} AS sale_dates, {_SALE_REVERSED.format(d=sale_dates)}
                   AS sale_reversed{extras}
        FROM shaped"""


def _ambiguous(name: str, text: str, raw: str, value: str) -> str:
    """The WHEN clause refusing an amount such as "1.299" whose point may part thousands: in
    a two-decimal currency, or beside $ or ¥ (a dollar's tenth of a cent, or 1,299 pesos?).
    It was stored as 1.30."""
    return f"""WHEN {text} ~ '^[1-9]\\d{{0,2}}\\.\\d{{3}}$'
                 AND coalesce(upper(currency) NOT IN {THREE_DECIMALS}, {raw} ~ '[$¥]') THEN
                'ambiguous {name} ' || q60({raw}) || ': a point between thousands or '
                || 'before decimals? write ' || replace({text}, '.', '') || ' or '
                || CAST({value} AS {PRICE_TYPE}) || ' (' || coalesce(upper(currency)
                || ' has', 'prices in most currencies have') || ' two decimals)'"""


def _currency_column(text: str) -> str:
    """SQL for a currency column's value with CURRENCY_ALIASES read as their codes."""
    cases = " ".join(f"WHEN '{alias}' THEN '{code}'" for alias, code in CURRENCY_ALIASES.items())
    return f"CASE upper(trim({text})) {cases} ELSE {text} END"


def checked(con: duckdb.DuckDBPyConnection, rows: str, plan: Plan) -> str:
    """`reason`: the reader's problem, else the first rule the row breaks."""
    return f"""
        SELECT *, CASE
            WHEN problem IS NOT NULL THEN problem
            WHEN id IS NULL THEN 'missing id'
            WHEN title IS NULL THEN 'missing title'
            WHEN price_raw IS NOT NULL AND price_raw ~ '^\\s*-' THEN
                'invalid price ' || q60(price_raw) || ' (negative)'
            WHEN price_raw IS NOT NULL AND price_value IS NULL THEN
                'unparsable price ' || q60(price_raw)
            {_ambiguous("price", "price_text", "price_raw", "price_value")}
            WHEN price_value IS NOT NULL AND NOT (isfinite(price_value)
                 AND price_value < {MAX_PRICE}) THEN
                'price out of range ' || q60(price_raw) || ' (at most 1e16)'
            WHEN currency NOT IN {CURRENCIES} AND coalesce(price_raw, sale_raw) IS NOT NULL THEN
                'currency ' || q60(currency) || ' is not an ISO 4217 code (such as EUR or USD)'
            WHEN price_currency <> currency THEN  -- "12,50 EUR" with currency USD
                'price ' || q60(price_raw) || ' is in ' || price_currency
                || ', the currency column says ' || currency
            WHEN sale_raw IS NOT NULL AND sale_raw ~ '^\\s*-' THEN
                'invalid sale_price ' || q60(sale_raw) || ' (negative)'
            WHEN sale_raw IS NOT NULL AND NOT coalesce(sale_parsed >= 0
                 AND sale_parsed < {MAX_PRICE}, false) THEN
                'unparsable sale_price ' || q60(sale_raw)
            {_ambiguous("sale_price", "sale_text", "sale_raw", "sale_parsed")}
            WHEN sale_currency <> currency THEN
                'sale_price ' || q60(sale_raw) || ' is in ' || sale_currency
                || ', the price in ' || currency
            -- $ and ¥ name no currency of their own, but never the euro or the pound
            WHEN price_raw ~ '[$¥]' AND coalesce(currency, sale_currency) IN ('EUR', 'GBP')
                THEN 'price ' || q60(price_raw) || ' is not in '
                     || coalesce(currency, sale_currency)
            WHEN sale_raw ~ '[$¥]' AND currency IN ('EUR', 'GBP') THEN
                'sale_price ' || q60(sale_raw) || ' is not in ' || currency
            -- a sale lowers the price (one not running now is not stored: no matter)
            WHEN round(sale_value, 2) > round(price_value, 2) THEN
                'sale_price ' || q60(sale_raw) || ' is above the price ' || q60(price_raw)
            WHEN sale_raw IS NOT NULL AND sale_reversed THEN
                'sale_price_effective_date ' || q60(sale_dates) || ' ends before it starts'
            WHEN availability_raw IS NOT NULL AND availability IS NULL THEN
                'availability ' || q60(availability_raw) || '{AVAILABILITY_PROBLEM}'
        END AS reason
        FROM {rows}"""


def imaged(con: duckdb.DuckDBPyConnection, rows: str, plan: Plan) -> str:
    """The image's resolved path, sha256 and displayed size, and `refusal`: the reason,
    else why the image is refused. A photo URL that cannot be fetched refuses nothing: the
    product stays, text-only, and `photo_problem` says why."""
    check_images(con, rows, plan)
    return f"""
        SELECT r.*, i.path AS image_path, i.sha256 AS image_sha256,
               i.width AS image_width, i.height AS image_height,
               CASE WHEN r.reason IS NULL THEN i.photo_problem END AS photo_problem,
               coalesce(r.reason, i.problem) AS refusal
        FROM {rows} r LEFT JOIN images i ON i.ref = r.image"""


def deduplicated(con: duckdb.DuckDBPyConnection, rows: str, plan: Plan) -> str:
    """`why`: the refusal, or for a usable row whose id a usable row on an earlier line
    already has, 'duplicate id'."""
    return f"""
        SELECT *, CASE WHEN refusal IS NOT NULL THEN refusal
                       WHEN first_line < line THEN
                           'duplicate id ' || q60(id) || ' (first on line ' || first_line || ')'
                  END AS why
        FROM (SELECT *, min(line) FILTER (WHERE refusal IS NULL)
                            OVER (PARTITION BY id) AS first_line FROM {rows})"""


STEPS: tuple[Step, ...] = (typed, checked, imaged, deduplicated)


def normalize(con: duckdb.DuckDBPyConnection, plan: Plan) -> str:
    """Run STEPS over `records`, each into a temp table of its name; return the last."""
    table = "records"
    for step in STEPS:
        con.execute(f"CREATE TEMP TABLE {step.__name__} AS {step(con, table, plan)}")
        table = step.__name__
    return table


def split(con: duckdb.DuckDBPyConnection, rows: str, plan: Plan, source: str) -> None:
    """Tables `catalog_out` (the clean rows, by line) and `rejects_out`."""
    extras = "".join(f", {c} AS {ident(name)}" for c, name in plan.extras)
    if "sale_price" in plan.columns:
        extras = f", CAST(sale_value AS {PRICE_TYPE}) AS sale_price{extras}"
    con.execute(f"""
        CREATE TEMP TABLE catalog_out AS
        SELECT id, title, description, category, brand, color,
               CASE WHEN price_text ~ 'e' THEN CAST(price_value AS {PRICE_TYPE})
                    ELSE CAST(price_text AS {PRICE_TYPE}) END AS price, currency,
               image_path AS image, url, availability, image_sha256, image_width,
               image_height, product_text,
               sha256(product_text) AS product_text_hash, line AS source_line{extras}
        FROM (SELECT *, concat_ws('. ', title, category, color, brand) || '.' AS product_text
              FROM {rows} WHERE why IS NULL)
        ORDER BY line""")
    con.execute(f"""
        CREATE TEMP TABLE rejects_out AS
        SELECT $source AS source, line::BIGINT AS line, id, why AS reason, raw
        FROM {rows} WHERE why IS NOT NULL ORDER BY line""", {"source": source})
    con.execute(f"""
        CREATE TEMP TABLE photo_rejects_out AS
        SELECT $source AS source, line::BIGINT AS line, id, photo_problem AS reason,
               image AS raw
        FROM {rows} WHERE why IS NULL AND photo_problem IS NOT NULL ORDER BY line""",
                {"source": source})


def check_images(con: duckdb.DuckDBPyConnection, rows: str, plan: Plan) -> None:
    """Table `images`: each distinct image reference of a row not yet refused -> resolved
    path, sha256 and displayed size, or why it is refused (`problem`, a local file) or
    left out (`photo_problem`, a URL)."""
    import pyarrow as pa

    from .photo_fetch import is_url, local_path

    refs = con.sql(f"SELECT DISTINCT image FROM {rows} WHERE reason IS NULL "
                   "AND image IS NOT NULL").to_arrow_table().column("image").to_pylist()
    urls = [ref for ref in refs if is_url(ref)]
    files = [ref for ref in refs if not is_url(ref)]

    def check(ref: str) -> tuple[str | None, str | None, str | None, tuple[int, int] | None]:
        try:
            candidate = local_path(ref)
            candidate = candidate if candidate.is_absolute() else plan.base / candidate
            size = check_image(candidate, plan.max_pixels)
            return str(candidate.resolve()), sha256_file(candidate), None, size
        except ImageRejected as exc:
            return None, None, f"image {ref[:200]}: {exc}", None
        except (OSError, ValueError) as exc:  # name too long, NUL byte, permission, ...
            reason = getattr(exc, "strerror", None) or first_line(exc, 120)
            return None, None, f"image {ref[:200]}: unreadable path ({reason})", None

    with ThreadPoolExecutor(max_workers=plan.threads) as pool:
        results = list(pool.map(check, files))
    con.register("local_images", pa.table({
        "ref": pa.array(files, pa.string()),
        "path": pa.array([r[0] for r in results], pa.string()),
        "sha256": pa.array([r[1] for r in results], pa.string()),
        "problem": pa.array([r[2] for r in results], pa.string()),
        "width": pa.array([r[3][0] if r[3] else None for r in results], pa.int32()),
        "height": pa.array([r[3][1] if r[3] else None for r in results], pa.int32()),
    }))
    if plan.photos is not None:
        fetched = plan.photos.fetch(urls)
        objects = str(plan.photos.root / "objects")
    else:
        fetched = pa.table({"url": pa.array(urls, pa.string()),
                            "sha256": pa.nulls(len(urls), pa.string()),
                            "width": pa.nulls(len(urls), pa.int32()),
                            "height": pa.nulls(len(urls), pa.int32()),
                            "problem": pa.array(["not fetched: no workspace to store photos"]
                                                * len(urls), pa.string())})
        objects = ""
    con.register("fetched_images", fetched)
    con.execute("""
        CREATE TEMP TABLE images AS
        SELECT ref, path, sha256, problem, NULL::VARCHAR AS photo_problem, width, height
        FROM local_images
        UNION ALL
        SELECT url, CASE WHEN sha256 IS NOT NULL
                         THEN $objects || '/' || left(sha256, 2) || '/' || sha256 END,
               sha256, NULL, problem, width, height
        FROM fetched_images""", {"objects": objects})
