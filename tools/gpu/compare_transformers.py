#!/usr/bin/env python3
"""Checks longctx's logits against Hugging Face transformers' LlamaForCausalLM.

  compare_transformers.py MODEL_DIR PREFILL DUMP[:TOLERANCE] ...

Each DUMP is a file of float32 rows written by logits_dump (rows for
positions PREFILL-1 .. n-1), with DUMP.tokens holding the token ids.
transformers runs the whole sequence in float32 on the GPU (CPU if none) and
each dump's rows must be within TOLERANCE (default 1e-3: our KV cache is
fp16, theirs fp32) of its logits, in
units of the row's largest |logit| (at least 1); its argmax must agree
wherever the reference's top-2 margin exceeds 0.1 of that unit. Prints one
line per dump; exits non-zero on any failure, or if transformers cannot load
the folder.
"""
import sys

import numpy as np
import torch
from transformers import LlamaForCausalLM


def main(argv):
    model_dir, prefill = argv[1], int(argv[2])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.to(device).eval()
    failed = 0
    cache = {}
    for arg in argv[3:]:
        path, _, tol = arg.partition(":")
        tol = float(tol) if tol else 1e-3
        tokens = [int(t) for t in open(path + ".tokens").read().strip().split(",")]
        key = tuple(tokens)
        if key not in cache:
            with torch.no_grad():
                ids = torch.tensor([tokens], device=device)
                cache[key] = model(ids).logits[0].double().cpu().numpy()
        ref = cache[key][prefill - 1:]
        ours = np.fromfile(path, dtype=np.float32).reshape(ref.shape[0], -1)
        if ours.shape != ref.shape:
            print(f"FAIL {path}: shape {ours.shape}, transformers {ref.shape}")
            failed += 1
            continue
        scale = np.maximum(1.0, np.abs(ref).max(axis=1, keepdims=True))
        err = float((np.abs(ours - ref) / scale).max())
        top2 = np.sort(ref, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) / scale[:, 0] > 0.1
        mismatch = int(((ours.argmax(1) != ref.argmax(1)) & clear).sum())
        ok = err <= tol and mismatch == 0
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {path}: {ours.shape[0]} rows, max "
              f"err {err:.3g} of the row scale (tol {tol:g}), {mismatch} argmax "
              f"mismatches where the margin is clear")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
