"""Time llama.cpp (through llama-cpp-python) on a GGUF the way `gptoss bench` times gptoss.

Run as a script by `gptoss bench --vs-llama-cpp`, in a separate process and
possibly another Python environment, so it imports nothing from gptoss.
Prints one JSON object (the fields of gptoss_cli.bench.BenchResult).
Usage: bench_llama_cpp.py MODEL PP TG THREADS REPS CTX_DEPTH
"""

import json
import os
import random
import resource
import statistics
import sys
import time


def main() -> None:
    path, pp, tg, threads, reps, depth = sys.argv[1], *map(int, sys.argv[2:7])
    from llama_cpp import Llama

    batch = max(pp, min(depth, 512), 1)  # the prompt in one batch; a context fill in batches of up to 512
    t0 = time.perf_counter()
    llm = Llama(
        model_path=path, n_ctx=depth + max(pp, 2) + tg + 16, n_batch=batch, n_ubatch=min(batch, 512),
        n_threads=threads, n_threads_batch=threads,
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    vocab = llm.n_vocab()
    rnd = random.Random(0)

    def toks(n):
        return [rnd.randrange(vocab) for _ in range(n)]

    llm.reset()
    llm.eval(toks(max(pp, 2)))  # warm-up, as in gptoss_cli.bench: one prompt and one token, untimed
    llm.eval(toks(1))
    pp_rates, tg_rates = [], []
    for _ in range(reps):
        llm.reset()
        if depth:
            llm.eval(toks(depth))
        if pp:
            ids = toks(pp)
            t = time.perf_counter()
            llm.eval(ids)
            pp_rates.append(pp / (time.perf_counter() - t))
        if tg:
            ids = toks(tg)
            t = time.perf_counter()
            for tok in ids:
                llm.eval([tok])
            tg_rates.append(tg / (time.perf_counter() - t))

    def mean_sd(v):
        return (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else (0.0, 0.0)

    (pp_m, pp_sd), (tg_m, tg_sd) = mean_sd(pp_rates), mean_sd(tg_rates)
    import llama_cpp

    print(json.dumps({
        "engine": "llama.cpp", "model": path, "model_size_mb": os.path.getsize(path) / 2**20, "threads": threads,
        "pp": pp, "tg": tg, "ctx_depth": depth, "reps": reps, "load_s": load_s, "pp_tok_s": pp_m,
        "pp_tok_s_sd": pp_sd, "tg_tok_s": tg_m, "tg_tok_s_sd": tg_sd,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "extra": {"llama_cpp_python": llama_cpp.__version__},
    }))


if __name__ == "__main__":
    main()
