#!/usr/bin/env python3
"""How much of a rounded checkpoint's disagreement with F32 comes from routing flips.

Runs the float64 reference (tests/reference/deepseek_v3_ref.py) over a token sequence on the
F32 checkpoint, then on a rounded one (BF16 or FP8 of the same random weights) twice: as is, and
with every MoE layer forced to pick the experts the F32 run picked (weights from its own scores).
Prints per run the share of positions whose top-1 agrees with F32, the mean KL, and the share of
(token, layer) routings that differ. Slow (float64 NumPy): a hundred tokens take minutes.

  /usr/bin/python3 bench/routing_sensitivity.py F32_DIR IDS_FILE ROUNDED_DIR...

IDS_FILE: comma-separated token ids. F32 and BF16 / FP8 checkpoints of one seed
(`dsv3 make-tiny DIR --preset bench --dtype f32|bf16|fp8`) hold the same random weights."""
import json, sys, os
import numpy as np
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/reference"))
import deepseek_v3_ref as ref

def kl_top1(p_logits, q_logits):
    def logsm(x):
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    lp, lq = logsm(p_logits), logsm(q_logits)
    kl = (np.exp(lp) * (lp - lq)).sum(axis=1).mean()
    top1 = (p_logits.argmax(1) == q_logits.argmax(1)).mean() * 100
    return kl, top1, np.exp(lp).max(1).mean()

def run(directory, ids, forced=None):
    original = ref.route
    calls = [0]
    def forced_route(config, x, gate_weight, score_bias):
        r = original(config, x, gate_weight, score_bias)
        if forced is not None:
            want = forced[calls[0]].expert_ids
            scores = ref.sigmoid(ref.linear(x, gate_weight))
            w = np.take_along_axis(scores, want, axis=-1)
            if config.norm_topk_prob:
                w = w / (w.sum(axis=-1, keepdims=True) + 1e-20)
            r = ref.Routing(want, w * config.routed_scaling_factor, r.margin)
        calls[0] += 1
        return r
    ref.route = forced_route
    try:
        config = ref.load_config(directory)
        return ref.forward(config, ref.load_checkpoint(directory, config), ids)
    finally:
        ref.route = original

def flips(a, b):
    total = diff = 0
    for ra, rb in zip(a, b):
        sa, sb = np.sort(ra.expert_ids, 1), np.sort(rb.expert_ids, 1)
        diff += (sa != sb).any(axis=1).sum(); total += sa.shape[0]
    return 100.0 * diff / total

reference_dir, ids = sys.argv[1], [int(t) for t in open(sys.argv[2]).read().split(",")]
base = run(reference_dir, ids)
for d in sys.argv[3:]:
    free = run(d, ids)
    forced = run(d, ids, base.routings)
    for name, r in (("as is", free), ("F32 routes", forced)):
        kl, top1, p = kl_top1(base.logits, r.logits)
        print(f"{d:30s} {name:11s} top-1 {top1:6.2f} %  mean KL {kl:.4f}  routings differing {flips(base.routings, r.routings):5.1f} %", flush=True)
print(f"reference mean top-1 probability {kl_top1(base.logits, base.logits)[2]:.3f}")
