#!/usr/bin/env python3
"""Gives a random checkpoint an output head fitted to real text, so that its next-token
distributions are decisive the way a trained model's are (bench/peaked_head_accuracy.sh).

A random DeepSeek-V3 body with a random lm_head predicts nearly flat distributions: the most
likely of 129k tokens has a probability of a few in 10^4, and any rounding reorders the near-ties.
Quantization accuracy (top-1 agreement) means little there. Here the body stays random and
frozen; only lm_head.weight is replaced by

    W = scale * W_fit + W_random

where W_fit is the ridge-regression readout of the next token's one-hot vector from the final
(normed) hidden states of a training text, the same least squares fit a linear probe makes, and
W_random is the checkpoint's own head, kept as realistic noise over the whole vocabulary. The
scale is chosen so that the mean top-1 probability on held-out positions of the training text is
near --target-top1.

  fit:    peaked_head.py fit --hidden H.npy[,...] --ids IDS[,...] --random-head DIR --out W.npy
  write:  peaked_head.py write --head W.npy --checkpoint DIR   (rewrites lm_head.weight in place)

H.npy: float32 [tokens, hidden], the last entry of `dsv3 logits --hidden-out`; IDS: a file of
the comma-separated ids those hidden states belong to (hidden state i predicts id i + 1).
Needs only numpy.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def safetensors_files(directory):
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            return sorted({os.path.join(directory, v) for v in json.load(f)["weight_map"].values()})
    return [os.path.join(directory, "model.safetensors")]


def find_tensor(directory, name):
    """(file, dtype, shape, absolute byte offset, byte length) of one tensor of a checkpoint."""
    for path in safetensors_files(directory):
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
        if name in header:
            entry = header[name]
            begin, end = entry["data_offsets"]
            return path, entry["dtype"], entry["shape"], 8 + header_len + begin, end - begin
    sys.exit(f"{directory}: no tensor {name}")


def bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(values):
    bits = values.astype(np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + 0x7FFF  # round to nearest, ties to even
    return ((bits + rounding) >> 16).astype(np.uint16)


def read_tensor(directory, name):
    path, dtype, shape, offset, length = find_tensor(directory, name)
    with open(path, "rb") as f:
        f.seek(offset)
        raw = f.read(length)
    if dtype == "F32":
        return np.frombuffer(raw, np.float32).reshape(shape).copy()
    if dtype == "BF16":
        return bf16_bits_to_f32(np.frombuffer(raw, np.uint16)).reshape(shape)
    sys.exit(f"{name} is {dtype}; only F32 and BF16 heads are supported")


def write_tensor(directory, name, values):
    path, dtype, shape, offset, length = find_tensor(directory, name)
    if list(values.shape) != list(shape):
        sys.exit(f"{name}: shape {list(values.shape)} does not match the checkpoint's {shape}")
    if dtype == "F32":
        raw = values.astype(np.float32).tobytes()
    elif dtype == "BF16":
        raw = f32_to_bf16_bits(values).tobytes()
    else:
        sys.exit(f"{name} is {dtype}; only F32 and BF16 heads are supported")
    assert len(raw) == length
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(raw)


def load_examples(hidden_files, id_files):
    """Hidden states and the id each of them predicts."""
    features, targets = [], []
    for hidden_file, id_file in zip(hidden_files, id_files):
        hidden = np.load(hidden_file).astype(np.float32)
        with open(id_file) as f:
            ids = np.array([int(x) for x in f.read().split(",")], np.int64)
        if hidden.shape[0] != ids.shape[0]:
            sys.exit(f"{hidden_file}: {hidden.shape[0]} states for {ids.shape[0]} ids")
        features.append(hidden[:-1])
        targets.append(ids[1:])
    return np.concatenate(features), np.concatenate(targets)


def softmax_top1(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return probabilities.max(axis=1)


def fit(args):
    features, targets = load_examples(args.hidden.split(","), args.ids.split(","))
    random_head = read_tensor(args.random_head, "lm_head.weight")
    vocab, hidden = random_head.shape
    rng = np.random.default_rng(0)
    order = rng.permutation(len(targets))
    held_out, train = order[: args.held_out], order[args.held_out:]

    # Ridge regression: W_fit = Y^T X (X^T X + lambda I)^-1, Y the one-hot targets.
    x = features[train].astype(np.float64)
    gram = x.T @ x
    ridge = args.ridge * np.trace(gram) / hidden
    inverse = np.linalg.inv(gram + ridge * np.eye(hidden))
    seen = np.unique(targets[train])
    target_sums = np.zeros((len(seen), hidden))
    np.add.at(target_sums, np.searchsorted(seen, targets[train]), x)
    fitted_rows = (target_sums @ inverse).astype(np.float32)

    # The scale that makes held-out predictions about as decisive as --target-top1 asks.
    probe = features[held_out]
    random_logits = probe @ random_head.T
    fitted_logits = probe @ fitted_rows.T
    low, high = 0.0, 1000.0
    for _ in range(40):
        scale = 0.5 * (low + high)
        logits = random_logits.copy()
        logits[:, seen] += scale * fitted_logits
        if softmax_top1(logits).mean() < args.target_top1:
            low = scale
        else:
            high = scale
    logits = random_logits.copy()
    logits[:, seen] += scale * fitted_logits
    accuracy = float((seen[np.argmax(fitted_logits, axis=1)] == targets[held_out]).mean())
    head = random_head.copy()
    head[seen] += scale * fitted_rows
    np.save(args.out, head)
    print(f"fitted {len(seen)} of {vocab} rows on {len(train)} positions; scale {scale:.2f}; "
          f"held-out mean top-1 probability {softmax_top1(logits).mean():.3f}, "
          f"next-token accuracy {100 * accuracy:.1f} %")


def write(args):
    write_tensor(args.checkpoint, "lm_head.weight", np.load(args.head))
    print(f"{args.checkpoint}: lm_head.weight rewritten")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fit_parser = commands.add_parser("fit")
    fit_parser.add_argument("--hidden", required=True)
    fit_parser.add_argument("--ids", required=True)
    fit_parser.add_argument("--random-head", required=True)
    fit_parser.add_argument("--out", required=True)
    fit_parser.add_argument("--ridge", type=float, default=1e-3)
    fit_parser.add_argument("--held-out", type=int, default=256)
    fit_parser.add_argument("--target-top1", type=float, default=0.5)
    write_parser = commands.add_parser("write")
    write_parser.add_argument("--head", required=True)
    write_parser.add_argument("--checkpoint", required=True)
    args = parser.parse_args()
    fit(args) if args.command == "fit" else write(args)


if __name__ == "__main__":
    main()
