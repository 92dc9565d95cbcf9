"""What the recipe adds to TRL's training loop: a trainer that stops on a non-finite loss before
the optimizer applies it, Ctrl-C that saves a checkpoint `--resume` continues from, memory handed
back to the system after each CPU step, and one readable log line (and JSONL record) per logged
step. Importing this imports Unsloth first: it must patch TRL before `RedactionTrainer` subclasses
`SFTTrainer`."""
from __future__ import annotations

import ctypes
import ctypes.util
import math
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .device import import_unsloth, memory_gib

import_unsloth()

from transformers import TrainerCallback  # noqa: E402  (after Unsloth)
from trl import SFTTrainer  # noqa: E402


class NonFiniteLoss(RuntimeError):
    pass


class RedactionTrainer(SFTTrainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """TRL's loss, or with --decision-weight the weighted one on training batches (`decisions`)."""
        from .decisions import WEIGHTS, weighted_loss

        weights = inputs.pop(WEIGHTS, None)
        if weights is None or return_outputs:  # only training rows carry weights: validation is the plain mean
            return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        loss = weighted_loss(model, inputs, weights, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # as TRL's loss: the count covers every rank's tokens, and DDP averages the gradients
            loss = loss * self.accelerator.num_processes
        return loss

    def training_step(self, model, inputs, *args, **kwargs):
        loss = super().training_step(model, inputs, *args, **kwargs)
        # Checked before the optimizer step, so the weights (and the next checkpoint) stay finite.
        # The Trainer already syncs on the loss every step (its nan filter), so this costs nothing new.
        if not math.isfinite(float(loss)):
            raise NonFiniteLoss(f"loss is {float(loss)} at step {self.state.global_step + 1}")
        return loss


class StopOnCtrlC(TrainerCallback):
    """The first Ctrl-C (or SIGTERM, which `cli.run` routes here) finishes the current step, saves
    a full checkpoint (weights, optimizer, scheduler, RNG and trainer state: what --resume needs)
    and stops; a second stops at once. `on_save` is called after every checkpoint (the run has
    saved something)."""

    def __init__(self, on_save: Callable[[], None]):
        self._on_save = on_save
        self.interrupted_at: int | None = None

    @contextmanager
    def installed(self):
        """Ctrl-C handled this way inside the block; the previous handler restored after it."""
        self.previous = signal.signal(signal.SIGINT, self._request)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, self.previous)

    def _request(self, signum, frame):
        signal.signal(signal.SIGINT, self.previous)  # a second Ctrl-C (or SIGTERM) interrupts at once
        self.interrupted_at = -1
        # `cli.run` hands SIGTERM here too: say which one came, so a log shows who stopped the run
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: saving a checkpoint after this step (Ctrl-C again to stop at once)", flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.interrupted_at is not None:
            self.interrupted_at = state.global_step
            control.should_save = control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        self._on_save()


class ReleaseMemory(TrainerCallback):
    """On Linux, hand the memory a step freed back to the system after every step. glibc keeps
    freed heap for reuse, so without this the resident size of a CPU run is the high-water mark of
    the longest batch so far (activations scale with the batch's padded length) and only grows."""

    def __init__(self, libc):
        self.libc = libc

    @classmethod
    def where_available(cls) -> ReleaseMemory | None:
        """One for this process, or None where there is no glibc."""
        path = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
        libc = ctypes.CDLL(path) if path else None
        return cls(libc) if libc is not None and hasattr(libc, "malloc_trim") else None

    def on_step_end(self, args, state, control, **kwargs):
        self.libc.malloc_trim(0)


class LogCallback(TrainerCallback):
    """One JSONL record and one console line per logging step: loss, lr, tokens/s, memory; a
    progress bar with an ETA in between. `step_seconds` counts time inside optimizer steps only
    (evaluation and saving excluded)."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.step_seconds = 0.0
        self.tokens_at_begin = 0

    def on_train_begin(self, args, state, control, **kwargs):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", dynamic_ncols=True)
        self.t0 = time.time()
        self.tokens_at_begin = state.num_input_tokens_seen  # > 0 when resuming
        self.last_time, self.last_tokens = self.t0, state.num_input_tokens_seen

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_start = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_seconds += time.time() - self.step_start
        self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        from ..core.files import dumps_line

        logs = dict(logs or {})
        now, tokens = time.time(), state.num_input_tokens_seen
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4),
                  "elapsed_s": round(now - self.t0, 2), **logs}
        if "loss" in logs and tokens > self.last_tokens and now > self.last_time:
            record["tokens_per_s"] = round((tokens - self.last_tokens) / (now - self.last_time), 1)
            self.last_time, self.last_tokens = now, tokens
        memory = memory_gib()
        if memory is not None:
            record["memory_gib"] = memory
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(dumps_line(record))
        line = self._line(state, logs, record)
        if line:
            self.bar.write(line)

    def _line(self, state, logs: dict, record: dict) -> str | None:
        parts = [f"step {state.global_step}/{state.max_steps}"]
        if "loss" in logs:
            parts.append(f"loss {logs['loss']:.4f}")
        if "eval_loss" in logs:
            parts.append(f"val_loss {logs['eval_loss']:.4f}")
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if "tokens_per_s" in record:
            parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
            self.bar.set_postfix_str(f"{record['tokens_per_s']:,.0f} tok/s")
        if "memory_gib" in record:
            parts.append(f"{record['memory_gib']:.1f} GiB")
        return " | ".join(parts) if len(parts) > 1 else None

    def on_train_end(self, args, state, control, **kwargs):
        self.bar.close()
