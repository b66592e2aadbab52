#!/usr/bin/env python3
"""Reference vectors for the embedding tests, from the reference
implementation: sentence-transformers on CPU, one text at a time.

    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    /tmp/st/bin/python scripts/embed_reference.py [MODEL_DIR]

MODEL_DIR defaults to .models/all-MiniLM-L6-v2 (scripts/fetch-embed-model).
Writes tests/data/embed_reference.jsonl: {"text": ..., "embedding": [384]}.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LORE = (
    "The Cinder Reach lies on the flank of Mount Harrow, where ash falls like snow and the "
    "glass roads glitter under a slate-grey sky. Thirty years after the Waking, the walled "
    "forge-towns still keep their fires lit against the dark, trading heat like coin. Between "
    "them lie buried villages, steaming rifts and the tithe-collectors of the Ember Court, "
    "who ride in red silk with braziers smouldering at their throats. "
)

TEXTS = [
    # Short phrases and single words.
    "ash", "forge", "dragon", "Harrowgate", "the glass gate", "a red envoy", "cold iron",
    "hello world", "sword", "lantern light",
    # Typical lore sentences.
    "The ruins crumble in the wasteland wind.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The stock market fell sharply.",
    "Warden Isolde Varr commands the wall of Harrowgate.",
    "The Ember Court collects its tithe in coal and secrets.",
    "Ro the Tinker grinds lenses from volcanic glass.",
    "A stone chapel lies buried to its window-arches in grey ash.",
    "Steam rises from the rift beneath the Glass Gate.",
    "The forge-towns trade heat like coin during the long winter.",
    "Smugglers move black powder along the old mule trails at night.",
    "The bell tower leans over the drifts, silent and cold.",
    "Nobody remembers who first paved the roads with glass.",
    "When the mountain rumbles, the lanterns flicker in every window.",
    "The guild of cartographers redraws the coast after every quake.",
    "She keeps a ledger of debts owed to the dead.",
    "Raiders from the salt flats strike the caravans at dusk.",
    "The healer's tent smells of smoke, vinegar and boiled linen.",
    "An abandoned mine entrance breathes warm air into the snow.",
    "The envoy's smile never reaches his ash-lined eyes.",
    # Longer than 256 tokens (truncation) and about 200 tokens (not truncated).
    LORE * 6,
    LORE * 2 + "The end of the second telling.",
    # Accents and non-Latin scripts.
    "Café déjà vu", "Über den Wolken", "naïve façade of the château", "東京の夜",
    "Москва никогда не спит", "مرحبا بالعالم", "Ελληνικά γράμματα", "ﬁve ligatures ﬂow",
    # Emoji.
    "🔥 the forge is lit 🔥", "🐉", "rain 🌧️ and thunder ⚡",
    # Punctuation only.
    "!!!", "...", "?!?!", "—",
    # Mixed case.
    "THE RUINS CRUMBLE", "tHe RuInS cRuMbLe", "McAllister's FORGE at NightFall",
    # Tabs and newlines.
    "line one\nline two", "tab\tseparated\tvalues", "  leading and trailing spaces  ",
    "multiple\n\n\nblank lines\n",
    # Numbers and mixed content.
    "Roll 2d6+3 for damage", "In 1066, the year of the comet", "HP: 12 → 7",
    "email someone@example.invalid about the map",
    # Control characters.
    "bell\x07character", "nul\x00inside",
]


def main():
    from sentence_transformers import SentenceTransformer

    model_dir = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / ".models" / "all-MiniLM-L6-v2")
    model = SentenceTransformer(model_dir, device="cpu")
    out = ROOT / "tests" / "data" / "embed_reference.jsonl"
    with out.open("w", encoding="utf-8") as f:
        for text in TEXTS:
            vec = model.encode(text, convert_to_numpy=True)
            f.write(json.dumps({"text": text, "embedding": [float(x) for x in vec]}, ensure_ascii=False) + "\n")
    print(f"wrote {len(TEXTS)} reference vectors to {out}")


if __name__ == "__main__":
    main()
