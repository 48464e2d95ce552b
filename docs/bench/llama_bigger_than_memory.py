"""llama.cpp (llama-cpp-python) on a model larger than memory, measured as bigger_than_memory.py measures gptoss.

    <llama venv>/bin/python docs/bench/llama_bigger_than_memory.py MODEL.gguf --pp 16 --tg 8 -t 2 [--no-repack] [--verbose]

Prints one JSON object: load time, prefill and decode tok/s, each decoded token's seconds,
and peak RSS; or {"error": ...} when the load fails. --no-repack sets use_extra_bufts =
False in the model parameters (llama-cpp-python has no keyword for it): llama.cpp then
computes from its memory map instead of repacking the weights into anonymous memory.
Imports nothing from gptoss (it runs in llama-cpp-python's own environment).
"""

import argparse
import json
import random
import resource
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--pp", type=int, default=16)
    ap.add_argument("--tg", type=int, default=8)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--no-repack", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="llama.cpp's own log on stderr (why a load failed)")
    a = ap.parse_args()
    import llama_cpp
    import llama_cpp.llama_cpp as lib

    if a.no_repack:
        default_params = lib.llama_model_default_params

        def no_repack():
            p = default_params()
            p.use_extra_bufts = False
            return p

        lib.llama_model_default_params = no_repack
    out = {"engine": "llama.cpp", "llama_cpp_python": llama_cpp.__version__, "model": a.model,
           "threads": a.threads, "repack": not a.no_repack, "use_mmap": True}
    t0 = time.perf_counter()
    try:
        llm = llama_cpp.Llama(model_path=a.model, n_ctx=a.pp + a.tg + 16, n_batch=max(a.pp, 1),
                              n_ubatch=max(a.pp, 1), n_threads=a.threads, n_threads_batch=a.threads, verbose=a.verbose)
    except Exception as e:  # the load's failure is the result
        out.update(error=f"{type(e).__name__}: {e}", load_s=round(time.perf_counter() - t0, 2),
                   peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1))
        print(json.dumps(out), flush=True)
        return
    out["load_s"] = round(time.perf_counter() - t0, 2)
    rnd = random.Random(0)
    vocab = llm.n_vocab()
    llm.reset()
    t = time.perf_counter()
    llm.eval([rnd.randrange(vocab) for _ in range(a.pp)])
    out["pp_tok_s"] = round(a.pp / (time.perf_counter() - t), 3)
    seconds = []
    for _ in range(a.tg):
        t = time.perf_counter()
        llm.eval([rnd.randrange(vocab)])
        seconds.append(round(time.perf_counter() - t, 3))
    out["tg_tok_s"] = round(len(seconds) / sum(seconds), 3)
    half = seconds[len(seconds) // 2:]
    out["tg_second_half_tok_s"] = round(len(half) / sum(half), 3)
    out["token_s"] = seconds
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
