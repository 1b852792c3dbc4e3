"""Recall and false positives of sanctions screening on a generated list and test set.

``python -m bench.sanctions_eval [--seed N] [--size N] [--listed N] [--clean N]
[--threshold N]``: builds a list of ``size`` entries (``screening.samples``),
screens ``listed`` variants of listed names (transliterated, respelled,
swapped, with a typo, initials, punctuation) and ``clean`` names close to
listed ones, and prints recall (variants caught by the entry they stand for)
and the false-positive rate (clean names that hit), overall and per kind.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from screening.matcher import Screener
from screening.samples import Variant, evaluation_set, sample_list
from screening.sdn import SanctionsList

DEFAULT_THRESHOLD = 90


@dataclass
class Evaluation:
    caught: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    flagged: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    totals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    listed: int = 0
    clean: int = 0
    misses: list[str] = field(default_factory=list)
    false_hits: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return sum(self.caught.values()) / self.listed if self.listed else 0.0

    @property
    def false_positive_rate(self) -> float:
        return sum(self.flagged.values()) / self.clean if self.clean else 0.0


def evaluate(screener: Screener, variants: Sequence[Variant]) -> Evaluation:
    result = Evaluation()
    for variant in variants:
        screening = screener.screen(variant.name)
        result.totals[variant.kind] += 1
        if variant.listed:
            result.listed += 1
            if screening.match is not None and screening.match.entry_uid == variant.entry_uid:
                result.caught[variant.kind] += 1
            else:
                result.misses.append(f"{variant.kind}: {variant.name} ({screening.score})")
        else:
            result.clean += 1
            if screening.hit:
                result.flagged[variant.kind] += 1
                assert screening.match is not None
                result.false_hits.append(
                    f"{variant.kind}: {variant.name} ~ {screening.match.matched_name} "
                    f"({screening.score})"
                )
    return result


def run(seed: int, size: int, listed: int, clean: int, threshold: int) -> Evaluation:
    sample = sample_list(seed, size)
    screener = Screener(SanctionsList(f"sample-{seed}", sample.entries), threshold)
    return evaluate(screener, evaluation_set(sample, seed + 1, listed, clean))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="sanctions screening: recall and false positives")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--listed", type=int, default=1200)
    parser.add_argument("--clean", type=int, default=1200)
    parser.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD)
    parser.add_argument("--show", type=int, default=5, help="examples of misses and false hits")
    args = parser.parse_args(argv)
    result = run(args.seed, args.size, args.listed, args.clean, args.threshold)
    print(
        f"list {args.size} entries (seed {args.seed}), threshold {args.threshold}: "
        f"recall {result.recall:.3f} ({sum(result.caught.values())}/{result.listed}), "
        f"false-positive rate {result.false_positive_rate:.3f} "
        f"({sum(result.flagged.values())}/{result.clean})"
    )
    for kind, total in sorted(result.totals.items()):
        hits = result.caught.get(kind, 0) or result.flagged.get(kind, 0)
        label = (
            "caught"
            if kind in result.caught or any(m.startswith(kind + ":") for m in result.misses)
            else "flagged"
        )
        print(f"  {kind:15} {label:8} {hits}/{total}")
    for line in result.misses[: args.show]:
        print("  missed:", line)
    for line in result.false_hits[: args.show]:
        print("  false hit:", line)


if __name__ == "__main__":
    main()
