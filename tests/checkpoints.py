"""Write tiny gpt-oss models as safetensors checkpoints, for the convert tests.

    tm = build_tiny_model(TinySpec(...), tmp)              # tests/tiny_models.py
    write_tokenizer_files(folder, vocab_size)               # tokenizer.json & co
    write_hf_checkpoint(tm, folder, shards=2)               # HF layout
    write_original_checkpoint(tm, folder / "original")      # OpenAI's layout

The checkpoint holds exactly the tiny model's values: dense 2-D weights as the
GGUF's BF16 bits, MXFP4 experts turned back into the checkpoints' form
(elements 2j / 2j+1 in the low / high nibble of byte j, the scale byte kept,
gate and up rows interleaved), and the small tensors (norms, biases, sinks,
router) in float32 by default (`small="bf16"` rounds them to bfloat16 as the
released checkpoints store them). This is done here with plain NumPy, apart
from the converter's code, and written with `safetensors.torch` (torch is the
bfloat16 carrier), so the tests check our reader and repacker against an
independent writer. The tokenizer.json comes from transformers'
`TikTokenConverter`, as in the gpt-oss release.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np

from gptoss_cli.gguf_file import GGUFFile

O200K_SPECIAL_NAMES = {
    199998: "<|startoftext|>", 199999: "<|endoftext|>", 200002: "<|return|>", 200003: "<|constrain|>",
    200005: "<|channel|>", 200006: "<|start|>", 200007: "<|end|>", 200008: "<|message|>",
    200012: "<|call|>", 200018: "<|endofprompt|>",
}
N_TINY_SPECIALS = 10
CHAT_TEMPLATE = "{# tiny test template #}{% for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endfor %}"


# ----------------------------------------------------------------- tokenizer


def tokenizer_specials(vocab_size: int) -> dict[int, str]:
    """Special tokens by id: o200k_harmony's for the real vocabulary, else the same
    names shifted to the last ids of a small vocabulary."""
    if vocab_size >= 201088:
        return {i: O200K_SPECIAL_NAMES.get(i, f"<|reserved_{i}|>") for i in range(199998, vocab_size)}
    first = vocab_size - N_TINY_SPECIALS
    return {first + k: O200K_SPECIAL_NAMES.get(199998 + k, f"<|reserved_{first + k}|>") for k in range(N_TINY_SPECIALS)}


def write_tokenizer_files(folder: str | Path, vocab_size: int, *, config_ids: bool = True,
                          tokenizer_config: bool = True) -> dict[bytes, int]:
    """tokenizer.json (+ tokenizer_config.json) for a vocabulary of `vocab_size`.

    The byte-pair ranks are o200k_base's first (vocab_size - specials) ranks (a
    prefix of BPE ranks is closed under merging); returns them.
    """
    from o200k import o200k_ranks
    from transformers.convert_slow_tokenizer import TikTokenConverter

    from gptoss_cli.tokenizer import O200K_PATTERN

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = tokenizer_specials(vocab_size)
    n_bpe = min(specials)
    ranks = {b: r for b, r in o200k_ranks().items() if r < n_bpe}
    tik = folder / ".ranks.tiktoken"
    with open(tik, "wb") as f:
        for b, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(b) + b" " + str(r).encode() + b"\n")
    conv = TikTokenConverter(vocab_file=str(tik), pattern=O200K_PATTERN,
                             extra_special_tokens=[specials[i] for i in sorted(specials)])
    tok = conv.converted()
    tik.unlink()
    tok.save(str(folder / "tokenizer.json"))
    if tokenizer_config:
        first = min(specials)
        names = {v: k for k, v in specials.items()}
        tc = {
            "bos_token": "<|startoftext|>",
            "eos_token": "<|return|>",
            "pad_token": "<|endoftext|>",
            "chat_template": CHAT_TEMPLATE,
            "model_max_length": 1000000000000000019884624838656,
            "tokenizer_class": "PreTrainedTokenizerFast",
        }
        assert names.get("<|startoftext|>") == first
        (folder / "tokenizer_config.json").write_text(json.dumps(tc, indent=2))
    return ranks


# ----------------------------------------------------------------- tensors


def _gguf_raw(tm) -> dict[str, tuple[int, np.ndarray]]:
    out = {}
    with GGUFFile(tm.gguf_path) as gf:
        for name, info in gf.tensors.items():
            out[name] = (info.ggml_type, np.array(gf.tensor(name)))
    return out


def gguf_mxfp4_to_checkpoint(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GGUF MXFP4 rows uint8 [..., nb*17] -> (blocks [..., nb, 16], scales [..., nb]) in checkpoint order."""
    lead = raw.shape[:-1]
    b = raw.reshape(*lead, -1, 17)
    scales = b[..., 0].copy()
    q = b[..., 1:]
    elems = np.empty((*q.shape[:-1], 32), dtype=np.uint8)
    elems[..., :16] = q & 0x0F  # GGUF: element j low nibble
    elems[..., 16:] = q >> 4  # element j+16 high nibble
    blocks = (elems[..., 0::2] | (elems[..., 1::2] << 4)).astype(np.uint8)  # checkpoint: 2j low, 2j+1 high
    return blocks, scales


def _interleave(gate: np.ndarray, up: np.ndarray, axis: int) -> np.ndarray:
    shape = list(gate.shape)
    shape[axis] *= 2
    out = np.empty(shape, dtype=gate.dtype)
    sl_even = [slice(None)] * len(shape)
    sl_odd = [slice(None)] * len(shape)
    sl_even[axis] = slice(0, None, 2)
    sl_odd[axis] = slice(1, None, 2)
    out[tuple(sl_even)] = gate
    out[tuple(sl_odd)] = up
    return out


def _torch(value: np.ndarray, kind: str):
    """NumPy -> torch tensor of the checkpoint dtype: 'bf16bits' (uint16 bf16), 'bf16' (round), 'f32', 'u8'."""
    import torch

    if kind == "bf16bits":
        return torch.from_numpy(np.ascontiguousarray(value).view(np.int16)).view(torch.bfloat16)
    if kind == "bf16":
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).to(torch.bfloat16)
    if kind == "f32":
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if kind == "u8":
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.uint8))
    raise ValueError(kind)


def _dense(raw: dict, name: str):
    t, a = raw[name]
    assert t == 30, f"{name}: the checkpoint helpers need BF16 dense weights (TinySpec(dense='bf16'))"
    return _torch(a, "bf16bits")


def hf_state_dict(tm, *, small: str = "f32", experts: str = "mxfp4") -> dict[str, Any]:
    """The tiny model as a Hugging Face gpt-oss state dict of torch tensors."""
    raw = _gguf_raw(tm)
    w = tm.weights
    cfg = tm.config
    sd: dict[str, Any] = {
        "model.embed_tokens.weight": _dense(raw, "token_embd.weight"),
        "model.norm.weight": _torch(w["output_norm.weight"], small),
        "lm_head.weight": _dense(raw, "output.weight"),
    }
    for i in range(cfg.n_layers):
        p, q = f"blk.{i}.", f"model.layers.{i}."
        sd[q + "input_layernorm.weight"] = _torch(w[p + "attn_norm.weight"], small)
        sd[q + "post_attention_layernorm.weight"] = _torch(w[p + "post_attention_norm.weight"], small)
        for g, t in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj"), ("attn_output", "o_proj")):
            sd[q + f"self_attn.{t}.weight"] = _dense(raw, p + g + ".weight")
            sd[q + f"self_attn.{t}.bias"] = _torch(w[p + g + ".bias"], small)
        sd[q + "self_attn.sinks"] = _torch(w[p + "attn_sinks.weight"], small)
        sd[q + "mlp.router.weight"] = _torch(w[p + "ffn_gate_inp.weight"], small)
        sd[q + "mlp.router.bias"] = _torch(w[p + "ffn_gate_inp.bias"], small)
        x = q + "mlp.experts."
        if experts == "mxfp4":
            gb, gs = gguf_mxfp4_to_checkpoint(raw[p + "ffn_gate_exps.weight"][1])
            ub, us = gguf_mxfp4_to_checkpoint(raw[p + "ffn_up_exps.weight"][1])
            db, ds = gguf_mxfp4_to_checkpoint(raw[p + "ffn_down_exps.weight"][1])
            sd[x + "gate_up_proj_blocks"] = _torch(_interleave(gb, ub, 1), "u8")
            sd[x + "gate_up_proj_scales"] = _torch(_interleave(gs, us, 1), "u8")
            sd[x + "down_proj_blocks"] = _torch(db, "u8")
            sd[x + "down_proj_scales"] = _torch(ds, "u8")
        else:  # bf16 fine-tune: transformers' [E, in, out], gate / up interleaved on the last axis
            gate_up = _interleave(w[p + "ffn_gate_exps.weight"], w[p + "ffn_up_exps.weight"], 1).transpose(0, 2, 1)
            sd[x + "gate_up_proj"] = _torch(gate_up, "bf16")
            sd[x + "down_proj"] = _torch(w[p + "ffn_down_exps.weight"].transpose(0, 2, 1), "bf16")
        sd[x + "gate_up_proj_bias"] = _torch(_interleave(w[p + "ffn_gate_exps.bias"], w[p + "ffn_up_exps.bias"], 1), small)
        sd[x + "down_proj_bias"] = _torch(w[p + "ffn_down_exps.bias"], small)
    return sd


def hf_config_dict(tm, *, mxfp4: bool = True) -> dict:
    from tiny_models import _hf_config

    d = _hf_config(tm.config).to_dict()
    d["architectures"] = ["GptOssForCausalLM"]
    d["model_type"] = "gpt_oss"
    d["eos_token_id"] = tokenizer_ids(tm.config.vocab_size)["eos"]
    d["pad_token_id"] = tokenizer_ids(tm.config.vocab_size)["pad"]
    for k in ("_attn_implementation", "_experts_implementation", "_attn_implementation_autoset"):
        d.pop(k, None)
    if mxfp4:
        d["quantization_config"] = {
            "quant_method": "mxfp4",
            "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"],
        }
    else:
        d.pop("quantization_config", None)
    d["torch_dtype"] = "bfloat16"
    return d


def tokenizer_ids(vocab_size: int) -> dict[str, int]:
    names = {v: k for k, v in tokenizer_specials(vocab_size).items()}
    return {"bos": names["<|startoftext|>"], "eos": names["<|return|>"], "pad": names["<|endoftext|>"]}


def save_sharded(sd: dict[str, Any], folder: Path, shards: int) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    names = list(sd)
    if shards <= 1:
        save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    per = -(-len(names) // shards)
    for k in range(shards):
        part = names[k * per : (k + 1) * per]
        fname = f"model-{k:05d}-of-{shards:05d}.safetensors"
        save_file({n: sd[n] for n in part}, str(folder / fname), metadata={"format": "pt"})
        weight_map.update({n: fname for n in part})
    total = sum(int(t.numel() * t.element_size()) for t in sd.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
    )


def write_hf_checkpoint(tm, folder: str | Path, *, shards: int = 1, small: str = "f32", experts: str = "mxfp4",
                        tokenizer: bool = True) -> Path:
    folder = Path(folder)
    save_sharded(hf_state_dict(tm, small=small, experts=experts), folder, shards)
    (folder / "config.json").write_text(json.dumps(hf_config_dict(tm, mxfp4=experts == "mxfp4"), indent=2))
    if tokenizer:
        write_tokenizer_files(folder, tm.config.vocab_size)
    return folder


def original_state_dict(tm, *, small: str = "f32") -> dict[str, Any]:
    raw = _gguf_raw(tm)
    w = tm.weights
    cfg = tm.config
    sd: dict[str, Any] = {
        "embedding.weight": _dense(raw, "token_embd.weight"),
        "unembedding.weight": _dense(raw, "output.weight"),
        "norm.scale": _torch(w["output_norm.weight"], small),
    }
    for i in range(cfg.n_layers):
        p, q = f"blk.{i}.", f"block.{i}."
        qkv_bits = np.concatenate([raw[p + n + ".weight"][1] for n in ("attn_q", "attn_k", "attn_v")], axis=0)
        sd[q + "attn.norm.scale"] = _torch(w[p + "attn_norm.weight"], small)
        sd[q + "attn.qkv.weight"] = _torch(qkv_bits, "bf16bits")
        sd[q + "attn.qkv.bias"] = _torch(np.concatenate([w[p + n + ".bias"] for n in ("attn_q", "attn_k", "attn_v")]), small)
        sd[q + "attn.sinks"] = _torch(w[p + "attn_sinks.weight"], small)
        sd[q + "attn.out.weight"] = _dense(raw, p + "attn_output.weight")
        sd[q + "attn.out.bias"] = _torch(w[p + "attn_output.bias"], small)
        sd[q + "mlp.norm.scale"] = _torch(w[p + "post_attention_norm.weight"], small)
        sd[q + "mlp.gate.weight"] = _torch(w[p + "ffn_gate_inp.weight"], small)
        sd[q + "mlp.gate.bias"] = _torch(w[p + "ffn_gate_inp.bias"], small)
        gb, gs = gguf_mxfp4_to_checkpoint(raw[p + "ffn_gate_exps.weight"][1])
        ub, us = gguf_mxfp4_to_checkpoint(raw[p + "ffn_up_exps.weight"][1])
        db, ds = gguf_mxfp4_to_checkpoint(raw[p + "ffn_down_exps.weight"][1])
        sd[q + "mlp.mlp1_weight.blocks"] = _torch(_interleave(gb, ub, 1), "u8")
        sd[q + "mlp.mlp1_weight.scales"] = _torch(_interleave(gs, us, 1), "u8")
        sd[q + "mlp.mlp1_bias"] = _torch(_interleave(w[p + "ffn_gate_exps.bias"], w[p + "ffn_up_exps.bias"], 1), small)
        sd[q + "mlp.mlp2_weight.blocks"] = _torch(db, "u8")
        sd[q + "mlp.mlp2_weight.scales"] = _torch(ds, "u8")
        sd[q + "mlp.mlp2_bias"] = _torch(w[p + "ffn_down_exps.bias"], small)
    return sd


def original_config_dict(tm) -> dict:
    c = tm.config
    return {
        "num_hidden_layers": c.n_layers, "num_experts": c.n_experts, "experts_per_token": c.n_experts_used,
        "vocab_size": c.vocab_size, "hidden_size": c.hidden, "intermediate_size": c.expert_ffn,
        "swiglu_limit": c.swiglu_limit, "head_dim": c.head_dim, "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads, "sliding_window": c.sliding_window,
        "initial_context_length": c.rope_original_context, "rope_theta": c.rope_base,
        "rope_scaling_factor": c.rope_scaling_factor, "rope_ntk_alpha": c.yarn_beta_slow,
        "rope_ntk_beta": c.yarn_beta_fast,
    }


def write_original_checkpoint(tm, folder: str | Path, *, small: str = "f32", shards: int = 1) -> Path:
    """`folder` gets config.json + safetensors; the tokenizer goes to the parent, with
    the HF config.json there too (as in the release, whose root holds both layouts)."""
    folder = Path(folder)
    sd = original_state_dict(tm, small=small)
    folder.mkdir(parents=True, exist_ok=True)
    if shards <= 1:
        from safetensors.torch import save_file

        save_file(sd, str(folder / "model.safetensors"))
    else:  # several shard files, no index (every *.safetensors file is read)
        from safetensors.torch import save_file

        names = list(sd)
        per = -(-len(names) // shards)
        for k in range(shards):
            save_file({n: sd[n] for n in names[k * per : (k + 1) * per]}, str(folder / f"model--{k + 1:05d}-of-{shards:05d}.safetensors"))
    (folder / "config.json").write_text(json.dumps(original_config_dict(tm), indent=2))
    parent = folder.resolve().parent
    if not (parent / "tokenizer.json").exists():
        write_tokenizer_files(parent, tm.config.vocab_size)
    return folder
