"""Writes films.jsonl, the demo catalogue: invented films and series, the same every run.

    .venv/bin/python services/search/src/marquee_search/demo/generate.py

Titles, people and synopses are made up from the word lists below (a fixed
seed), so the file holds no real catalogue data. The schema is schema.json.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

COUNT = 240
SEED = 13

ADJECTIVES = [
    "Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Distant", "Frozen",
    "Wild", "Electric", "Paper", "Midnight", "Hollow", "Velvet", "Burning", "Lost",
    "Quiet", "Iron", "Glass", "Northern", "Little", "Endless", "Secret", "Falling",
]  # fmt: skip
NOUNS = [
    "Harbor", "Orchard", "Lantern", "Comet", "Garden", "Empire", "River", "Mirror",
    "Station", "Valley", "Kingdom", "Signal", "Voyage", "Circus", "Island", "Tower",
    "Winter", "Horizon", "Archive", "Carousel", "Meadow", "Frontier", "Chorus", "Tide",
]  # fmt: skip
PATTERNS = [
    "The {adj} {noun}", "{adj} {noun}", "A {noun} in {place}", "The {noun} of {place}",
    "{noun}s", "Return to {place}", "The {adj} {noun}s", "Beyond the {noun}",
]  # fmt: skip
PLACES = [
    "Marrow Bay", "Elsinore Flats", "Kestrel Point", "Old Vantar", "Lumen City",
    "Brightwater", "Corvo", "Saint Alder", "Port Quill", "the Dunes",
]  # fmt: skip
GIVEN = [
    "Ada", "Bruno", "Celia", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Kaito", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Soren", "Tamsin",
]  # fmt: skip
FAMILY = [
    "Albrecht", "Bellamy", "Castell", "Dufresne", "Engström", "Ferraro", "Garnier",
    "Halloran", "Ivanova", "Jarvinen", "Kowalczyk", "Lindqvist", "Moreau", "Novak",
]  # fmt: skip
GENRES = [
    "drama", "comedy", "thriller", "science fiction", "fantasy", "mystery", "romance",
    "documentary", "animation", "adventure", "horror", "crime",
]  # fmt: skip
LANGUAGES = ["English", "French", "Spanish", "German", "Japanese", "Italian", "Korean", "Swedish"]
VERBS = ["uncovers", "chases", "guards", "loses", "rebuilds", "remembers", "escapes", "inherits"]
OBJECTS = [
    "a forgotten map", "the family's last secret", "a stolen melody", "an impossible letter",
    "the lighthouse keeper's diary", "a city that moves at night", "a debt to a stranger",
]  # fmt: skip
WHO = ["a retired detective", "two estranged sisters", "a young cartographer",
       "a travelling band", "an exiled chef", "a night-shift nurse", "a clockmaker"]  # fmt: skip


def catalogue() -> list[dict[str, object]]:
    # Reproducible demo data, not a secret.
    rng = random.Random(SEED)  # nosec B311
    seen: set[str] = set()
    items: list[dict[str, object]] = []
    while len(items) < COUNT:
        title = rng.choice(PATTERNS).format(
            adj=rng.choice(ADJECTIVES), noun=rng.choice(NOUNS), place=rng.choice(PLACES)
        )
        if title in seen:
            continue
        seen.add(title)
        series = rng.random() < 0.3
        year = rng.randint(1962, 2025)
        item: dict[str, object] = {
            "id": f"{'s' if series else 'f'}{len(items) + 1:03d}",
            "title": title,
            "kind": "series" if series else "film",
            "genres": sorted(rng.sample(GENRES, rng.randint(1, 3))),
            "year": year,
            "rating": round(rng.uniform(4.5, 9.6), 1),
            "language": rng.choice(LANGUAGES),
            "director": f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}",
            "cast": [f"{rng.choice(GIVEN)} {rng.choice(FAMILY)}" for _ in range(3)],
            "synopsis": (
                f"{rng.choice(WHO).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
                f"in {rng.choice(PLACES)}."
            ),
        }
        if series:
            item["seasons"] = rng.randint(1, 8)
        else:
            item["runtime_minutes"] = rng.randint(78, 171)
        items.append(item)
    return items


def main() -> None:
    path = Path(__file__).with_name("films.jsonl")
    with path.open("w", encoding="utf-8") as out:
        for item in catalogue():
            out.write(json.dumps(item, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
