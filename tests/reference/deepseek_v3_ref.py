#!/usr/bin/python3
"""NumPy oracle for DeepSeek-V3: the forward pass of Hugging Face `DeepseekV3ForCausalLM`.

Written from the semantics of transformers' `models/deepseek_v3/modeling_deepseek_v3.py` and
`modeling_rope_utils.py`, in float64 throughout (weights upcast), so that the C++ engine's
float32/bf16 results can be compared against a value that is as exact as we can make it.

It reads a real Hugging Face checkpoint directory: `config.json` plus `model.safetensors` or
shards listed in `model.safetensors.index.json`; tensors in F32, F16, BF16 or F8_E4M3 (with
DeepSeek's `weight_scale_inv` block scales). Nothing here needs torch.

Command line:
    deepseek_v3_ref.py -m CHECKPOINT_DIR --ids 0,5,17 --out logits.npy [--last] [--report-margin]
writes float32 logits [len(ids), vocab] (or [1, vocab] with --last) with np.save.
--report-margin prints `routing_margin <value>`: the smallest gap, over all MoE layers, tokens
and both selection stages, between the lowest chosen and the highest rejected candidate, so
tests can reject prompts whose expert choice nearly ties.

Importable pieces: load_config, load_checkpoint, forward (-> ForwardResult with logits,
hidden states, expert choices, routing margin), and the building blocks below.
"""

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np


class ReferenceError(Exception):
    """Bad checkpoint or input: the message names the file/tensor/field."""


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------

# DeepseekV3Config defaults (transformers), used for fields absent from config.json.
CONFIG_DEFAULTS = {
    "vocab_size": 129280,
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "moe_intermediate_size": 2048,
    "num_hidden_layers": 61,
    "num_attention_heads": 128,
    "num_key_value_heads": 128,
    "n_shared_experts": 1,
    "n_routed_experts": 256,
    "routed_scaling_factor": 2.5,
    "kv_lora_rank": 512,
    "q_lora_rank": 1536,
    "qk_rope_head_dim": 64,
    "v_head_dim": 128,
    "qk_nope_head_dim": 128,
    "n_group": 8,
    "topk_group": 4,
    "num_experts_per_tok": 8,
    "first_k_dense_replace": 3,
    "norm_topk_prob": True,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "rope_interleave": True,
    "attention_bias": False,
    "quantization_config": None,
}


class Config:
    """config.json with defaults filled in; fields are attributes (config.hidden_size)."""

    def __init__(self, fields):
        self.__dict__.update(fields)
        self.qk_head_dim = self.qk_nope_head_dim + self.qk_rope_head_dim
        if self.hidden_act != "silu":
            raise ReferenceError(f"config.json: hidden_act '{self.hidden_act}' is not supported (only silu)")
        if self.n_routed_experts % self.n_group != 0:
            raise ReferenceError(
                f"config.json: n_routed_experts {self.n_routed_experts} is not divisible by n_group {self.n_group}"
            )
        has_moe = self.first_k_dense_replace < self.num_hidden_layers
        if has_moe and self.n_routed_experts // self.n_group < 2:
            # the router sums the top 2 scores of each group (torch.topk(2) would fail)
            raise ReferenceError(f"config.json: need at least 2 experts per group, n_group is {self.n_group}")
        if has_moe and (self.topk_group > self.n_group or self.num_experts_per_tok > self.n_routed_experts):
            raise ReferenceError(
                f"config.json: topk_group {self.topk_group} > n_group {self.n_group} or num_experts_per_tok "
                f"{self.num_experts_per_tok} > n_routed_experts {self.n_routed_experts}"
            )
        if self.qk_rope_head_dim % 2 != 0:
            raise ReferenceError(f"config.json: qk_rope_head_dim {self.qk_rope_head_dim} must be even")


def rope_type(config):
    if not isinstance(config.rope_scaling, dict):
        return "default"
    # transformers accepts the old key "type" as well as "rope_type".
    return config.rope_scaling.get("rope_type", config.rope_scaling.get("type", "default"))


def load_config(checkpoint_dir):
    path = os.path.join(checkpoint_dir, "config.json")
    try:
        with open(path, "r", encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise ReferenceError(f"{path}: cannot read ({e.strerror})")
    except json.JSONDecodeError as e:
        raise ReferenceError(f"{path}: invalid JSON ({e})")
    if not isinstance(raw, dict):
        raise ReferenceError(f"{path}: expected a JSON object")
    fields = dict(CONFIG_DEFAULTS)
    fields.update(raw)
    # Newer transformers save RoPE settings as "rope_parameters" (theta included).
    if isinstance(raw.get("rope_parameters"), dict) and "rope_scaling" not in raw:
        rope = dict(raw["rope_parameters"])
        fields["rope_theta"] = rope.pop("rope_theta", fields["rope_theta"])
        fields["rope_scaling"] = rope if rope.get("rope_type", rope.get("type", "default")) != "default" else None
    return Config(fields)


# ----------------------------------------------------------------------------------------------
# Safetensors reading and dequantization
# ----------------------------------------------------------------------------------------------


def _fp8_e4m3fn_table():
    """float64 value of every e4m3fn byte: bias 7, no infinities, 0x7f/0xff are NaN, max 448."""
    table = np.empty(256, dtype=np.float64)
    for byte in range(256):
        sign = -1.0 if byte & 0x80 else 1.0
        exponent = (byte >> 3) & 0xF
        mantissa = byte & 0x7
        if exponent == 0:
            value = (mantissa / 8.0) * 2.0**-6  # subnormal
        elif exponent == 0xF and mantissa == 0x7:
            value = math.nan
        else:
            value = (1.0 + mantissa / 8.0) * 2.0 ** (exponent - 7)
        table[byte] = sign * value
    return table


FP8_E4M3_TABLE = _fp8_e4m3fn_table()

# safetensors dtype name -> (bytes per element, decoder from raw uint8 bytes to float64)
DTYPES = {
    "F64": (8, lambda raw: raw.view("<f8").astype(np.float64)),
    "F32": (4, lambda raw: raw.view("<f4").astype(np.float64)),
    "F16": (2, lambda raw: raw.view("<f2").astype(np.float64)),
    # bfloat16 is the upper half of a float32.
    "BF16": (2, lambda raw: (raw.view("<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)),
    "F8_E4M3": (1, lambda raw: FP8_E4M3_TABLE[raw]),
}


@dataclass
class TensorInfo:
    path: str
    dtype: str
    shape: tuple
    begin: int  # absolute byte offset in the file
    end: int


class SafetensorsFile:
    """One .safetensors file: 8-byte little-endian header length, JSON header, raw data."""

    def __init__(self, path):
        self.path = path
        try:
            file_size = os.path.getsize(path)
            with open(path, "rb") as f:
                prefix = f.read(8)
                if len(prefix) < 8:
                    raise ReferenceError(f"{path}: too short for a safetensors header")
                header_len = int.from_bytes(prefix, "little")
                if header_len > file_size - 8:
                    raise ReferenceError(f"{path}: header length {header_len} exceeds file size {file_size}")
                header = json.loads(f.read(header_len).decode("utf-8"))
        except OSError as e:
            raise ReferenceError(f"{path}: cannot read ({e.strerror})")
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ReferenceError(f"{path}: invalid JSON header ({e})")
        data_start = 8 + header_len
        self.tensors = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            try:
                dtype, shape, offsets = entry["dtype"], [int(d) for d in entry["shape"]], entry["data_offsets"]
                offsets = [int(offsets[0]), int(offsets[1])]
            except (TypeError, KeyError, IndexError, ValueError):
                raise ReferenceError(f"{path}: tensor '{name}' has a malformed header entry")
            if dtype not in DTYPES:
                raise ReferenceError(f"{path}: tensor '{name}' has unsupported dtype {dtype}")
            begin, end = data_start + offsets[0], data_start + offsets[1]
            expected = DTYPES[dtype][0] * int(np.prod(shape, dtype=np.int64))
            if end - begin != expected or end > file_size or begin < data_start:
                raise ReferenceError(
                    f"{path}: tensor '{name}' offsets {offsets} do not match dtype {dtype} shape {shape} "
                    f"or lie outside the file"
                )
            self.tensors[name] = TensorInfo(path, dtype, tuple(shape), begin, end)
        self._bytes = np.memmap(path, dtype=np.uint8, mode="r") if file_size > 0 else np.zeros(0, np.uint8)

    def read(self, name, rows=None):
        """float64 array of a tensor; `rows` (index array) reads only those rows of a 2-D tensor."""
        info = self.tensors[name]
        itemsize, decode = DTYPES[info.dtype]
        raw = self._bytes[info.begin : info.end]
        if rows is None:
            return decode(np.ascontiguousarray(raw)).reshape(info.shape)
        row_bytes = itemsize * int(np.prod(info.shape[1:], dtype=np.int64))
        raw = raw.reshape(info.shape[0], row_bytes)[rows]
        return decode(np.ascontiguousarray(raw)).reshape((len(rows),) + info.shape[1:])


class Checkpoint:
    """All tensors of a checkpoint directory by name; FP8 weights come back dequantized."""

    def __init__(self, checkpoint_dir, config):
        self.dir = checkpoint_dir
        self.config = config
        index_path = os.path.join(checkpoint_dir, "model.safetensors.index.json")
        single_path = os.path.join(checkpoint_dir, "model.safetensors")
        if os.path.exists(index_path):
            try:
                with open(index_path, "r", encoding="utf-8") as f:
                    weight_map = json.load(f)["weight_map"]
            except (OSError, KeyError, json.JSONDecodeError) as e:
                raise ReferenceError(f"{index_path}: cannot read weight_map ({e})")
            file_names = sorted(set(weight_map.values()))
        elif os.path.exists(single_path):
            file_names = ["model.safetensors"]
        else:
            raise ReferenceError(f"{checkpoint_dir}: neither model.safetensors nor model.safetensors.index.json")
        self.tensors = {}
        for file_name in file_names:
            st = SafetensorsFile(os.path.join(checkpoint_dir, file_name))
            for name in st.tensors:
                self.tensors[name] = st
        quant = config.quantization_config or {}
        self.block_rows, self.block_cols = quant.get("weight_block_size", [128, 128])

    def has(self, name):
        return name in self.tensors

    def get(self, name, shape=None, rows=None):
        """float64 tensor `name`; checks `shape` when given; `rows` gathers rows (embeddings)."""
        if name not in self.tensors:
            raise ReferenceError(f"{self.dir}: tensor '{name}' is missing")
        st = self.tensors[name]
        info = st.tensors[name]
        if shape is not None and tuple(info.shape) != tuple(shape):
            raise ReferenceError(f"{info.path}: tensor '{name}' has shape {list(info.shape)}, expected {list(shape)}")
        value = st.read(name, rows)
        if info.dtype == "F8_E4M3":
            value = self._apply_block_scales(name, info, value, rows)
        return value

    def _apply_block_scales(self, name, info, value, rows):
        # DeepSeek FP8: W[r][c] = fp8[r][c] * scale_inv[r // block_rows][c // block_cols]
        scale_name = name + "_scale_inv"
        if len(info.shape) != 2:
            raise ReferenceError(f"{info.path}: FP8 tensor '{name}' must be 2-D, has shape {list(info.shape)}")
        out_rows, in_cols = info.shape
        scale_shape = (-(-out_rows // self.block_rows), -(-in_cols // self.block_cols))
        scale = self.get(scale_name, shape=scale_shape)
        row_index = (np.arange(out_rows) if rows is None else np.asarray(rows)) // self.block_rows
        col_index = np.arange(in_cols) // self.block_cols
        return value * scale[row_index][:, col_index]


def load_checkpoint(checkpoint_dir, config=None):
    return Checkpoint(checkpoint_dir, config or load_config(checkpoint_dir))


# ----------------------------------------------------------------------------------------------
# Small ops
# ----------------------------------------------------------------------------------------------


def rms_norm(x, weight, eps):
    return weight * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def silu(x):
    return x / (1.0 + np.exp(-x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


def linear(x, weight, bias=None):
    y = x @ weight.T
    return y if bias is None else y + bias


# ----------------------------------------------------------------------------------------------
# Rotary position embedding (modeling_rope_utils.py)
# ----------------------------------------------------------------------------------------------


def yarn_get_mscale(scale=1.0, mscale=1.0):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def rope_inv_freq(config, seq_len):
    """(inv_freq [dim/2], attention_factor) for the rope type; dim = qk_rope_head_dim.

    seq_len = max position + 1 only matters for "dynamic" (NTK), which recomputes the base
    once the sequence outgrows max_position_embeddings.
    """
    dim = config.qk_rope_head_dim
    base = float(config.rope_theta)
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    kind = rope_type(config)
    scaling = config.rope_scaling or {}
    if kind == "default":
        return 1.0 / base**exponents, 1.0
    factor = float(scaling["factor"])
    if kind == "linear":
        return 1.0 / base**exponents / factor, 1.0
    if kind == "dynamic":
        max_pos = config.max_position_embeddings
        seq_len = max(seq_len, max_pos)
        base = base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / base**exponents, 1.0
    if kind == "yarn":
        return yarn_inv_freq(config, dim, base, factor, scaling)
    raise ReferenceError(f"config.json: rope_scaling type '{kind}' is not supported")


def yarn_inv_freq(config, dim, base, factor, scaling):
    """YaRN as in current transformers: the explicit `factor` is used as given (older releases
    replaced it by max_position_embeddings / original_max_position_embeddings, which is the same
    number for DeepSeek-V3's own config: 163840 / 4096 = 40)."""
    mscale = scaling.get("mscale")
    mscale_all_dim = scaling.get("mscale_all_dim")
    original_max_pos = scaling.get("original_max_position_embeddings") or config.max_position_embeddings

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, mscale_all_dim)
        else:
            attention_factor = yarn_get_mscale(factor)
    beta_fast = scaling.get("beta_fast") or 32
    beta_slow = scaling.get("beta_slow") or 1
    truncate = scaling.get("truncate", True)

    def correction_dim(num_rotations):
        # the rotary dimension that turns num_rotations times over the original context
        return (dim * math.log(original_max_pos / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a division by zero in the ramp
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    extrapolation_weight = 1.0 - ramp

    pos_freqs = base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    inv_freq_extrapolation = 1.0 / pos_freqs
    inv_freq_interpolation = 1.0 / (factor * pos_freqs)
    inv_freq = inv_freq_interpolation * (1 - extrapolation_weight) + inv_freq_extrapolation * extrapolation_weight
    return inv_freq, float(attention_factor)


def rope_cos_sin(config, positions):
    """cos, sin [len(positions), qk_rope_head_dim] (frequencies repeated twice, rotate_half layout)."""
    inv_freq, attention_factor = rope_inv_freq(config, int(np.max(positions)) + 1)
    freqs = np.outer(np.asarray(positions, dtype=np.float64), inv_freq)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb) * attention_factor, np.sin(emb) * attention_factor


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def deinterleave(x):
    """[x0, x1, x2, x3, ...] -> [x0, x2, ..., x1, x3, ...] (view d/2,2 -> transpose -> reshape)."""
    d = x.shape[-1]
    return x.reshape(x.shape[:-1] + (d // 2, 2)).swapaxes(-1, -2).reshape(x.shape)


def apply_rope(x, cos, sin, interleave):
    """x [..., tokens, rope_dim]; cos/sin [tokens, rope_dim]."""
    if interleave:
        x = deinterleave(x)
    return x * cos + rotate_half(x) * sin


def softmax_scale(config):
    scale = config.qk_head_dim**-0.5
    if isinstance(config.rope_scaling, dict):
        mscale_all_dim = config.rope_scaling.get("mscale_all_dim", 0)
        if mscale_all_dim:
            mscale = yarn_get_mscale(config.rope_scaling["factor"], mscale_all_dim)
            scale = scale * mscale * mscale
    return scale


# ----------------------------------------------------------------------------------------------
# Model blocks
# ----------------------------------------------------------------------------------------------


class LayerWeights:
    """Fetches the weights of `model.layers.{i}.` by short name with their expected shapes."""

    def __init__(self, checkpoint, layer):
        self.checkpoint = checkpoint
        self.prefix = f"model.layers.{layer}."

    def get(self, name, shape):
        return self.checkpoint.get(self.prefix + name, shape)

    def bias(self, name, size):
        if not self.checkpoint.config.attention_bias:
            return None
        return self.get(name, (size,))


def attention(config, weights, x, cos, sin):
    """Multi-head latent attention (MLA), the uncompressed form of transformers' eager path."""
    c = config
    tokens, hidden = x.shape
    heads = c.num_attention_heads
    prefix = "self_attn."

    if c.q_lora_rank is None:
        q = linear(x, weights.get(prefix + "q_proj.weight", (heads * c.qk_head_dim, hidden)))
    else:
        q_latent = linear(
            x,
            weights.get(prefix + "q_a_proj.weight", (c.q_lora_rank, hidden)),
            weights.bias(prefix + "q_a_proj.bias", c.q_lora_rank),
        )
        # q_a_layernorm and kv_a_layernorm keep DeepseekV3RMSNorm's default eps 1e-6.
        q_latent = rms_norm(q_latent, weights.get(prefix + "q_a_layernorm.weight", (c.q_lora_rank,)), 1e-6)
        q = linear(q_latent, weights.get(prefix + "q_b_proj.weight", (heads * c.qk_head_dim, c.q_lora_rank)))
    q = q.reshape(tokens, heads, c.qk_head_dim).transpose(1, 0, 2)  # [heads, tokens, qk_head_dim]
    q_nope, q_rope = q[..., : c.qk_nope_head_dim], q[..., c.qk_nope_head_dim :]

    kv_rank_plus_rope = c.kv_lora_rank + c.qk_rope_head_dim
    compressed_kv = linear(
        x,
        weights.get(prefix + "kv_a_proj_with_mqa.weight", (kv_rank_plus_rope, hidden)),
        weights.bias(prefix + "kv_a_proj_with_mqa.bias", kv_rank_plus_rope),
    )
    kv_latent, k_rope = compressed_kv[:, : c.kv_lora_rank], compressed_kv[:, c.kv_lora_rank :]
    kv_latent = rms_norm(kv_latent, weights.get(prefix + "kv_a_layernorm.weight", (c.kv_lora_rank,)), 1e-6)
    kv = linear(
        kv_latent,
        weights.get(prefix + "kv_b_proj.weight", (heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank)),
    )
    kv = kv.reshape(tokens, heads, c.qk_nope_head_dim + c.v_head_dim).transpose(1, 0, 2)
    k_nope, value = kv[..., : c.qk_nope_head_dim], kv[..., c.qk_nope_head_dim :]

    # The rope part of the key is one vector per token, shared by all heads.
    q_rope = apply_rope(q_rope, cos, sin, c.rope_interleave)
    k_rope = apply_rope(k_rope, cos, sin, c.rope_interleave)
    query = np.concatenate([q_nope, q_rope], axis=-1)
    key = np.concatenate([k_nope, np.broadcast_to(k_rope, (heads,) + k_rope.shape)], axis=-1)

    scores = (query @ key.transpose(0, 2, 1)) * softmax_scale(c)  # [heads, tokens, tokens]
    causal = np.triu(np.ones((tokens, tokens), dtype=bool), k=1)
    scores = np.where(causal, -np.inf, scores)
    output = softmax(scores) @ value  # [heads, tokens, v_head_dim]
    output = output.transpose(1, 0, 2).reshape(tokens, heads * c.v_head_dim)
    return linear(
        output,
        weights.get(prefix + "o_proj.weight", (hidden, heads * c.v_head_dim)),
        weights.bias(prefix + "o_proj.bias", hidden),
    )


def mlp(weights, prefix, x, intermediate):
    """SiLU-gated MLP: down(silu(gate(x)) * up(x))."""
    hidden = x.shape[-1]
    gate = weights.get(prefix + "gate_proj.weight", (intermediate, hidden))
    up = weights.get(prefix + "up_proj.weight", (intermediate, hidden))
    down = weights.get(prefix + "down_proj.weight", (hidden, intermediate))
    return linear(silu(linear(x, gate)) * linear(x, up), down)


def selection_margin(values, keep):
    """Per row: value of the keep-th largest minus the (keep+1)-th largest (inf if none rejected)."""
    if keep >= values.shape[-1]:
        return np.full(values.shape[0], np.inf)
    ordered = -np.sort(-values, axis=-1)
    return ordered[:, keep - 1] - ordered[:, keep]


def top_indices(values, k):
    """Indices of the k largest per row (ties broken by lower index)."""
    return np.argsort(-values, axis=-1, kind="stable")[:, :k]


@dataclass
class Routing:
    expert_ids: np.ndarray  # [tokens, num_experts_per_tok]
    expert_weights: np.ndarray  # [tokens, num_experts_per_tok]
    margin: float  # smallest chosen-vs-rejected gap in either selection stage


def route(config, x, gate_weight, score_bias):
    """DeepseekV3TopkRouter: sigmoid scores, group-limited top-k on biased scores."""
    c = config
    tokens = x.shape[0]
    scores = sigmoid(linear(x, gate_weight))  # [tokens, n_routed_experts]
    scores_for_choice = scores + score_bias[None, :]

    experts_per_group = c.n_routed_experts // c.n_group
    grouped = scores_for_choice.reshape(tokens, c.n_group, experts_per_group)
    group_scores = -np.sort(-grouped, axis=-1)[..., :2].sum(axis=-1)  # sum of each group's top 2
    chosen_groups = top_indices(group_scores, c.topk_group)
    group_mask = np.zeros((tokens, c.n_group), dtype=bool)
    np.put_along_axis(group_mask, chosen_groups, True, axis=-1)
    expert_mask = np.repeat(group_mask, experts_per_group, axis=-1)
    # transformers fills the experts of dropped groups with 0.0, not -inf.
    masked_scores = np.where(expert_mask, scores_for_choice, 0.0)

    expert_ids = top_indices(masked_scores, c.num_experts_per_tok)
    expert_weights = np.take_along_axis(scores, expert_ids, axis=-1)  # unbiased scores
    if c.norm_topk_prob:
        expert_weights = expert_weights / (expert_weights.sum(axis=-1, keepdims=True) + 1e-20)
    expert_weights = expert_weights * c.routed_scaling_factor

    margin = min(
        float(np.min(selection_margin(group_scores, c.topk_group))),
        float(np.min(selection_margin(masked_scores, c.num_experts_per_tok))),
    )
    return Routing(expert_ids, expert_weights, margin)


def moe(config, weights, x):
    """Routed experts weighted by the router plus the always-on shared experts."""
    c = config
    hidden = x.shape[-1]
    routing = route(
        c,
        x,
        weights.get("mlp.gate.weight", (c.n_routed_experts, hidden)),
        weights.get("mlp.gate.e_score_correction_bias", (c.n_routed_experts,)),
    )
    output = np.zeros_like(x)
    for expert in np.unique(routing.expert_ids):
        token_rows, slots = np.nonzero(routing.expert_ids == expert)
        expert_out = mlp(weights, f"mlp.experts.{expert}.", x[token_rows], c.moe_intermediate_size)
        np.add.at(output, token_rows, expert_out * routing.expert_weights[token_rows, slots][:, None])
    if c.n_shared_experts:
        output = output + mlp(weights, "mlp.shared_experts.", x, c.moe_intermediate_size * c.n_shared_experts)
    return output, routing


def decoder_layer(config, checkpoint, layer, x, cos, sin):
    """Pre-norm block: x + attn(norm(x)), then + mlp/moe(norm(x)). Returns (x, routing or None)."""
    c = config
    weights = LayerWeights(checkpoint, layer)
    normed = rms_norm(x, weights.get("input_layernorm.weight", (c.hidden_size,)), c.rms_norm_eps)
    x = x + attention(c, weights, normed, cos, sin)
    normed = rms_norm(x, weights.get("post_attention_layernorm.weight", (c.hidden_size,)), c.rms_norm_eps)
    if layer < c.first_k_dense_replace:
        return x + mlp(weights, "mlp.", normed, c.intermediate_size), None
    moe_out, routing = moe(c, weights, normed)
    return x + moe_out, routing


@dataclass
class ForwardResult:
    logits: np.ndarray  # float64 [tokens (or 1 with last_only), vocab]
    hidden_states: list  # embeddings, the output of each layer, then the final-normed states
    routings: list = field(default_factory=list)  # Routing per MoE layer, in layer order
    routing_margin: float = math.inf


def lm_head_weight_name(config):
    return "model.embed_tokens.weight" if config.tie_word_embeddings else "lm_head.weight"


def lm_head(config, checkpoint, x, chunk_rows=16384):
    """x @ lm_head.T, reading the [vocab, hidden] matrix in row chunks to bound memory."""
    name = lm_head_weight_name(config)
    logits = np.empty((x.shape[0], config.vocab_size), dtype=np.float64)
    for start in range(0, config.vocab_size, chunk_rows):
        rows = np.arange(start, min(start + chunk_rows, config.vocab_size))
        logits[:, rows] = x @ checkpoint.get(name, (config.vocab_size, config.hidden_size), rows=rows).T
    return logits


def forward(config, checkpoint, token_ids, last_only=False):
    """DeepseekV3ForCausalLM forward over one sequence at positions 0..n-1, no cache."""
    c = config
    token_ids = np.asarray(token_ids, dtype=np.int64)
    if token_ids.ndim != 1 or token_ids.size == 0:
        raise ReferenceError("token ids: need a non-empty list")
    bad = token_ids[(token_ids < 0) | (token_ids >= c.vocab_size)]
    if bad.size:
        raise ReferenceError(f"token ids: {int(bad[0])} is outside the vocabulary [0, {c.vocab_size})")

    x = checkpoint.get("model.embed_tokens.weight", (c.vocab_size, c.hidden_size), rows=token_ids)
    cos, sin = rope_cos_sin(c, np.arange(token_ids.size))
    hidden_states = [x]
    routings = []
    for layer in range(c.num_hidden_layers):  # layers >= num_hidden_layers (MTP) are ignored
        x, routing = decoder_layer(c, checkpoint, layer, x, cos, sin)
        hidden_states.append(x)
        if routing is not None:
            routings.append(routing)
    x = rms_norm(x, checkpoint.get("model.norm.weight", (c.hidden_size,)), c.rms_norm_eps)
    hidden_states.append(x)
    if last_only:
        x = x[-1:]
    logits = lm_head(c, checkpoint, x)
    margin = min([r.margin for r in routings], default=math.inf)
    return ForwardResult(logits, hidden_states, routings, margin)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def parse_ids(text):
    try:
        return [int(t) for t in text.split(",") if t.strip() != ""]
    except ValueError:
        raise ReferenceError(f"--ids: '{text}' is not a comma-separated list of integers")


def main(argv=None):
    parser = argparse.ArgumentParser(description="NumPy float64 reference forward pass of DeepSeek-V3.")
    parser.add_argument("-m", "--model", required=True, help="Hugging Face checkpoint directory")
    parser.add_argument("--ids", required=True, help="comma-separated token ids, e.g. 0,5,17")
    parser.add_argument("--out", required=True, help="output .npy: float32 logits [tokens, vocab]")
    parser.add_argument("--last", action="store_true", help="only the last token's logits [1, vocab]")
    parser.add_argument("--report-margin", action="store_true", help="print 'routing_margin <value>'")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.model)
        checkpoint = load_checkpoint(args.model, config)
        result = forward(config, checkpoint, parse_ids(args.ids), last_only=args.last)
        np.save(args.out, result.logits.astype(np.float32))
    except ReferenceError as e:
        print(f"deepseek_v3_ref: error: {e}", file=sys.stderr)
        return 1
    if args.report_margin:
        print(f"routing_margin {result.routing_margin:.9g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
