"""One loaded model shared by the stages of one process (a ``reproduce`` run), bounded so memory stays flat.

``ModelCache`` is a ``loader``: ``cache(spec, revision, dtype) -> (model, tokenizer, info)`` — the signature every
stage accepts (``ScoringContext.loader``, ``finetune_arm(loader=)``, ``evaluate_model(loader=)``). The target model is
loaded once for all scoring stages instead of once per selector; at most ``capacity`` models stay resident, and the
least recently used one is dropped (and its memory released) when another model is needed.

A stage that changes a model in place (LoRA) must not hand the changed model back to the cache: the fine-tuning stage
adds its adapter to the shared base and removes it (``peft``'s ``unload``) before it returns.
"""

from __future__ import annotations

import gc
import time
from collections import OrderedDict
from typing import Any, Callable

Key = tuple[str, str | None, str, str]


class ModelCache:
    def __init__(self, load: Callable[..., Any] | None = None, *, device: str = "auto", capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError("ModelCache capacity must be at least 1")
        self._load = load
        self.device = device
        self.capacity = capacity
        self._models: OrderedDict[Key, Any] = OrderedDict()
        self.loads: list[Key] = []  # every real load, in order (tests and the run log count them)
        self.load_seconds = 0.0  # wall time spent in real loads (the pipeline's fixed-overhead breakdown)

    def _dtype_name(self, dtype: str) -> str:
        """``auto`` resolved to what it loads as, so ``auto`` and ``bfloat16`` on a bf16 machine share one load."""
        if dtype != "auto":
            return dtype
        from cpqs_bench import models

        return str(models.torch_dtype("auto", models.pick_device(self.device))).replace("torch.", "")

    def peek(self, spec: str, revision: str | None = None) -> Any:
        """The model of ``spec`` @ ``revision`` already loaded (any dtype), or None; never loads."""
        for (s, r, _dtype, _dev), loaded in reversed(self._models.items()):
            if s == spec and r == revision:
                return loaded[0] if isinstance(loaded, tuple) else loaded
        return None

    def __call__(self, spec: str, revision: str | None = None, dtype: str = "auto") -> Any:
        dtype = self._dtype_name(dtype)
        key: Key = (spec, revision, dtype, self.device)
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        while len(self._models) >= self.capacity:
            self._models.popitem(last=False)
            gc.collect()
        t0 = time.monotonic()
        if self._load is not None:
            loaded = self._load(spec, revision, dtype)
        else:
            from cpqs_bench import models

            loaded = models.load(spec, revision=revision, dtype=dtype, device=self.device)
        self.load_seconds += time.monotonic() - t0
        self.loads.append(key)
        self._models[key] = loaded
        return loaded

    def clear(self) -> None:
        self._models.clear()
        gc.collect()

    def __len__(self) -> int:
        return len(self._models)
