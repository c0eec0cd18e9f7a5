"""Training progress: a bar with step, loss, tokens/s and ETA, plus the numbers the manifest records.

The Trainer counts non-padding input tokens (``include_num_input_tokens_seen="non_padding"``) across processes;
this callback turns that into tokens/s for the current session (a resumed run's speed is not diluted by the steps
it skipped) and keeps the loss curve from the Trainer's logs.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments


def callback(enabled: bool = True) -> Any:
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.bar: Any = None
            self.t0 = 0.0
            self.tokens0 = 0
            self.step0 = 0
            self.losses: list[dict[str, float]] = []
            self.tokens_per_s: float | None = None
            self.seconds = 0.0
            self.session_steps = 0
            self.session_tokens = 0

        def on_train_begin(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
        ) -> TrainerControl:
            self.t0 = time.perf_counter()
            self.tokens0 = state.num_input_tokens_seen
            self.step0 = state.global_step
            if enabled and state.is_world_process_zero:
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=state.max_steps,
                    initial=state.global_step,
                    desc="finetune",
                    unit="step",
                    file=sys.stderr,
                    dynamic_ncols=True,
                )
            return control

        def _update(self, state: TrainerState) -> None:
            self.seconds = time.perf_counter() - self.t0
            self.session_tokens = state.num_input_tokens_seen - self.tokens0
            self.session_steps = state.global_step - self.step0
            if self.seconds > 0 and self.session_tokens:
                self.tokens_per_s = self.session_tokens / self.seconds

        def on_step_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
        ) -> TrainerControl:
            self._update(state)
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
                post = {"tok/s": f"{self.tokens_per_s:.0f}" if self.tokens_per_s else "-"}
                if self.losses:
                    post["loss"] = f"{self.losses[-1]['loss']:.4f}"
                self.bar.set_postfix(post)
            return control

        def on_log(
            self,
            args: TrainingArguments,
            state: TrainerState,
            control: TrainerControl,
            logs: dict[str, float] | None = None,
            **kwargs: object,
        ) -> TrainerControl:
            if logs and "loss" in logs:
                self.losses.append(
                    {
                        "step": state.global_step,
                        "loss": float(logs["loss"]),
                        "lr": float(logs.get("learning_rate", float("nan"))),
                    }
                )
            return control

        def on_train_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
        ) -> TrainerControl:
            self._update(state)
            if self.bar is not None:
                self.bar.close()
            return control

        def report(self) -> dict[str, Any]:
            return {
                "seconds": round(self.seconds, 3),
                "steps": self.session_steps,
                "input_tokens": self.session_tokens,
                "tokens_per_s": round(self.tokens_per_s, 2) if self.tokens_per_s else None,
            }

    return Progress()
