#!/usr/bin/python3
"""NumPy oracle for the rest of transformers' DeepSeek-V3 API, built on deepseek_v3_ref.py.

What `DeepseekV3Model` / `DeepseekV3ForCausalLM` / `DeepseekV3ForSequenceClassification`
return besides next-token logits, in float64:
  - batches [batch][sequence] with an attention_mask (padding left or right): key j is seen by
    query i of row b when j <= i and mask[b][j] == 1; positions default to 0..n-1 for every row
    (cache_position, so left padding shifts the positions of the real tokens, as transformers
    does). A query that sees no key at all (left padding) gets a zero attention output and zero
    weights (transformers' SDPA path with torch >= 2.5; the eager path would average every key);
  - hidden_states as output_hidden_states gives them: the embeddings, each layer's output, the
    last one replaced by the final-normed states (num_hidden_layers + 1 entries);
  - attentions: per layer [batch][heads][query][key] softmax weights;
  - the causal-LM loss (ForCausalLMLoss: shift by one, -100 ignored, mean over counted tokens);
  - sequence classification: score head at the last non-pad token, loss per problem_type;
  - perplexity over a sliding window (the transformers perplexity guide, counting exactly the
    predicted tokens of each window).

Command line (shapes drop the batch axis when --ids holds one row, as `dsv3 logits` does):
    hf_api_ref.py forward -m DIR --ids 0,5,17[;...] [--mask 1,1,0[;...]] [--positions ...]
                  [--logits-out F] [--hidden-out F] [--attentions-out F] [--labels | --label-ids L]
                  [--report-margin]
    hf_api_ref.py classify -m DIR --ids ... [--mask ...] [--class-labels 1,0]
                  [--label-values 0.5,1;...] [--problem-type T] [--out F]
    hf_api_ref.py perplexity -m DIR --ids ... --ctx N --stride S
Prints `loss <value>`, `perplexity <value>` and `routing_margin <value>` lines.
"""

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deepseek_v3_ref as ref  # noqa: E402

IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------------------
# Forward pass with padding, positions, hidden states and attention weights
# ----------------------------------------------------------------------------------------------


def rope_for_positions(config, positions, seq_len):
    """cos, sin [len(positions), rope_dim]; seq_len = max position + 1 over the whole batch."""
    inv_freq, attention_factor = ref.rope_inv_freq(config, seq_len)
    freqs = np.outer(np.asarray(positions, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb) * attention_factor, np.sin(emb) * attention_factor


def masked_attention(config, weights, x, cos, sin, visible):
    """MLA as ref.attention, with `visible` [tokens, tokens] (query, key) and the weights returned."""
    c = config
    tokens, hidden = x.shape
    heads = c.num_attention_heads
    p = "self_attn."
    if c.q_lora_rank is None:
        q = ref.linear(x, weights.get(p + "q_proj.weight", (heads * c.qk_head_dim, hidden)))
    else:
        q_latent = ref.linear(x, weights.get(p + "q_a_proj.weight", (c.q_lora_rank, hidden)),
                              weights.bias(p + "q_a_proj.bias", c.q_lora_rank))
        q_latent = ref.rms_norm(q_latent, weights.get(p + "q_a_layernorm.weight", (c.q_lora_rank,)), 1e-6)
        q = ref.linear(q_latent, weights.get(p + "q_b_proj.weight", (heads * c.qk_head_dim, c.q_lora_rank)))
    q = q.reshape(tokens, heads, c.qk_head_dim).transpose(1, 0, 2)
    q_nope, q_rope = q[..., : c.qk_nope_head_dim], q[..., c.qk_nope_head_dim :]

    width = c.kv_lora_rank + c.qk_rope_head_dim
    compressed = ref.linear(x, weights.get(p + "kv_a_proj_with_mqa.weight", (width, hidden)),
                            weights.bias(p + "kv_a_proj_with_mqa.bias", width))
    latent, k_rope = compressed[:, : c.kv_lora_rank], compressed[:, c.kv_lora_rank :]
    latent = ref.rms_norm(latent, weights.get(p + "kv_a_layernorm.weight", (c.kv_lora_rank,)), 1e-6)
    kv = ref.linear(latent, weights.get(p + "kv_b_proj.weight",
                                        (heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank)))
    kv = kv.reshape(tokens, heads, c.qk_nope_head_dim + c.v_head_dim).transpose(1, 0, 2)
    k_nope, value = kv[..., : c.qk_nope_head_dim], kv[..., c.qk_nope_head_dim :]

    q_rope = ref.apply_rope(q_rope, cos, sin, c.rope_interleave)
    k_rope = ref.apply_rope(k_rope, cos, sin, c.rope_interleave)
    query = np.concatenate([q_nope, q_rope], axis=-1)
    key = np.concatenate([k_nope, np.broadcast_to(k_rope, (heads,) + k_rope.shape)], axis=-1)

    scores = (query @ key.transpose(0, 2, 1)) * ref.softmax_scale(c)  # [heads, q, k]
    scores = np.where(visible[None, :, :], scores, -np.inf)
    row_max = np.max(scores, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    exp = np.where(visible[None, :, :], np.exp(scores - row_max), 0.0)
    total = np.sum(exp, axis=-1, keepdims=True)
    probs = np.divide(exp, total, out=np.zeros_like(exp), where=total > 0)  # no key: zeros
    output = (probs @ value).transpose(1, 0, 2).reshape(tokens, heads * c.v_head_dim)
    out = ref.linear(output, weights.get(p + "o_proj.weight", (hidden, heads * c.v_head_dim)),
                     weights.bias(p + "o_proj.bias", hidden))
    return out, probs


def model_forward(config, checkpoint, input_ids=None, inputs_embeds=None, attention_mask=None,
                  position_ids=None):
    """DeepseekV3Model over a batch, no cache. Returns a dict with last_hidden_state [b, s, h],
    hidden_states (num_layers + 1 arrays [b, s, h]), attentions (per layer [b, heads, s, s]) and
    routing_margin."""
    c = config
    if input_ids is not None:
        ids = np.asarray(input_ids, dtype=np.int64)
        if ids.ndim != 2 or ids.size == 0:
            raise ref.ReferenceError("input_ids: need [batch][sequence] of equal-length rows")
        batch, seq = ids.shape
        if ids.min() < 0 or ids.max() >= c.vocab_size:
            raise ref.ReferenceError("input_ids: an id is outside the vocabulary")
        x = np.stack([checkpoint.get("model.embed_tokens.weight", (c.vocab_size, c.hidden_size), rows=row)
                      for row in ids])
    else:
        x = np.asarray(inputs_embeds, dtype=np.float64)
        batch, seq = x.shape[:2]
    mask = np.ones((batch, seq), dtype=bool) if attention_mask is None else np.asarray(attention_mask) != 0
    positions = (np.tile(np.arange(seq), (batch, 1)) if position_ids is None
                 else np.asarray(position_ids, dtype=np.int64))
    seq_len = int(positions.max()) + 1
    causal = np.tril(np.ones((seq, seq), dtype=bool))

    hidden_states = [x.copy()]
    attentions = []
    margin = math.inf
    for layer in range(c.num_hidden_layers):
        weights = ref.LayerWeights(checkpoint, layer)
        layer_probs = []
        new_x = np.empty_like(x)
        for b in range(batch):
            cos, sin = rope_for_positions(c, positions[b], seq_len)
            visible = causal & mask[b][None, :]
            h = x[b]
            normed = ref.rms_norm(h, weights.get("input_layernorm.weight", (c.hidden_size,)), c.rms_norm_eps)
            attn, probs = masked_attention(c, weights, normed, cos, sin, visible)
            h = h + attn
            normed = ref.rms_norm(h, weights.get("post_attention_layernorm.weight", (c.hidden_size,)),
                                  c.rms_norm_eps)
            if layer < c.first_k_dense_replace:
                h = h + ref.mlp(weights, "mlp.", normed, c.intermediate_size)
            else:
                moe_out, routing = ref.moe(c, weights, normed)
                h = h + moe_out
                margin = min(margin, routing.margin)
            new_x[b] = h
            layer_probs.append(probs)
        x = new_x
        hidden_states.append(x.copy())
        attentions.append(np.stack(layer_probs))
    x = ref.rms_norm(x, checkpoint.get("model.norm.weight", (c.hidden_size,)), c.rms_norm_eps)
    hidden_states[-1] = x  # output_hidden_states: the last entry is the final-normed state
    return {"last_hidden_state": x, "hidden_states": hidden_states, "attentions": attentions,
            "routing_margin": margin}


def causal_lm_logits(config, checkpoint, last_hidden_state):
    batch, seq, hidden = last_hidden_state.shape
    return ref.lm_head(config, checkpoint, last_hidden_state.reshape(batch * seq, hidden)).reshape(batch, seq, -1)


def log_softmax(x):
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def causal_lm_loss(logits, labels):
    """ForCausalLMLoss: pad labels with -100 on the right, shift left, mean over counted tokens."""
    labels = np.asarray(labels, dtype=np.int64)
    shifted = np.concatenate([labels[:, 1:], np.full((labels.shape[0], 1), IGNORE_INDEX)], axis=1)
    counted = shifted != IGNORE_INDEX
    if not counted.any():
        return math.nan
    logp = log_softmax(logits)
    nll = -np.take_along_axis(logp, np.where(counted, shifted, 0)[..., None], axis=-1)[..., 0]
    return float(nll[counted].sum() / counted.sum())


# ----------------------------------------------------------------------------------------------
# Sequence classification
# ----------------------------------------------------------------------------------------------


def pooled_positions(config, input_ids):
    ids = np.asarray(input_ids)
    batch, seq = ids.shape
    pad = getattr(config, "pad_token_id", None)
    if pad is None:
        if batch != 1:
            raise ref.ReferenceError("Cannot handle batch sizes > 1 if no padding token is defined.")
        return np.full(batch, seq - 1)
    return np.argmax(np.arange(seq)[None, :] * (ids != pad), axis=-1)


def problem_type_of(config, num_labels, integer_labels):
    kind = getattr(config, "problem_type", None)
    if kind:
        return kind
    if num_labels == 1:
        return "regression"
    return "single_label_classification" if integer_labels else "multi_label_classification"


def classification_loss(config, pooled, class_labels=None, label_values=None):
    num_labels = pooled.shape[-1]
    kind = problem_type_of(config, num_labels, class_labels is not None)
    if kind == "regression":
        labels = np.asarray(class_labels if class_labels is not None else label_values, dtype=np.float64)
        if num_labels == 1:
            return float(np.mean((pooled.reshape(-1) - labels.reshape(-1)) ** 2))
        return float(np.mean((pooled - labels.reshape(pooled.shape)) ** 2))
    if kind == "single_label_classification":
        labels = np.asarray(class_labels, dtype=np.int64).reshape(-1)
        counted = labels != IGNORE_INDEX
        if not counted.any():
            return math.nan
        logp = log_softmax(pooled)
        return float(-logp[np.arange(len(labels))[counted], labels[counted]].mean())
    y = np.asarray(label_values, dtype=np.float64).reshape(pooled.shape)
    x = pooled
    return float(np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))))


def classify(config, checkpoint, input_ids, attention_mask=None, class_labels=None, label_values=None):
    out = model_forward(config, checkpoint, input_ids=input_ids, attention_mask=attention_mask)
    hidden = out["last_hidden_state"]
    positions = pooled_positions(config, input_ids)
    num_labels = config.num_labels
    score = checkpoint.get("score.weight", (num_labels, config.hidden_size))
    pooled = hidden[np.arange(hidden.shape[0]), positions] @ score.T
    loss = None
    if class_labels is not None or label_values is not None:
        loss = classification_loss(config, pooled, class_labels, label_values)
    return pooled, loss, out["routing_margin"]


def load_classifier_config(model_dir):
    config = ref.load_config(model_dir)
    if not hasattr(config, "num_labels"):
        config.num_labels = len(config.id2label) if isinstance(getattr(config, "id2label", None), dict) else 2
    return config


# ----------------------------------------------------------------------------------------------
# Perplexity (transformers' perplexity guide, sliding window)
# ----------------------------------------------------------------------------------------------


def perplexity(config, checkpoint, ids, ctx, stride):
    nll_sum, counted, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + ctx, len(ids))
        target_len = end - prev_end  # only the tokens no earlier window scored
        window = [ids[begin:end]]
        labels = np.array(window, dtype=np.int64)
        labels[:, : labels.shape[1] - target_len] = IGNORE_INDEX
        out = model_forward(config, checkpoint, input_ids=window)
        logits = causal_lm_logits(config, checkpoint, out["last_hidden_state"])
        n = int((labels[:, 1:] != IGNORE_INDEX).sum())
        if n:
            nll_sum += causal_lm_loss(logits, labels) * n
            counted += n
        prev_end = end
        if end == len(ids):
            break
    return math.exp(nll_sum / counted)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def parse_rows(text, kind=int):
    """'1,2,3;4,5,6' -> [[1,2,3],[4,5,6]]"""
    try:
        return [[kind(v) for v in row.split(",") if v.strip() != ""] for row in text.split(";")]
    except ValueError:
        raise ref.ReferenceError(f"'{text}' is not a ';'-separated list of ','-separated numbers")


def save(path, array):
    np.save(path, np.asarray(array, dtype=np.float32))


def main(argv=None):
    parser = argparse.ArgumentParser(description="NumPy reference of the transformers DeepSeek-V3 API.")
    sub = parser.add_subparsers(dest="command", required=True)
    fwd = sub.add_parser("forward")
    cls = sub.add_parser("classify")
    ppl = sub.add_parser("perplexity")
    for p in (fwd, cls, ppl):
        p.add_argument("-m", "--model", required=True)
        p.add_argument("--ids", required=True)
    for p in (fwd, cls):
        p.add_argument("--mask")
    fwd.add_argument("--positions")
    fwd.add_argument("--logits-out")
    fwd.add_argument("--hidden-out")
    fwd.add_argument("--attentions-out")
    fwd.add_argument("--labels", action="store_true", help="labels = input ids")
    fwd.add_argument("--label-ids", help="explicit labels, -100 ignored (rows as --ids)")
    fwd.add_argument("--report-margin", action="store_true")
    cls.add_argument("--class-labels")
    cls.add_argument("--label-values")
    cls.add_argument("--problem-type")
    cls.add_argument("--out")
    ppl.add_argument("--ctx", type=int, required=True)
    ppl.add_argument("--stride", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        ids = parse_rows(args.ids)
        single = len(ids) == 1
        if args.command == "perplexity":
            config = ref.load_config(args.model)
            print(f"perplexity {perplexity(config, ref.load_checkpoint(args.model, config), ids[0], args.ctx, args.stride):.9g}")
            return 0
        mask = parse_rows(args.mask) if args.mask else None
        if args.command == "classify":
            config = load_classifier_config(args.model)
            if args.problem_type:
                config.problem_type = args.problem_type
            class_labels = parse_rows(args.class_labels)[0] if args.class_labels else None
            label_values = parse_rows(args.label_values, float) if args.label_values else None
            pooled, loss, margin = classify(config, ref.load_checkpoint(args.model, config), ids, mask,
                                            class_labels, label_values)
            if args.out:
                save(args.out, pooled)
            if loss is not None:
                print(f"loss {loss:.9g}")
            print(f"routing_margin {margin:.9g}")
            return 0
        config = ref.load_config(args.model)
        checkpoint = ref.load_checkpoint(args.model, config)
        positions = parse_rows(args.positions) if args.positions else None
        out = model_forward(config, checkpoint, input_ids=ids, attention_mask=mask, position_ids=positions)
        logits = causal_lm_logits(config, checkpoint, out["last_hidden_state"])
        if args.logits_out:
            save(args.logits_out, logits[0] if single else logits)
        if args.hidden_out:
            hidden = np.stack(out["hidden_states"])  # [layers + 1, batch, seq, hidden]
            save(args.hidden_out, hidden[:, 0] if single else hidden)
        if args.attentions_out:
            attn = np.stack(out["attentions"])  # [layers, batch, heads, seq, seq]
            save(args.attentions_out, attn[:, 0] if single else attn)
        if args.labels or args.label_ids:
            labels = parse_rows(args.label_ids) if args.label_ids else ids
            print(f"loss {causal_lm_loss(logits, labels):.9g}")
        if args.report_margin:
            print(f"routing_margin {out['routing_margin']:.9g}")
    except ref.ReferenceError as e:
        print(f"hf_api_ref: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
