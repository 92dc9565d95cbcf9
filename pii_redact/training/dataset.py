"""The training data as the model sees it: the prepared splits (made first when missing),
tokenized through the one chat renderer, and every sample's token layout checked before any
compute is spent: loss on the response and its `<end_of_turn>` only, one `<bos>`, no control
token smuggled in by a text."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..cli import load_config
from ..config import DataConfig, TrainConfig
from ..core.errors import UserError

DECODED_SAMPLES = 8  # samples whose supervised tokens are also decoded and compared as text


def ensure_data(config: TrainConfig, config_path: str | None, model_path: str) -> tuple[Path, Path]:
    """train/val splits from `data_dir`, prepared first (with the `data:` settings of the same
    --config file, and the model's tokenizer) when the directory holds none of prepare_data.py's
    files."""
    from ..data import prepare

    data_dir = Path(config.data_dir)
    files = [data_dir / f"{s}.jsonl" for s in ("train", "val")]
    made = [data_dir / name for name in ("train.jsonl", "val.jsonl", "test.jsonl", "report.json")]
    if all(f.is_file() for f in files) and (data_dir / "report.json").is_file():
        return files[0], files[1]
    if any(f.exists() for f in made):
        present = ", ".join(f.name for f in made if f.exists())
        raise UserError(f"{data_dir}/ holds an incomplete set of prepared data ({present}); run "
                        f"prepare_data.py --output-dir {data_dir} to (re)make it, or pass another --data-dir")
    settings = load_config(DataConfig, "data", config_path, output_dir=str(data_dir), model=model_path,
                           max_seq_length=config.max_seq_length)
    print(f"{data_dir}/ has no prepared splits: preparing them first (prepare_data.py"
          f"{' with the data: settings of ' + config_path if config_path else ''})")
    prepare.print_summary(prepare.prepare(settings), str(data_dir))
    return files[0], files[1]


def tokenize_samples(tokenizer, samples, max_seq_length: int, path: Path):
    """Samples of a split file -> a datasets.Dataset of `input_ids` and `labels` (-100 outside
    the response)."""
    from datasets import Dataset

    from ..core import chat

    encoded = chat.encode_examples(tokenizer, [(s.prompt, s.response) for s in samples])
    input_ids, labels = [], []
    for i, ex in enumerate(encoded):
        n = len(ex["input_ids"])
        if n > max_seq_length:
            # Truncation would cut the response (and its stop token) off: refuse, never truncate.
            raise UserError(f"{path}: sample {i} is {n} tokens, over --max-seq-length {max_seq_length}; "
                            "prepare the data with the same --max-seq-length")
        input_ids.append(ex["input_ids"])
        labels.append([t if m else -100 for t, m in zip(ex["input_ids"], ex["completion_mask"])])
    return Dataset.from_dict({"input_ids": input_ids, "labels": labels})


def check_token_layout(tokenizer, samples, dataset, vocab_size: int) -> None:
    """Fail loudly, before any compute is spent, if a sample is not what the model must learn.

    On every sample, on token ids: one `<bos>`, at position 0; the prompt holds exactly the
    control tokens the template writes (text never adds any); the supervised tokens are one
    contiguous tail equal to the input there, ending with `<end_of_turn>`, its only control
    token. On the first few, also as text: the supervised tokens decode to the response."""
    from ..core import chat

    bos, eot = tokenizer.bos_token_id, tokenizer.convert_tokens_to_ids(chat.END_OF_TURN)
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    template = Counter(t for t in chat.encode_prompt(tokenizer, "x") if t in special)
    for i, row in enumerate(dataset):
        ids, labels = row["input_ids"], row["labels"]
        start = next((k for k, t in enumerate(labels) if t != -100), len(labels))
        problems = []
        if ids[0] != bos or ids.count(bos) != 1:
            problems.append(f"expected exactly one <bos> at position 0, found {ids.count(bos)}")
        if Counter(t for t in ids[:start] if t in special) != template:
            problems.append("the prompt's control tokens differ from the chat template's")
        if labels[start:] != ids[start:] or not labels[start:] or labels[-1] != eot:
            problems.append(f"the supervised tokens are not one tail ending with {chat.END_OF_TURN}")
        elif any(t in special for t in ids[start:-1]):
            problems.append("the response contains control tokens")
        if i < DECODED_SAMPLES and not problems:
            decoded = tokenizer.decode(ids[start:])
            if decoded != samples[i].response.strip() + chat.END_OF_TURN:  # the template trims contents
                problems.append(f"the supervised tokens do not decode to the response + {chat.END_OF_TURN}")
        if problems:
            raise RuntimeError(f"token layout check failed on training sample {i}: " + "; ".join(problems))
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"the tokenizer grew from {vocab_size} to {len(tokenizer)} tokens: placeholders "
                           "must stay plain text, new tokens would have untrained embeddings")
