"""A small grammar that describes a scene of one to three clothing items in words.

A scene is a list of items, each a dict with `noun` (one of NOUNS), `colour` (one of COLOURS) and `cell`
(0 top left, 1 top right, 2 bottom left, 3 bottom right: the quadrant of the 64x64 image it sits in).
The classes of a scene are distinct, so "the dress" always names one item. Five phrasings describe a
scene from different angles: the items with their colours, how many there are, where they are relative to
each other, where they are in the picture, and what colour each one is. A phrasing drops the colours when
they would make it longer than MAX_WORDS, so that `<START>` + words + `<END>` fits in 17 tokens.
"""

NOUNS = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
PLURAL_NOUNS = {"trousers"}  # "red trousers", "the trousers are red"

COLOURS = {
    "red": (0.92, 0.12, 0.10),
    "orange": (1.0, 0.55, 0.05),
    "yellow": (0.95, 0.90, 0.15),
    "green": (0.15, 0.75, 0.20),
    "blue": (0.15, 0.35, 0.95),
    "purple": (0.60, 0.20, 0.85),
    "pink": (1.0, 0.50, 0.75),
    "white": (0.95, 0.95, 0.95),
}
COLOUR_NAMES = list(COLOURS)

CELL_NAMES = ["top left", "top right", "bottom left", "bottom right"]
COUNT_WORDS = ["one", "two", "three"]
MAX_WORDS = 15  # 17 tokens with <START> and <END>

PHRASINGS = ("items", "count", "relative", "absolute", "colours")

# Every word a caption can use, for the vocabulary.
GLUE_WORDS = {
    "a",
    "an",
    "and",
    "with",
    "only",
    "picture",
    "of",
    "item",
    "items",
    "in",
    "the",
    "is",
    "are",
    "which",
    "left",
    "right",
    "above",
    "below",
}
WORDS = sorted(
    set(NOUNS)
    | set(COLOUR_NAMES)
    | set(COUNT_WORDS)
    | GLUE_WORDS
    | {w for c in CELL_NAMES for w in c.split()}
)


def row_col(cell):
    """Row (0 top, 1 bottom) and column (0 left, 1 right) of a quadrant."""
    return divmod(cell, 2)


def mention(item, colour=True):
    """'a red dress', 'an orange bag', 'red trousers', or without colour 'a dress', 'trousers'."""
    words = ([item["colour"]] if colour else []) + [item["noun"]]
    if item["noun"] in PLURAL_NOUNS:
        return " ".join(words)
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article] + words)


def join_list(parts, last_joiner="and"):
    """'x', 'x and y', 'x y and z' (no commas: the vocabulary has no punctuation)."""
    return parts[0] if len(parts) == 1 else " ".join(parts[:-1]) + f" {last_joiner} " + parts[-1]


def relation(a, b):
    """Where item a is relative to item b: 'left of', 'above', 'above and right of', ..."""
    (ra, ca), (rb, cb) = row_col(a["cell"]), row_col(b["cell"])
    vertical = "" if ra == rb else ("above" if ra < rb else "below")
    horizontal = "" if ca == cb else ("left of" if ca < cb else "right of")
    return " and ".join(w for w in (vertical, horizontal) if w)


def chain_order(items):
    """
    For three items, order them end - corner - end so that neighbours share a row or a column.

    Three distinct quadrants of a 2x2 grid always form an L; its corner shares a row with one item and a
    column with the other.
    """
    for corner in items:
        others = [it for it in items if it is not corner]
        shares = [
            row_col(o["cell"])[0] == row_col(corner["cell"])[0]
            or row_col(o["cell"])[1] == row_col(corner["cell"])[1]
            for o in others
        ]
        if all(shares):
            return [others[0], corner, others[1]]
    raise ValueError(f"cells {[it['cell'] for it in items]} do not form an L")


def phrase(items, kind, colour=True):
    """One caption of the scene, in the phrasing `kind` (one of PHRASINGS), with or without colours."""
    n = len(items)
    if kind == "items":
        mentions = [mention(it, colour) for it in items]
        if n == 1:
            return "only " + mentions[0]
        if n == 2:
            return f"{mentions[0]} and {mentions[1]}"
        return f"{mentions[0]} with {join_list(mentions[1:])}"
    if kind == "count":
        listed = join_list([mention(it, colour=False) for it in items])
        return f"a picture of {COUNT_WORDS[n - 1]} item{'s' if n > 1 else ''} {listed}"
    if kind == "relative":
        if n == 1:
            return f"{mention(items[0], colour)} in the {CELL_NAMES[items[0]['cell']]}"
        if n == 2:
            return f"{mention(items[0], colour)} {relation(items[0], items[1])} {mention(items[1], colour)}"
        a, b, c = chain_order(items)
        verb = "are" if b["noun"] in PLURAL_NOUNS else "is"
        return (
            f"{mention(a, colour)} {relation(a, b)} {mention(b, colour)} which {verb} {relation(b, c)} "
            f"{mention(c, colour)}"
        )
    if kind == "absolute":
        if n == 1:
            return f"in the {CELL_NAMES[items[0]['cell']]} {mention(items[0], colour)}"
        return join_list([f"{mention(it, colour)} {CELL_NAMES[it['cell']]}" for it in items])
    if kind == "colours":
        statements = [
            f"the {it['noun']} {'are' if it['noun'] in PLURAL_NOUNS else 'is'} {it['colour']}" for it in items
        ]
        return join_list(statements)
    raise ValueError(f"unknown phrasing {kind!r}: expected one of {PHRASINGS}")


def describe(items):
    """
    All phrasings of a scene, each as short as needed.

    Inputs:
    - items: list of 1 to 3 item dicts (noun, colour, cell), distinct nouns and cells, in any order.

    Returns:
    - captions: list of len(PHRASINGS) strings of at most MAX_WORDS words, in the order of PHRASINGS.
    """
    if (
        not 1 <= len(items) <= 3
        or len({it["noun"] for it in items}) != len(items)
        or len({it["cell"] for it in items}) != len(items)
    ):
        raise ValueError(f"a scene holds 1 to 3 items of distinct classes in distinct cells; got {items}")
    items = sorted(items, key=lambda it: it["cell"])  # reading order
    captions = []
    for kind in PHRASINGS:
        caption = phrase(items, kind)
        if len(caption.split()) > MAX_WORDS:
            caption = phrase(items, kind, colour=False)
        if len(caption.split()) > MAX_WORDS:
            raise AssertionError(f"the {kind} phrasing of {items} has more than {MAX_WORDS} words: {caption}")
        captions.append(caption)
    return captions
