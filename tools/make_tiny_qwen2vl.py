"""Write the tiny random-weight Qwen2-VL (model, processor, tokenizer) to a directory.

    python tools/make_tiny_qwen2vl.py OUT_DIR [--seed 0] [--full-size]

The result loads with ``from_pretrained(OUT_DIR)`` like real weights, e.g.
``vlagent run --policy qwen2vl --model OUT_DIR ...``. ``--full-size`` writes Qwen2-VL-2B's
architecture with random weights (~9 GB in float32) for speed measurements. Nothing is
downloaded.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from vlagent.policies.tiny import build_tiny_qwen2vl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-size", action="store_true", help="Qwen2-VL-2B's architecture, random weights")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    path = build_tiny_qwen2vl(args.out, seed=args.seed, full_size=args.full_size)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    print(f"wrote {path} ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
