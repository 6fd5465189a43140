#!/usr/bin/python3
"""Compare two .npy arrays (A = reference, B = candidate) with a tolerance relative to max|A|.

    compare_npy.py A.npy B.npy [--rtol-of-max 1e-4] [--rows N]

Prints max|diff|, max|A| and their ratio; exits 1 when the shapes differ, either array holds a
NaN, or max|A - B| > rtol_of_max * max|A|. A tolerance relative to the largest reference value
(rather than elementwise) fits logits: small entries carry the same absolute rounding as big ones.
--rows N compares only the first N rows of 2-D arrays (the first N positions of a prompt's logits,
which a causal model computes without the later tokens).
"""

import argparse
import sys

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("reference", help="A.npy (the oracle)")
    parser.add_argument("candidate", help="B.npy")
    parser.add_argument("--rtol-of-max", type=float, default=1e-4, help="allowed max|A-B| / max|A| (default 1e-4)")
    parser.add_argument("--rows", type=int, default=None, help="compare only the first ROWS rows")
    args = parser.parse_args(argv)

    try:
        a = np.load(args.reference).astype(np.float64)
        b = np.load(args.candidate).astype(np.float64)
    except (OSError, ValueError) as e:
        print(f"compare_npy: error: {e}", file=sys.stderr)
        return 1
    if a.shape != b.shape:
        print(f"compare_npy: FAIL shapes differ: {args.reference} {a.shape} vs {args.candidate} {b.shape}")
        return 1
    if args.rows is not None:
        if a.ndim != 2 or not 0 < args.rows <= a.shape[0]:
            print(f"compare_npy: FAIL --rows {args.rows} does not fit shape {a.shape}")
            return 1
        a, b = a[: args.rows], b[: args.rows]
    if np.isnan(a).any() or np.isnan(b).any():
        print(f"compare_npy: FAIL NaN present (A: {int(np.isnan(a).sum())}, B: {int(np.isnan(b).sum())})")
        return 1

    max_diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    max_ref = float(np.max(np.abs(a))) if a.size else 0.0
    ratio = max_diff / max_ref if max_ref > 0 else (0.0 if max_diff == 0 else np.inf)
    ok = max_diff <= args.rtol_of_max * max_ref
    print(f"max|diff| {max_diff:.6g}  max|A| {max_ref:.6g}  ratio {ratio:.3g}  tol {args.rtol_of_max:g}  "
          f"{'OK' if ok else 'FAIL'}")
    if a.ndim == 2 and a.shape[0] > 0:
        # argmax agreement per row is what generation depends on; report it as extra information
        agree = int(np.sum(np.argmax(a, axis=-1) == np.argmax(b, axis=-1)))
        print(f"argmax agrees on {agree}/{a.shape[0]} rows")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
