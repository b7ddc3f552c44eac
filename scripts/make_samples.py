"""Build the committed corpus samples from ../shared/data/debtags-bookworm.parquet.

    python scripts/make_samples.py [SOURCE]

Writes data/demo/debtags-demo.parquet (the demo corpus) and data/bench/debtags-500.parquet (the
teacher-throughput benchmark's 500 documents): columns id (package), text, tags (the package's
tags restricted to the 12-label public taxonomy, the gold labels). A fixed seed makes the
samples reproducible; 80% of each sample carries at least one public label.

Also writes data/bench/debtags-quality.parquet (the quality benchmark's 3,500 documents, with a
`split` column): 500 "gold" rows (the held-out gold) and 3,000 "train" rows, both drawn from the
packages that carry at least one public label (see quality_sample). It is disjoint from the two
samples above and drawn with its own seed, so adding it left them unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PUBLIC_TAXONOMY = [
    "interface::commandline",
    "interface::graphical",
    "interface::daemon",
    "use::gameplaying",
    "use::converting",
    "use::editing",
    "use::viewing",
    "works-with::text",
    "works-with::audio",
    "works-with::image",
    "network::server",
    "network::client",
]


def sample(table: pa.Table, n: int, rng: np.random.Generator, exclude: set[str]) -> pa.Table:
    public = set(PUBLIC_TAXONOMY)
    tags = [[t for t in row if t in public] for row in table["tags"].to_pylist()]
    packages = table["package"].to_pylist()
    labeled = [i for i, t in enumerate(tags) if t and packages[i] not in exclude]
    unlabeled = [i for i, t in enumerate(tags) if not t and packages[i] not in exclude]
    n_labeled = int(n * 0.8)
    chosen = np.concatenate(
        [
            rng.choice(labeled, n_labeled, replace=False),
            rng.choice(unlabeled, n - n_labeled, replace=False),
        ]
    )
    chosen.sort()
    return pa.table(
        {
            "id": [packages[i] for i in chosen],
            "text": [table["text"][int(i)].as_py() for i in chosen],
            "tags": pa.array([tags[i] for i in chosen], pa.list_(pa.string())),
        }
    )


def quality_sample(
    table: pa.Table, n_gold: int, n_train: int, rng: np.random.Generator, exclude: set[str]
) -> pa.Table:
    """n_gold rows (split "gold") + n_train rows (split "train"), disjoint, from ONE population.

    Both splits are drawn from the packages that carry at least one public label: their public
    facets were reviewed, so their tags are the most complete gold there is (a package without
    any is mostly "not reviewed"). This is the population of the data README's TF-IDF reference
    (trained and tested on labeled packages), and drawing train and gold alike keeps label
    priors learned on the training documents valid on the gold documents.
    """
    public = set(PUBLIC_TAXONOMY)
    tags = [[t for t in row if t in public] for row in table["tags"].to_pylist()]
    packages = table["package"].to_pylist()
    labeled = [i for i, t in enumerate(tags) if t and packages[i] not in exclude]
    chosen = rng.choice(labeled, n_gold + n_train, replace=False)
    split = np.array(["gold"] * n_gold + ["train"] * n_train)
    order = np.argsort(chosen)
    chosen, split = chosen[order], split[order]
    return pa.table(
        {
            "id": [packages[i] for i in chosen],
            "text": [table["text"][int(i)].as_py() for i in chosen],
            "tags": pa.array([tags[i] for i in chosen], pa.list_(pa.string())),
            "split": split.tolist(),
        }
    )


def main() -> None:
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/debtags-bookworm.parquet")
    table = pq.read_table(source)
    rng = np.random.default_rng(20261122)
    demo = sample(table, 200, rng, set())
    bench = sample(table, 500, rng, set(demo["id"].to_pylist()))
    taken = set(demo["id"].to_pylist()) | set(bench["id"].to_pylist())
    quality = quality_sample(table, 500, 3000, np.random.default_rng(20261123), taken)
    for path, part in (
        (Path("data/demo/debtags-demo.parquet"), demo),
        (Path("data/bench/debtags-500.parquet"), bench),
        (Path("data/bench/debtags-quality.parquet"), quality),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, path, compression="zstd")
        print(path, part.num_rows, "rows")


if __name__ == "__main__":
    main()
