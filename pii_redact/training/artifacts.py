"""What a fine-tune leaves behind: the adapter, the merged model, an optional GGUF, the loss
curve and a model card. `train.py` holds the recipe; this module only writes its results."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import TrainConfig
from ..core.files import read_records, write_text
from ..core.run_dir import RunDir


def write_generation_config(directory: Path, tokenizer) -> None:
    from transformers import GenerationConfig

    from ..core import chat

    # Greedy, and stop on <end_of_turn> as well as <eos>: a chat turn ends with the former.
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=chat.stop_token_ids(tokenizer), do_sample=False,
    ).save_pretrained(directory)


def plot_losses(log_path: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_records(log_path, what="log lines")
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    for points, label, style in ((train, "train", "-"), (val, "validation", "o-")):
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (response tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def write_model_card(run: RunDir, config: TrainConfig, summary: dict[str, Any]) -> None:
    card = f"""# {run.path.name}

LoRA fine-tune of `{config.model}` that redacts PII: it rewrites a text with each personal value
replaced by `[LABEL_n]` (17 labels: names, addresses, phone numbers, IDs, account numbers...).

| | |
|---|---|
| base model | `{config.model}` |
| LoRA | r={config.lora_r}, alpha={config.lora_alpha}, all 7 projections |
| steps | {summary['steps']} ({summary['epochs']:.2f} epochs, {summary['train_samples']:,} training samples) |
| final train loss | {summary['train_loss']} |
| final validation loss | {summary['val_loss']} |
| training time | {summary['train_seconds']:.0f} s ({summary['step_seconds']:.0f} s in optimizer steps, {summary['tokens_per_s']:,.0f} tokens/s) |

Loss is on the response tokens only (the redacted text and its `<end_of_turn>`).

## Files
- `{run.adapter.name}/`: the LoRA adapter (PEFT format) with tokenizer and chat template
- `{run.merged.name}/`: base + adapter merged in 16 bit, loadable by plain transformers or vLLM
- `{run.config_file.name}`: the resolved training config; `{run.run_file.name}`: library versions and data sha256
- `{run.train_log.name}`, `{run.loss_plot.name}`: the training log and loss curve

## Use
```bash
python evaluate.py --model-dir {run.path}
```
```python
from transformers import AutoModelForCausalLM, AutoTokenizer
from pii_redact.core.chat import build_prompt, encode_prompt
tok = AutoTokenizer.from_pretrained("{run.merged}")
model = AutoModelForCausalLM.from_pretrained("{run.merged}")
ids = encode_prompt(tok, build_prompt("Call Anna Schmidt on +49 30 1234567."))
```
"""
    write_text(run.model_card, card)


def save_outputs(model, tokenizer, run: RunDir) -> None:
    print(f"saving the adapter to {run.adapter}")
    model.save_pretrained(str(run.adapter))
    tokenizer.save_pretrained(str(run.adapter))
    write_generation_config(run.adapter, tokenizer)
    print(f"saving the merged 16-bit model to {run.merged}")
    model.save_pretrained_merged(str(run.merged), tokenizer, save_method="merged_16bit")
    write_generation_config(run.merged, tokenizer)


def export_gguf(run: RunDir, kind: str) -> Path:
    """The merged model as a GGUF (`models.gguf`); a failure says the run itself is saved."""
    from ..core.errors import UserError
    from ..models import gguf

    print(f"exporting GGUF ({kind}) to {run.gguf_dir}")
    try:
        return gguf.export(run.path, kind)
    except UserError as exc:
        raise UserError(f"{exc}; the run is saved in {run.path}: retry the export with "
                        f"python -m pii_redact.models gguf {run.path} --type {kind}") from None
