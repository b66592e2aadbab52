#!/usr/bin/env python3
"""Synthesise the example pack's audio assets (music loops and sound effects).

Deterministic: the same script always writes the same bytes, so the committed
files can be checked with `--check`. Standard library only.

    python3 scripts/gen_audio.py            # (re)write the files
    python3 scripts/gen_audio.py --check    # exit 1 if a committed file differs
"""

import io
import math
import random
import struct
import sys
import wave
from pathlib import Path

RATE = 16000
PACK = Path(__file__).resolve().parent.parent / "examples" / "genre_packs" / "ashfall" / "audio"
TAU = 2 * math.pi


def envelope(n, attack, release):
    """Linear attack/release in samples, so loops start and end at zero."""
    out = []
    for i in range(n):
        g = 1.0
        if i < attack:
            g = i / attack
        if i > n - release:
            g = min(g, (n - i) / release)
        out.append(g)
    return out


class Noise:
    """Seeded white noise with a one-pole low-pass."""

    def __init__(self, seed, cutoff_hz):
        self.rng = random.Random(seed)
        self.a = math.exp(-TAU * cutoff_hz / RATE)
        self.y = 0.0

    def next(self):
        x = self.rng.uniform(-1.0, 1.0)
        self.y = (1 - self.a) * x + self.a * self.y
        return self.y


def drone(seconds, freqs, seed, wind=0.0, lfo_hz=0.1):
    n = int(seconds * RATE)
    noise = Noise(seed, 400)
    env = envelope(n, RATE // 2, RATE // 2)
    out = []
    for i in range(n):
        t = i / RATE
        lfo = 0.75 + 0.25 * math.sin(TAU * lfo_hz * t)
        s = sum(math.sin(TAU * f * t) / (k + 1) for k, f in enumerate(freqs)) / len(freqs)
        s = 0.6 * s * lfo + wind * noise.next() * 3.0 * (0.6 + 0.4 * math.sin(TAU * 0.23 * t))
        out.append(s * env[i])
    return out


def drums(seconds, bpm, seed, bass=55.0):
    n = int(seconds * RATE)
    beat = 60.0 / bpm
    noise = Noise(seed, 3000)
    env = envelope(n, 200, RATE // 4)
    out = []
    for i in range(n):
        t = i / RATE
        pos = t % beat
        idx = int(t / beat)
        kick = math.sin(TAU * (50 + 80 * math.exp(-pos * 30)) * pos) * math.exp(-pos * 8)
        snare = noise.next() * 2.5 * math.exp(-pos * 18) if idx % 2 == 1 else 0.0
        pad = 0.15 * math.sin(TAU * bass * t) + 0.1 * math.sin(TAU * bass * 1.5 * t)
        out.append((0.7 * kick + 0.4 * snare + pad) * env[i])
    return out


def embers(seconds, seed):
    n = int(seconds * RATE)
    rng = random.Random(seed)
    env = envelope(n, RATE, RATE)
    pops = set(rng.randrange(n) for _ in range(int(seconds * 6)))
    out = []
    crackle = 0.0
    for i in range(n):
        t = i / RATE
        pad = (math.sin(TAU * 196 * t) + 0.8 * math.sin(TAU * 246.9 * t) + 0.6 * math.sin(TAU * 293.7 * t)) / 2.4
        if i in pops:
            crackle = rng.uniform(0.5, 1.0)
        crackle *= 0.995
        out.append((0.35 * pad + 0.3 * crackle * rng.uniform(-1, 1)) * env[i])
    return out


def burst(seconds, seed, cutoff, decay, tone=0.0, tone_decay=0.0):
    n = int(seconds * RATE)
    noise = Noise(seed, cutoff)
    out = []
    for i in range(n):
        t = i / RATE
        s = noise.next() * 3.0 * math.exp(-t * decay)
        if tone:
            s += 0.5 * math.sin(TAU * tone * t) * math.exp(-t * tone_decay)
        out.append(s * min(1.0, i / 40.0) * min(1.0, (n - i) / 400.0))
    return out


def clash(seed):
    n = int(0.9 * RATE)
    rng = random.Random(seed)
    partials = [(1187.0, 1.0), (2411.0, 0.6), (3530.0, 0.4), (5120.0, 0.25)]
    out = []
    for i in range(n):
        t = i / RATE
        s = sum(a * math.sin(TAU * f * t) for f, a in partials) * math.exp(-t * 5)
        s += rng.uniform(-1, 1) * math.exp(-t * 60)
        out.append(0.5 * s * min(1.0, i / 20.0) * min(1.0, (n - i) / 400.0))
    return out


def footsteps(seed):
    n = int(1.6 * RATE)
    noise = Noise(seed, 900)
    out = []
    for i in range(n):
        t = i / RATE
        pos = t % 0.4
        out.append(noise.next() * 3.5 * math.exp(-pos * 40) * min(1.0, (n - i) / 400.0))
    return out


def normalise(samples, peak=0.8):
    m = max(abs(s) for s in samples) or 1.0
    return [s * peak / m for s in samples]


def wav_bytes(samples):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", int(max(-1.0, min(1.0, s)) * 32767)) for s in samples))
    return buf.getvalue()


ASSETS = {
    "music/exploration_glass_road.wav": lambda: drone(6, [110, 164.8, 220], 1, wind=0.15),
    "music/exploration_ash_wind.wav": lambda: drone(6, [98, 146.8], 2, wind=0.35, lfo_hz=0.07),
    "music/combat_cinder_drums.wav": lambda: drums(6, 132, 3),
    "music/tension_rumble.wav": lambda: drone(6, [41.2, 43.6, 82.4], 4, wind=0.2, lfo_hz=1.5),
    "music/ruins_hollow.wav": lambda: drone(6, [146.8, 155.6, 220], 5, wind=0.1, lfo_hz=0.2),
    "music/rest_embers.wav": lambda: embers(6, 6),
    "music/eruption_quake.wav": lambda: [a + b for a, b in zip(drums(5, 140, 7, bass=36.7), drone(5, [36.7, 55], 8, wind=0.5))],
    "music/siege_full.wav": lambda: drums(5, 120, 9, bass=73.4),
    "music/siege_ambient.wav": lambda: drone(5, [73.4, 110], 10, wind=0.25, lfo_hz=0.3),
    "music/siege_resolution.wav": lambda: drone(5, [146.8, 185, 220], 11, lfo_hz=0.05),
    "sfx/sword_clash.wav": lambda: clash(12),
    "sfx/explosion.wav": lambda: burst(1.5, 13, 300, 3.0, tone=45, tone_decay=4),
    "sfx/footsteps.wav": lambda: footsteps(14),
    "sfx/fire_crackle.wav": lambda: embers(2, 15),
    "sfx/thunder.wav": lambda: burst(2.0, 16, 150, 1.8, tone=30, tone_decay=2),
}


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for rel, make in ASSETS.items():
        data = wav_bytes(normalise(make()))
        path = PACK / rel
        if check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        print(f"wrote {path.relative_to(PACK.parent)} ({len(data)} bytes)")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
