"""The runtime against transformers' float32 GptOssForCausalLM on tiny random models.

Each model's float weights are exactly the values stored in its GGUF (MXFP4
experts, BF16 or Q8_0 dense weights), so any difference is the runtime's own.
Every test runs in both precisions (docs/design.md §2.8), each against its own
bar: `exact` within 2e-3 of the logits' std (it measures about 1e-6) and the
incremental, chunked and batched passes within 1e-4 of the largest logit; `fast`
(activations rounded to two 8-bit pieces) top-1 >= 0.99 and at most half of
llama.cpp's own mean error on these files (1.2e-2 of the std,
docs/compatibility.md; it measures about 1e-4), the passes within 1e-3 (rounding
to a grid turns a float32 difference between two passes into a grid step now and
then).
"""

from __future__ import annotations

import numpy as np
import pytest

from tiny_models import TinySpec, build_tiny_model

from gptoss_cli import load_model

SPECS = {
    # window shorter than the sequence, GQA 4:1, top-2 of 4
    "l2-e4-k2-gqa4-w16-bf16": TinySpec(
        n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=1,
        head_dim=16, vocab=512, sliding_window=16, context_length=1024, seed=1, dense="bf16",
    ),
    # window longer than the sequence, GQA 4:1, top-4 of 8
    "l3-e8-k4-gqa4-w512-bf16": TinySpec(
        n_layers=3, n_experts=8, top_k=4, hidden=96, expert_ffn=64, n_heads=8, n_kv_heads=2,
        head_dim=32, vocab=1000, sliding_window=512, context_length=1024, seed=2, dense="bf16",
    ),
    # no grouping, 4 layers, 16 experts, Q8_0 dense weights as ggml-org publishes
    "l4-e16-k4-mha-w32-q8": TinySpec(
        n_layers=4, n_experts=16, top_k=4, hidden=128, expert_ffn=96, n_heads=8, n_kv_heads=8,
        head_dim=16, vocab=800, sliding_window=32, context_length=1024, seed=3, dense="q8_0",
    ),
    # the first shape again with Q8_0 dense weights, real head_dim 64
    "l2-e4-k2-gqa2-w16-q8-hd64": TinySpec(
        n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=2,
        head_dim=64, vocab=512, sliding_window=16, context_length=1024, seed=4, dense="q8_0",
    ),
}
SEQ_LEN = 300
# precision -> (least top-1 agreement, most mean |error| / std, most difference between passes / max |logit|)
BARS = {"exact": (0.995, 0.002, 1e-4), "fast": (0.99, 0.006, 1e-3)}


@pytest.fixture(params=sorted(BARS))
def precision(request):
    return request.param


@pytest.fixture(scope="module", params=sorted(SPECS))
def tiny(request, tmp_path_factory):
    spec = SPECS[request.param]
    model = build_tiny_model(spec, tmp_path_factory.mktemp(request.param))
    ids = np.random.default_rng(spec.seed + 100).integers(0, spec.vocab, SEQ_LEN)
    return model, ids, model.reference_logits(ids)


def test_logits_match_transformers(tiny, precision):
    model, ids, ref = tiny
    m = load_model(model.gguf_path, threads=2, precision=precision)
    ours = m.logits(ids)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    agree = float(np.mean(ours.argmax(-1) == ref.argmax(-1)))
    rel_mae = float(np.mean(np.abs(ours - ref)) / ref.std())
    print(f"\n{model.gguf_path.parent.name} {precision}: top-1 agreement {agree:.4f}, mean |err| / std {rel_mae:.2e}")
    least_agree, most_err, _ = BARS[precision]
    assert agree >= least_agree
    assert rel_mae <= most_err


def test_incremental_decoding_equals_full_pass(tiny, precision):
    model, ids, _ = tiny
    m = load_model(model.gguf_path, threads=2, precision=precision)
    full = m.logits(ids)
    window = model.config.sliding_window
    prefill = max(1, window - 5)  # decode steps then cross the window boundary
    steps = min(len(ids), prefill + window + 10)
    cache = m.new_cache()
    got = [m.forward(ids[:prefill], cache, all_logits=True)]
    for t in range(prefill, steps):
        got.append(m.forward(ids[t : t + 1], cache)[None, :])
    got = np.concatenate(got)
    ref = full[:steps]
    assert np.max(np.abs(got - ref)) <= BARS[precision][2] * np.max(np.abs(ref))


def test_chunked_prefill_equals_one_block(tiny, precision, monkeypatch):
    model, ids, _ = tiny
    m = load_model(model.gguf_path, threads=1, precision=precision)
    full = m.logits(ids)
    monkeypatch.setattr("gptoss_cli.model.PREFILL_CHUNK", 37)
    chunked = m.logits(ids)
    assert np.max(np.abs(chunked - full)) <= BARS[precision][2] * np.max(np.abs(full))


def test_weights_are_views_of_the_file_map(tiny):
    model, _, _ = tiny
    m = load_model(model.gguf_path)
    w = m.model.w
    mats = [w.token_embd.data, w.output.data]
    for layer in w.layers:
        mats += [layer.wq.data, layer.wk.data, layer.wv.data, layer.wo.data, layer.router.data,
                 layer.gate.data, layer.up.data, layer.down.data, layer.attn_norm, layer.sinks]
    for arr in mats:
        assert np.shares_memory(arr, m.gguf.data)


def test_rollback_to_a_checkpoint_equals_a_fresh_pass(tiny, precision):
    """A chat turn: prompt, reply, then back to the prompt's end and a different continuation."""
    model, ids, _ = tiny
    m = load_model(model.gguf_path, threads=1, precision=precision)
    window = model.config.sliding_window
    prompt, reply, other = ids[:40], ids[40 : 40 + window + 20], ids[200:230]
    cache = m.new_cache()
    m.forward(prompt, cache)
    cp = cache.checkpoint()
    m.forward(reply, cache)  # long enough to overwrite every ring slot
    cache.rollback(cp)
    assert cache.n_past == len(prompt)
    got = m.forward(other, cache, all_logits=True)
    fresh = m.logits(np.concatenate([prompt, other]))[len(prompt):]
    assert np.max(np.abs(got - fresh)) <= BARS[precision][2] * np.max(np.abs(fresh))


def test_a_batch_of_sequences_equals_each_alone(tiny, precision):
    """forward_batch: a prompt, a decode step and a second prompt in one pass, each over its own
    cache, give what each sequence gives alone, and leave each cache where it would be alone."""
    model, ids, _ = tiny
    m = load_model(model.gguf_path, threads=1, precision=precision)
    bound = BARS[precision][2]
    a, b_prompt, b_next, c = ids[:50], ids[60:90], ids[90:91], ids[100:107]
    ca, cb, cc = m.new_cache(), m.new_cache(), m.new_cache()
    m.forward(b_prompt, cb)
    got = m.forward_batch([(a, ca), (b_next, cb), (c, cc)], all_logits=True)
    alone = [m.logits(a), m.logits(np.concatenate([b_prompt, b_next]))[-1:], m.logits(c)]
    for g, want in zip(got, alone):
        assert g.shape == want.shape
        assert np.max(np.abs(g - want)) <= bound * np.max(np.abs(want))
    assert (ca.n_past, cb.n_past, cc.n_past) == (50, 31, 7)
    last = m.forward_batch([(ids[107:109], cc), (ids[91:92], cb)])  # then both go on
    want = m.logits(np.concatenate([c, ids[107:109]]))[-1]
    assert last[0].shape == want.shape and np.max(np.abs(last[0] - want)) <= bound * np.max(np.abs(want))


def test_decode_steps_are_the_same_bits_alone_or_batched(tiny, precision):
    """Several sequences decoding together (a server's batch) give each the logits it gets alone,
    bit for bit, step after step: the batch-invariant decode step."""
    model, ids, _ = tiny
    m = load_model(model.gguf_path, threads=1, precision=precision)
    prompts = [ids[:20], ids[40:45], ids[50:83], ids[90:91]]

    def steps(batched: bool) -> list[list[np.ndarray]]:
        caches = [m.new_cache() for _ in prompts]
        last = [m.forward(p, c) for p, c in zip(prompts, caches)]
        out = []
        for _ in range(5):
            nxt = [[int(np.argmax(v))] for v in last]
            if batched:
                last = m.forward_batch(list(zip(nxt, caches)))
            else:
                last = [m.forward(t, c) for t, c in zip(nxt, caches)]
            out.append(last)
        return out

    for alone, together in zip(steps(False), steps(True)):
        for a, b in zip(alone, together):
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_a_prompt_fed_in_prefill_chunks_is_the_same_bits_as_one_call(tiny, precision):
    """A server feeds a long prompt one model chunk per step (prefill_chunk): nothing changes."""
    model, ids, _ = tiny
    m = load_model(model.gguf_path, threads=1, precision=precision)
    assert len(ids) > m.prefill_chunk
    whole = m.forward(ids, m.new_cache())
    cache = m.new_cache()
    for a in range(0, len(ids), m.prefill_chunk):
        pieces = m.forward(ids[a : a + m.prefill_chunk], cache)
    assert np.array_equal(whole.view(np.uint32), pieces.view(np.uint32))


def test_a_batch_refuses_one_cache_twice(tiny):
    from gptoss_cli.errors import InputError

    model, ids, _ = tiny
    m = load_model(model.gguf_path, threads=1)
    cache = m.new_cache()
    with pytest.raises(InputError, match="same cache twice"):
        m.forward_batch([(ids[:3], cache), (ids[3:5], cache)])
