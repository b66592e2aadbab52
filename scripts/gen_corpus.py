#!/usr/bin/env python3
"""Compose the narration corpus used by `cargo bench --bench interpret`.

Sentences are written for six settings; paragraphs combine two to four of
them (plus the odd dialogue line, document or dice readout), deterministically.
"""

import random
from pathlib import Path

GENRES = {
    "ashfall": [
        "You enter the ruined chapel as ash drifts through the broken roof.",
        "The glass road glitters under a slate-grey sky.",
        "Warden Varr draws her sword and steps into the gatehouse.",
        "A tall stranger in a soot-stained cloak watches from the forge, a burn scar across his jaw.",
        "The forge roars; sparks spill across the anvil.",
        "Somewhere below, the mountain rumbles and the lanterns flicker.",
        "You arrive at the ash market, where traders haggle over coal.",
        "The envoy's brazier-pendant glows like a coal in the dusk.",
        "A notice is nailed to the waystation door: NO FIRE AFTER DARK.",
        "Mira lunges at the raider, her blade flashing in the ember light.",
        "The bell tower leans over the drifts, silent and cold.",
        "Steam rises from the rift beneath the Glass Gate.",
    ],
    "frontier": [
        "You ride into the dusty town of Coldwater as the sun sets.",
        "The saloon doors swing open and a grizzled man with a long scar leans on the bar.",
        "Rux attacks the bandit with a rusted knife.",
        "Wind howls across the empty plain, rolling tumbleweeds past the depot.",
        "A wanted poster flutters on the sheriff's board.",
        "The piano player stops mid-song as everyone turns to look.",
        "You head toward the canyon trail where the stagecoach vanished.",
        "Thunder cracks over the mesa and the horses shy.",
        "The old prospector counts his coins twice before paying.",
        "Dust settles over the abandoned mine entrance.",
    ],
    "starfall": [
        "The airlock hisses open and you step into the derelict freighter.",
        "Emergency lights pulse red along the corridor.",
        "A cyborg with a chrome jaw and one glowing eye blocks the hatch.",
        "Plasma fire scorches the bulkhead as Mira returns fire with her pistol.",
        "The ship's computer beeps an urgent warning about radiation in the reactor.",
        "You cross into the hydroponics bay, where overgrown vines choke the vents.",
        "The pilot's voice crackles over the comm: hold position.",
        "Stars wheel slowly past the observation deck.",
        "A mutant slime oozes from a cracked containment tank.",
        "The engine hum deepens as the thrusters fire.",
    ],
    "hollow": [
        "Fog rolls in over the graveyard and the candles gutter.",
        "You come upon a chapel whose doors hang open on rusted hinges.",
        "She felt a sense of dread as if the walls were closing in.",
        "The arcane glyphs shimmer and a portal tears open above the altar.",
        "A priestess in a white robe kneels before the shrine, her hands bound with silver thread.",
        "Shadows creep along the dark corridor.",
        "The ritual chant rises as the acolytes invoke something old.",
        "Moonlight silvers the standing stones on the hill.",
        "A letter sealed with black wax lies on the desk.",
        "Somewhere a child laughs, and then the silence returns.",
    ],
    "neon": [
        "Rain streaks the neon signs of the night market.",
        "A fixer with a cybernetic arm and mirrored visor waves you into the booth.",
        "You hack the terminal and the console floods with green text.",
        "The jazz trio plays on while the bartender polishes a glass.",
        "A drone zaps past, electric sparks trailing from its rotor.",
        "You walk through the crowded arcade toward the back room.",
        "The corporate guard charges at you, shock baton raised.",
        "Smoke curls from a street vendor's grill.",
        "An encrypted message blinks on your wrist display.",
        "The generator hum drowns out the traffic below.",
    ],
    "greenwood": [
        "You wander the mossy forest path as birdsong fills the oaks.",
        "The elf elder leans on her staff, her grey hair braided with feathers.",
        "A stream chatters over stones near the campfire.",
        "The party rests under the stars, wrapped in blankets.",
        "Orcs charge from the treeline, axes raised.",
        "The village market bustles with traders and their carts.",
        "You reach the ancient oak where the druids gather.",
        "Dawn breaks warm and golden over the meadow.",
        "A dragon's roar echoes from the mountains and flames light the horizon.",
        "Victory! The villagers celebrate with music and mead.",
    ],
}

EXTRAS = [
    '"Get out," she says.',
    '"Who goes there?" the guard asks.',
    "Rux's HP: 12 → 7 HP [Attack d20: 15 vs AC 12 HIT].",
    '[DOCUMENT:notice:"Curfew"]All lanterns out by the second bell.[/DOCUMENT]',
    "YOUR TURN",
    "You add the rope to your inventory.",
    "'Keep moving,' Mira whispers, 'they're close.'",
]


def main():
    rng = random.Random(2026)
    paragraphs = []
    names = list(GENRES)
    for i in range(240):
        genre = GENRES[names[i % len(names)]]
        parts = rng.sample(genre, rng.randint(2, 4))
        if rng.random() < 0.25:
            parts.insert(rng.randrange(len(parts) + 1), rng.choice(EXTRAS))
        paragraphs.append(" ".join(parts))
    out = Path(__file__).resolve().parent.parent / "benches" / "data" / "narration.txt"
    out.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")
    print(f"wrote {len(paragraphs)} paragraphs to {out}")


if __name__ == "__main__":
    main()
