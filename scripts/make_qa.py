"""Question-answering stories in the spirit of bAbI tasks 1 and 2 (Weston et al. 2015), as a
two-column TSV for `task: seq2seq`: the story and the question in `source`, the one-word answer
in `target` (plus a `task` column saying which task a row is).

- Task 1, single supporting fact: people move between places; "Where is Mary?" is answered by
  the last sentence that moved Mary.
- Task 2, two supporting facts: people also pick up and drop objects; "Where is the milk?"
  needs the sentence that put the milk in someone's hands (or dropped it) and the one that last
  moved that person.

The vocabulary, sentence forms and story lengths follow the published tasks (four people, six
places, six objects, several verbs for each action), but the stories are generated here: the
figures are not those of the bAbI files. Every question has exactly one right answer.

    python scripts/make_qa.py --out data/qa-babi.tsv                       # both tasks, seed 0
    python scripts/make_qa.py --tasks 2 --questions 1000 --seed 7 --out fresh.tsv   # unseen stories
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

PEOPLE = ["Mary", "John", "Daniel", "Sandra"]
PLACES = ["bathroom", "hallway", "garden", "office", "bedroom", "kitchen"]
OBJECTS = ["football", "apple", "milk", "ball", "book", "key"]
MOVES = ["moved to", "went to", "travelled to", "journeyed to", "went back to"]
TAKES = ["picked up", "got", "grabbed", "took"]
DROPS = ["dropped", "discarded", "put down", "left"]


class World:
    """Where each person is, and who holds or where lies each object (None: not yet said)."""

    def __init__(self) -> None:
        self.person_at: dict[str, str | None] = dict.fromkeys(PEOPLE)
        self.holder: dict[str, str | None] = dict.fromkeys(OBJECTS)
        self.object_at: dict[str, str | None] = dict.fromkeys(OBJECTS)

    def where_object(self, thing: str) -> str | None:
        holder = self.holder[thing]
        return self.person_at[holder] if holder else self.object_at[thing]

    def move(self, rng: random.Random) -> str:
        person = rng.choice(PEOPLE)
        place = rng.choice([p for p in PLACES if p != self.person_at[person]])
        self.person_at[person] = place
        return f"{person} {rng.choice(MOVES)} the {place}."

    def take_or_drop(self, rng: random.Random) -> str | None:
        """A person with a known place picks up a free object there, or drops one they hold."""
        placed = [p for p in PEOPLE if self.person_at[p]]
        if not placed:
            return None
        person = rng.choice(placed)
        held = [t for t in OBJECTS if self.holder[t] == person]
        if held and rng.random() < 0.5:
            thing = rng.choice(held)
            self.holder[thing], self.object_at[thing] = None, self.person_at[person]
            return f"{person} {rng.choice(DROPS)} the {thing}."
        free = [t for t in OBJECTS if self.holder[t] is None and self.object_at[t] in (None, self.person_at[person])]
        if not free or len(held) >= 2:
            return None
        thing = rng.choice(free)
        self.holder[thing] = person
        return f"{person} {rng.choice(TAKES)} the {thing} there."


def story(task: int, rng: random.Random) -> tuple[str, str]:
    """One story with its question at the end, and the answer."""
    world, sentences = World(), []
    length = rng.randint(2, 8) if task == 1 else rng.randint(4, 12)
    while True:
        while len(sentences) < length:
            sentence = world.move(rng) if task == 1 or rng.random() < 0.55 else world.take_or_drop(rng)
            if sentence:
                sentences.append(sentence)
        if task == 1:
            asked = [p for p in PEOPLE if world.person_at[p]]
            person = rng.choice(asked)
            return " ".join(sentences + [f"Where is {person}?"]), world.person_at[person]
        known = [t for t in OBJECTS if world.holder[t] and world.where_object(t)]  # held: two facts needed
        known += [t for t in OBJECTS if not world.holder[t] and world.object_at[t]]
        if known:
            thing = rng.choice(known)
            return " ".join(sentences + [f"Where is the {thing}?"]), world.where_object(thing)
        length += 2  # nothing located yet: tell more


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", choices=(1, 2), default=[1, 2], help="which tasks (default: 1 2)")
    parser.add_argument("--questions", type=int, default=4000, help="questions per task (default: 4000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--out", type=Path, required=True, help="TSV to write (source, target, task)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    rows = [(*story(task, rng), f"qa{task}") for task in args.tasks for _ in range(args.questions)]
    rng.shuffle(rows)
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["source", "target", "task"])
        writer.writerows(rows)
    print(f"{len(rows):,} questions written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
