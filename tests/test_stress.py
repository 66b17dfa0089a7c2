"""The build cache under concurrent use and real SIGKILLs (issue 9).

Invariants: every entry a reader is handed has a manifest whose checksum matches its model and
the model loads; no corrupt entry is ever found (entries appear only by an atomic rename); a
killed build leaves at most a hidden temporary folder, swept by a later build; the next run
recovers. CI: 2 concurrent workers and 6 kills; ``WB_STRESS_KILLS=N`` runs more.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx

from conftest import tiny_cnn
from workbench.core.build import optimize
from workbench.core.cache import BuildCache
from workbench.core.model import load_model

KILLS = int(os.environ.get("WB_STRESS_KILLS", "6"))

# A worker builds recipes in a loop: fold, fuse and prune-magnitude at varying ratios (each ratio
# is a new cache key, so every iteration writes an entry). argv: model, cache, seed, count.
WORKER = """
import sys
from workbench.core.build import optimize
from workbench.core.cache import BuildCache
model, root, seed, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for i in range(count):
    r = ["fold", "fuse", f"prune-magnitude:sparsity={(seed * 7 + i) % 90 / 100 + 0.05:.2f}"][i % 3]
    res = optimize(model, r, cache=BuildCache(root))
    print(res.key, res.cache_hit, flush=True)
"""


def _entries(root: Path) -> list[Path]:
    return [p for p in root.glob("*/*") if p.is_dir() and not p.name.startswith(".")]


def _check_cache(root: Path) -> int:
    """Open every entry like a reader; return how many were served (all must be sound)."""
    cache = BuildCache(root)
    served = 0
    for d in _entries(root):
        entry = cache.get(d.name)
        assert entry is not None, f"entry {d.name} was corrupt"
        load_model(entry.model_path)  # checker + shape inference on what would be served
        served += 1
    assert cache.corrupt_removed == 0
    return served


def _spawn(model: Path, root: Path, seed: int, count: int) -> subprocess.Popen:
    env = {**os.environ, "WORKBENCH_CACHE_DIR": str(root.parent)}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(model), str(root), str(seed), str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_processes_build_same_and_different_recipes(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(tiny_cnn(), str(model))
    root = tmp_path / "cache" / "builds"
    # seeds 0 and 0: the same recipes at the same time; seed 5: different ratios
    procs = [_spawn(model, root, seed, 9) for seed in (0, 0, 5)]
    keys = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        keys += [ln.split()[0] for ln in out.splitlines()]
    assert len(keys) == 27
    assert _check_cache(root) == len(set(keys))
    assert not [p for p in root.glob("*/.*")], "temporary folders left by finished builds"


def test_sigkill_at_random_points_never_leaves_a_corrupt_entry(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(tiny_cnn(), str(model))
    root = tmp_path / "cache" / "builds"
    rng = random.Random(9)
    for k in range(KILLS):
        p = _spawn(model, root, k, 1000)
        p.stdout.readline()  # the interpreter is up and one build went through: kill mid-stream
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL
        _check_cache(root)
    leftovers = list(root.glob("*/.*"))
    # the next run recovers: every recipe builds or comes from the cache, and stale temporaries go
    BuildCache.STALE_TMP_S, saved = 0.0, BuildCache.STALE_TMP_S
    try:
        for prefix in {p.parent for p in leftovers}:
            BuildCache(root)._sweep(prefix)
        for r in ("fold", "fuse", "prune-magnitude:sparsity=0.05"):
            res = optimize(str(model), r, cache=BuildCache(root))
            load_model(res.model.proto)
    finally:
        BuildCache.STALE_TMP_S = saved
    assert not list(root.glob("*/.*"))
    served = _check_cache(root)
    assert served >= 3
    (tmp_path / "stress.json").write_text(json.dumps({"kills": KILLS, "entries": served,
                                                      "leftover_temporaries": len(leftovers)}))


def test_stale_temporaries_are_swept_but_fresh_ones_kept(tmp_path: Path) -> None:
    cache = BuildCache(tmp_path)
    key = "ab" + "0" * 62
    old, fresh = tmp_path / "ab" / ".ab000-old", tmp_path / "ab" / ".ab000-fresh"
    for d in (old, fresh):
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(b"partial")
    os.utime(old, (time.time() - 2 * BuildCache.STALE_TMP_S,) * 2)
    cache.put(key, tiny_cnn().SerializeToString(), {})
    assert not old.exists() and fresh.exists()
    assert cache.get(key) is not None
