"""Train gptoss's built-in demo model and write it as gptoss_cli/data/demo.gguf.

    pip install -e ".[test]"          # torch (CPU) and transformers: development only
    python scripts/train_demo_model.py [--steps 4800] [--out gptoss_cli/data/demo.gguf]

A tiny gpt-oss (2 attention kinds over its layers, sinks, 4 experts with top-2
routing, MXFP4 experts, the real o200k_harmony tokenizer with all 201088 ids) is
trained with transformers' `GptOssForCausalLM` on the conversations of
`demo_data.py`, deterministically (fixed seeds, CPU, 2 threads).

Two things keep it small and fast on a CPU:

* Only the ~400 token ids that the conversations use are trained. Every other
  output row is one shared vector `u`, so the full-vocabulary softmax equals a
  softmax over the trained ids plus one class `u` whose logit is raised by
  ln(number of untrained ids): training is exact for the full 201088-way model,
  at the cost of a 400-way one. The untrained embedding rows are zero.
* Experts are trained through a fake MXFP4 quantizer (straight-through
  gradient) during the last part of training, so the quantized file behaves
  like the float model.

The result is saved as a Hugging Face checkpoint (bf16, experts as plain
`gate_up_proj` / `down_proj`, the real tokenizer.json), converted with
`gptoss convert` (experts to MXFP4), and quantized with `gptoss quantize ... q8_0`
(dense weights to Q8_0, like ggml-org's files; the output matrix to MXFP4,
which keeps the file under 25 MB beside the 13 MB tokenizer), then checked with gptoss's own
runtime: greedy answers to random sums, and three-turn chats through the chat session.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # o200k oracle and tokenizer.json writer (test helpers)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import demo_data  # noqa: E402

VOCAB = 201088
SHAPE = dict(hidden=32, layers=2, experts=4, top_k=2, expert_ffn=128, heads=4, kv_heads=2, head_dim=64)


# ------------------------------------------------------------------ model


def hf_config(vocab_size: int):
    from transformers import GptOssConfig

    s = SHAPE
    cfg = GptOssConfig(
        num_hidden_layers=s["layers"], num_local_experts=s["experts"], num_experts_per_tok=s["top_k"],
        vocab_size=vocab_size, hidden_size=s["hidden"], intermediate_size=s["expert_ffn"],
        head_dim=s["head_dim"], num_attention_heads=s["heads"], num_key_value_heads=s["kv_heads"],
        sliding_window=128, max_position_embeddings=131072, rms_norm_eps=1e-5,
        swiglu_limit=7.0, swiglu_alpha=1.702,
        rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                         "beta_slow": 1.0, "truncate": False, "original_max_position_embeddings": 4096},
        layer_types=["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(s["layers"])],
        tie_word_embeddings=False, attention_bias=True,
    )
    if vocab_size == VOCAB:
        cfg.eos_token_id, cfg.bos_token_id, cfg.pad_token_id = 200002, 199998, 199999
    cfg._attn_implementation = "eager"
    return cfg


_E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
_MIDS = (_E2M1[1:] + _E2M1[:-1]) / 2


def mxfp4_round(w: torch.Tensor) -> torch.Tensor:
    """Values of `w` after MXFP4 quantization (blocks of 32 along dim 1), as gguf.quants picks them.

    Scale 2^(floor(log2(max|block|)) - 2), each element to the nearest E2M1 value.
    """
    e, i, o = w.shape
    b = w.permute(0, 2, 1).reshape(e, o, i // 32, 32)
    amax = b.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(amax > 0, torch.exp2(torch.floor(torch.log2(amax.clamp_min(1e-30))) - 2), torch.ones_like(amax))
    v = (b / scale).abs().clamp(max=6.0)
    q = _E2M1[torch.bucketize(v, _MIDS)] * torch.sign(b) * scale
    return q.reshape(e, o, i).permute(0, 2, 1)


class FakeMXFP4Rows(torch.nn.Module):
    """As FakeMXFP4 for a [rows, cols] matrix quantized in blocks along its rows (the output matrix)."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not FakeMXFP4.enabled:
            return w
        return w + (mxfp4_round(w.detach().T[None])[0].T - w).detach()


class FakeMXFP4(torch.nn.Module):
    """Parametrization: forward sees MXFP4-rounded weights, gradients pass straight through."""

    enabled = False

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not FakeMXFP4.enabled:
            return w
        return w + (mxfp4_round(w.detach()) - w).detach()


def build_model(vocab_size: int, seed: int):
    from torch.nn.utils import parametrize
    from transformers import GptOssForCausalLM

    torch.manual_seed(seed)
    model = GptOssForCausalLM(hf_config(vocab_size))
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.sinks.normal_(0.0, 0.5)
    for layer in model.model.layers:
        parametrize.register_parametrization(layer.mlp.experts, "gate_up_proj", FakeMXFP4())
        parametrize.register_parametrization(layer.mlp.experts, "down_proj", FakeMXFP4())
    parametrize.register_parametrization(model.lm_head, "weight", FakeMXFP4Rows())
    return model


# ------------------------------------------------------------------ data


class Batches:
    """Random training batches in the compact vocabulary: inputs, targets, loss mask."""

    def __init__(self, enc, vocab: list[int], seed: int, multi_turn: bool = False):
        self.enc = enc
        self.index = {t: i for i, t in enumerate(vocab)}
        self.rng = random.Random(seed)
        self.multi_turn = multi_turn

    def encode(self, examples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = max(len(e.prompt) + len(e.completion) for e in examples)
        x = torch.zeros((len(examples), n), dtype=torch.long)
        mask = torch.zeros((len(examples), n - 1), dtype=torch.bool)
        for r, e in enumerate(examples):
            seq = [self.index[t] for t in e.prompt + e.completion]
            x[r, : len(seq)] = torch.tensor(seq)
            mask[r, len(e.prompt) - 1 : len(seq) - 1] = True
        return x[:, :-1], x[:, 1:], mask

    def sample(self, n: int):
        return self.encode([demo_data.sample_example(self.enc, self.rng, multi_turn=self.multi_turn)
                            for _ in range(n)])


def compact_logits(model, x: torch.Tensor, n_untrained: int) -> torch.Tensor:
    logits = model(input_ids=x, use_cache=False).logits
    bias = torch.zeros(logits.shape[-1])
    bias[-1] = math.log(n_untrained)
    return logits + bias


def exact_match(model, batches: Batches, pairs, n_untrained: int) -> float:
    """Fraction of sum conversations whose every completion token is the argmax (greedy would produce it)."""
    rng = random.Random(123)
    ok = 0
    with torch.no_grad():
        for i in range(0, len(pairs), 50):
            x, y, m = batches.encode([demo_data.sample_example(batches.enc, rng, p) for p in pairs[i : i + 50]])
            pred = compact_logits(model, x, n_untrained).argmax(-1)
            ok += int(((pred == y) | ~m).all(dim=1).sum())
    return ok / len(pairs)


def train(model, batches: Batches, n_untrained: int, steps: int, batch: int, lr: float, log) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    warm = 200
    qat_from = int(steps * 0.6)
    eval_pairs = [(a, b) for a in range(100) for b in range(100)]
    random.Random(7).shuffle(eval_pairs)
    t0 = time.time()
    for step in range(1, steps + 1):
        FakeMXFP4.enabled = step >= qat_from
        f = step / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / (steps - warm)))
        for g in opt.param_groups:
            g["lr"] = lr * max(f, 0.02)
        x, y, m = batches.sample(batch)
        logits = compact_logits(model, x, n_untrained)
        loss = torch.nn.functional.cross_entropy(logits[m], y[m])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps:
            msg = f"step {step} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} {time.time() - t0:.0f}s"
            if step % 500 == 0 or step == steps:
                msg += f" exact {exact_match(model, batches, eval_pairs[:200], n_untrained):.3f}"
                msg += " (qat)" if FakeMXFP4.enabled else ""
            log(msg)


# ------------------------------------------------------------------ export


def export_checkpoint(model, vocab: list[int], folder: Path) -> None:
    """Full-vocabulary HF checkpoint (bf16): trained rows at their real ids, `u` in every other output row."""
    from torch.nn.utils import parametrize
    from transformers import GptOssForCausalLM

    from checkpoints import write_tokenizer_files

    FakeMXFP4.enabled = True
    for layer in model.model.layers:
        parametrize.remove_parametrizations(layer.mlp.experts, "gate_up_proj", leave_parametrized=True)
        parametrize.remove_parametrizations(layer.mlp.experts, "down_proj", leave_parametrized=True)
    parametrize.remove_parametrizations(model.lm_head, "weight", leave_parametrized=True)
    sd = model.state_dict()
    ids = torch.tensor(vocab)
    emb = torch.zeros(VOCAB, SHAPE["hidden"])
    emb[ids] = sd["model.embed_tokens.weight"][: len(vocab)]
    head = sd["lm_head.weight"][len(vocab)].repeat(VOCAB, 1)
    head[ids] = sd["lm_head.weight"][: len(vocab)]
    full = GptOssForCausalLM(hf_config(VOCAB))
    sd = dict(sd, **{"model.embed_tokens.weight": emb, "lm_head.weight": head})
    full.load_state_dict(sd, strict=True)
    full = full.to(torch.bfloat16)
    folder.mkdir(parents=True, exist_ok=True)
    full.save_pretrained(folder, safe_serialization=True)
    write_tokenizer_files(folder, VOCAB)
    (folder / "generation_config.json").unlink(missing_ok=True)


def greedy_accuracy(gguf_path: Path, n: int, seed: int) -> tuple[float, list[str]]:
    """Greedy `gptoss run` answers (our runtime) to n random sums: fraction correct, and the failures."""
    from gptoss_cli import load_model
    from gptoss_cli.harmony import Role
    from gptoss_cli.prompt import build_conversation

    m = load_model(gguf_path)
    enc = m.encoding
    rng = random.Random(seed)
    stops = set(enc.stop_tokens_for_assistant_actions())
    good, bad = 0, []
    for _ in range(n):
        a, b = rng.randrange(100), rng.randrange(100)
        prompt = enc.render_conversation_for_completion(build_conversation(f"What is {a} + {b}?"), Role.ASSISTANT)
        cache = m.new_cache()
        logits = m.forward(prompt, cache)
        out: list[int] = []
        while len(out) < 80:
            t = int(np.argmax(logits))
            out.append(t)
            if t in stops:
                break
            logits = m.forward([t], cache)
        msgs = enc.parse_messages_from_completion_tokens(out, Role.ASSISTANT)
        final = [x.text for x in msgs if x.channel == "final"]
        if final and str(a + b) in final[-1] and msgs[0].channel == "analysis":
            good += 1
        else:
            bad.append(f"{a} + {b}: {enc.decode(out)!r}")
    return good / n, bad


def chat_accuracy(gguf_path: Path, chats: int, turns: int, seed: int) -> tuple[float, list[str]]:
    """Greedy `gptoss chat` conversations of `turns` sums each, through the chat session (earlier
    analysis dropped as chat drops it): the fraction of turns whose final answer holds the sum."""
    from demo_checks import wrong_chat_turns
    from gptoss_cli import load_model

    rng = random.Random(seed)
    wrong = wrong_chat_turns(load_model(gguf_path), chats, turns, rng, lambda _: demo_data.random_date(rng))
    bad = [f"turn {chat * turns + turn + 1}: {a} + {b}: {final!r}" for chat, turn, a, b, final in wrong]
    return 1 - len(wrong) / (chats * turns), bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4800, help="training steps (4800 made the packaged demo.gguf)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "gptoss_cli" / "data" / "demo.gguf")
    ap.add_argument("--state", type=Path, default=Path("demo-train-state.pt"),
                    help="where the trained weights are saved before export (reused with --skip-training)")
    ap.add_argument("--skip-training", action="store_true", help="export the weights saved in --state")
    ap.add_argument("--multi-turn", action=argparse.BooleanOptionalAction, default=True,
                    help="also train on 2-3 turn chats rendered as `gptoss chat` renders them (as the packaged "
                    "demo.gguf was; --no-multi-turn: one-turn conversations only, the demo before 2026-12-07)")
    ap.add_argument("--keep-checkpoint", type=Path, default=None, help="also keep the HF checkpoint here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    random.seed(args.seed)

    from o200k import o200k_arrays

    from gptoss_cli.harmony import HarmonyEncoding
    from gptoss_cli.tokenizer import Tokenizer

    enc = HarmonyEncoding(Tokenizer.from_arrays(o200k_arrays()))
    vocab = demo_data.vocabulary(enc)
    n_untrained = VOCAB - len(vocab)
    print(f"trained vocabulary: {len(vocab)} ids; shape {SHAPE}", flush=True)
    model = build_model(len(vocab) + 1, args.seed)
    batches = Batches(enc, vocab, args.seed, multi_turn=args.multi_turn)
    t0 = time.time()
    if args.skip_training:
        model.load_state_dict(torch.load(args.state))
    else:
        train(model, batches, n_untrained, args.steps, args.batch, args.lr, lambda s: print(s, flush=True))
        torch.save(model.state_dict(), args.state)
    train_s = time.time() - t0

    from gptoss_cli.convert.convert import convert_checkpoint
    from gptoss_cli.convert.quantize import quantize_gguf

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "gptoss-demo"
        export_checkpoint(model, vocab, ckpt)
        convert_checkpoint(ckpt, Path(tmp) / "demo-bf16.gguf", "auto", progress=False)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        part = args.out.with_suffix(".part.gguf")
        quantize_gguf(Path(tmp) / "demo-bf16.gguf", part, "q8_0", output_type="mxfp4", force=True, progress=False)
        if args.keep_checkpoint:
            shutil.copytree(ckpt, args.keep_checkpoint, dirs_exist_ok=True)
    acc, bad = greedy_accuracy(part, 200, seed=2026)
    chat_acc, chat_bad = chat_accuracy(part, 30, 3, seed=2027)
    part.replace(args.out)
    report = {"train_seconds": round(train_s), "steps": None if args.skip_training else args.steps, "greedy_accuracy_200": acc,
              "chat_turn_accuracy_30x3": chat_acc,
              "size_bytes": args.out.stat().st_size, "shape": SHAPE, "trained_ids": len(vocab)}
    print(json.dumps(report, indent=2))
    for line in bad[:10] + chat_bad[:10]:
        print("wrong:", line)


if __name__ == "__main__":
    main()
