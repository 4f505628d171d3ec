"""General shopping vocabulary: colour, material, quality and condition words.

These are English words for any home or fashion catalog, not a list fitted to one test
catalog; each catalog adds its own values (the `color` column, titles, descriptions) on
top. The assistant reads requests with them and the grounding guard checks claims with
them: a descriptive word about a product must be in that product's row.
"""

from __future__ import annotations

import re


def _vocabulary(text: str) -> frozenset[str]:
    return frozenset(text.split())

# Words that are also things ("coffee table", "wine glass", "stone vase") are left out.
COLOURS = _vocabulary("""
black white grey gray silver charcoal graphite anthracite beige cream ivory off-white ecru
sand taupe oatmeal brown cognac caramel tan camel rust terracotta gold golden red crimson
burgundy berry maroon coral salmon pink blush fuchsia magenta purple violet lilac lavender
aubergine mauve orange apricot mustard ochre yellow green sage olive khaki emerald teal
turquoise aqua blue navy cobalt indigo azure multicolour multicolor natural oak walnut
""")

MATERIALS = _vocabulary("""
oak walnut pine beech birch ash teak mango acacia bamboo rattan cane wicker jute sisal
seagrass wood wooden plywood mdf veneer metal steel iron aluminium aluminum brass copper
chrome bronze glass marble granite stone concrete terrazzo ceramic porcelain stoneware
earthenware clay terracotta linen cotton wool velvet boucle bouclé leather suede faux-leather
polyester nylon acrylic silk satin chenille corduroy tweed felt fleece jersey denim canvas
plastic resin rubber foam latex down feather cashmere mohair hemp
""")

# A family word is supported by any of its members: "wood" by an oak row.
FAMILIES = {
    "wood": _vocabulary("oak walnut pine beech birch ash teak mango acacia bamboo plywood "
                        "veneer"),
    "metal": _vocabulary("steel iron aluminium aluminum brass copper chrome bronze"),
}
FAMILIES["wooden"] = FAMILIES["wood"]
FAMILIES["metallic"] = FAMILIES["metal"]

# Claims about quality or condition that only the row itself can make.
QUALITY = _vocabulary("""
durable sturdy robust solid long-lasting hard-wearing premium luxury luxurious high-quality
handmade handcrafted hand-made artisan bespoke waterproof water-resistant weatherproof
stain-resistant scratch-resistant eco-friendly sustainable organic recycled vegan certified
award-winning bestselling best-selling best-seller new brand-new used refurbished vintage
antique damaged defective second-hand pre-owned imported genuine authentic original
warranty guaranteed high-end top-quality well-made well-built heavy-duty lightweight
hypoallergenic washable machine-washable ergonomic adjustable foldable stackable extendable
removable reversible comfortable supportive
""")

# Words that make a message about shopping for a home even when nothing matches it.
SHOPPING_WORDS = _vocabulary("""
buy purchase order shop shopping find need want looking recommend suggest price cheap
cheaper expensive budget gift furniture decor home house flat apartment room bedroom
bathroom kitchen hallway office garden balcony living dining nursery
""")

# Stock and delivery claims: only a row's own `availability` (or text) can support them.
AVAILABILITY = re.compile(
    r"\b(in stock|out of stock|sold out|available now|available in|ships? (?:today|"
    r"tomorrow|free|within|in \d)|free (?:shipping|delivery)|next[- ]day delivery|"
    r"back in stock|limited stock|only \d+ left|pre-?order|discontinued|on sale)\b",
    re.IGNORECASE)

# Sizes and dimensions: a number with a unit ("180 cm", "2 m", "6-seater", "queen size").
DIMENSION = re.compile(r"\b\d+(?:[.,]\d+)?\s?(?:\"|(?:cm|mm|m|in|inch|inches|ft|-seater|"
                       r"seater|l|litres?|liters?)\b)|\b(?:king|queen|double|single)[- ]size\b",
                       re.IGNORECASE)


def words(text: str) -> set[str]:
    """Lower-case words of `text`, hyphenated ones both whole and split."""
    found = set(re.findall(r"[a-zà-ÿ]+(?:-[a-zà-ÿ]+)*", text.lower()))
    return found | {part for word in found if "-" in word for part in word.split("-")}
