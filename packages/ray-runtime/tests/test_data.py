"""Training data: every format x schema, chat templating and loss masking, packing, splitting,
bad rows, and downloads from a loopback HTTP server (including every documented failure)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from kaito_runtime.tuning.config import DatasetSection, DownloadSettings, parse_config
from kaito_runtime.tuning.dataset import fetch_input, find_data_files, prepare
from kaito_runtime.tuning.download import download, redact_url
from kaito_runtime.tuning.encoding import IGNORE, collate, encode_example, pack
from kaito_runtime.tuning.errors import DataError, DownloadError
from kaito_runtime.tuning.schema import Example

CHAT = [
    {
        "messages": [
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"{2 * i}."},
        ]
    }
    for i in range(4)
]
PROMPT = [{"prompt": f"Say {w}.", "completion": w.upper()} for w in ("yes", "no", "hello")]
DOLLY = [
    {"instruction": "Name a capital.", "context": "Europe", "response": "Paris", "category": "qa"},
    {"instruction": "Count to two.", "context": "", "response": "one two", "category": "gen"},
]
TEXT = [{"text": "the quick brown fox"}, {"text": "jumps over the lazy dog"}]
SCHEMAS = {"messages": CHAT, "prompt_completion": PROMPT, "instruction": DOLLY, "text": TEXT}


def write(rows: list[dict], path: Path, fmt: str) -> Path:
    if fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:  # csv: a chat column is JSON text
        flat = [{k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows]
        pcsv.write_csv(pa.Table.from_pylist(flat), path)
    return path


def learned_text(tokenizer, encoded) -> str:
    return tokenizer.decode(
        [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE]
    )


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "json", "csv"])
@pytest.mark.parametrize("schema", list(SCHEMAS))
def test_every_format_and_schema(tmp_path, tiny_tokenizer, fmt, schema):
    rows = SCHEMAS[schema]
    path = write(rows, tmp_path / f"data.{fmt}", fmt)
    data = prepare([path], DatasetSection(shuffle_dataset=False), tiny_tokenizer)
    assert (data.report.schema, data.report.examples, data.report.bad_rows) == (schema, len(rows), 0)
    first = data.train[0]
    if schema == "text":
        assert first.labels == first.input_ids  # plain text: every token is learned
        assert "quick brown fox" in tiny_tokenizer.decode(first.input_ids)
    else:
        expected = {"messages": "0.", "prompt_completion": "YES", "instruction": "Paris"}[schema]
        assert learned_text(tiny_tokenizer, first) == f"{expected}<|im_end|>\n"
        rendered = tiny_tokenizer.decode(first.input_ids)
        assert rendered.startswith("<|im_start|>user\n")  # the chat template was applied
    if schema == "instruction":
        assert "Name a capital.\n\nEurope" in tiny_tokenizer.decode(first.input_ids)


def test_loss_only_on_every_assistant_turn(tiny_tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Secret?"},
        {"role": "assistant", "content": "PINEAPPLE."},
    ]
    encoded = encode_example(tiny_tokenizer, Example(messages=messages), 512)
    assert learned_text(tiny_tokenizer, encoded) == "Hello.<|im_end|>\nPINEAPPLE.<|im_end|>\n"
    everything = encode_example(tiny_tokenizer, Example(messages=messages), 512, train_on_inputs=True)
    assert everything.labels == everything.input_ids


def test_truncation_and_prompts_too_long(tiny_tokenizer):
    long_prompt = {"role": "user", "content": "word " * 200}
    with pytest.raises(ValueError, match="max_seq_length=32"):
        encode_example(
            tiny_tokenizer, Example(messages=[long_prompt, {"role": "assistant", "content": "ok"}]), 32
        )
    text = encode_example(tiny_tokenizer, Example(text="word " * 200), 32)
    assert len(text.input_ids) == 32


def test_explicit_columns_and_wrong_columns(tmp_path, tiny_tokenizer):
    path = write([{"Context": "How are you?", "Response": "Fine."}] * 2, tmp_path / "mental.jsonl", "jsonl")
    kaito = prepare(
        [path], DatasetSection(context_column="Context", response_column="Response"), tiny_tokenizer
    )
    assert kaito.report.schema == "prompt_completion" and kaito.report.examples == 2
    wrong = write([{"question_text": "a", "answer_text": "b"}], tmp_path / "wrong.jsonl", "jsonl")
    with pytest.raises(DataError) as info:
        prepare([wrong], DatasetSection(), tiny_tokenizer)
    assert "answer_text" in str(info.value) and "messages" in str(info.value)  # names found and accepted
    with pytest.raises(DataError, match="messages column 'chat' not found"):
        prepare([path], DatasetSection(messages_column="chat"), tiny_tokenizer)


def test_malformed_rows_are_counted_and_reported(tmp_path, tiny_tokenizer):
    good = json.dumps(CHAT[0])
    lines = [
        good,
        "{not json",
        json.dumps({"messages": "not a list"}),
        json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
        json.dumps({"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}),
        "[1, 2]",
        good,
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines))
    data = prepare([path], DatasetSection(), tiny_tokenizer)
    assert (data.report.rows, data.report.bad_rows, data.report.examples) == (7, 5, 2)
    problems = " | ".join(data.report.problems)
    for fragment in (
        "line 2: not JSON",
        "text that is not a JSON list",
        "no non-empty assistant",
        "'wizard'",
        "line 6",
    ):
        assert fragment in problems


def test_no_usable_rows_is_a_clear_error(tmp_path, tiny_tokenizer):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "", "completion": "x"}) + "\n" + json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(DataError) as info:
        prepare([path], DatasetSection(), tiny_tokenizer)
    assert "no usable rows" in str(info.value) and "2 bad rows" in str(info.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        prepare([empty], DatasetSection(), tiny_tokenizer)


def test_malformed_csv_rows(tmp_path, tiny_tokenizer):
    path = tmp_path / "d.csv"
    path.write_text('prompt,completion\n"a","b"\n"c","d","extra"\n"e","f"\n')
    data = prepare([path], DatasetSection(), tiny_tokenizer)
    assert (data.report.examples, data.report.bad_rows) == (2, 1)
    assert "expected 2" in data.report.problems[0]


def test_shuffle_split_is_seeded(tmp_path, tiny_tokenizer):
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(20)]
    path = write(rows, tmp_path / "d.parquet", "parquet")
    cfg = DatasetSection(train_test_split=0.75, shuffle_seed=7)
    a, b = prepare([path], cfg, tiny_tokenizer), prepare([path], cfg, tiny_tokenizer)
    assert (a.report.train_examples, a.report.eval_examples) == (15, 5)
    assert [a.train[i].input_ids for i in range(15)] == [b.train[i].input_ids for i in range(15)]
    other = prepare([path], cfg.model_copy(update={"shuffle_seed": 8}), tiny_tokenizer)
    assert [a.train[i].input_ids for i in range(15)] != [other.train[i].input_ids for i in range(15)]


def test_packing_keeps_examples_apart(tiny_tokenizer, tiny_model):
    import torch

    from kaito_runtime.modeling import load_model

    examples = [encode_example(tiny_tokenizer, Example(messages=r["messages"]), 64) for r in CHAT]
    examples.append(encode_example(tiny_tokenizer, Example(text="the lazy dog"), 64))
    packed = pack(examples, 64)
    assert len(packed) < len(examples)
    assert all(len(r.input_ids) <= 64 for r in packed)
    assert sum(len(r.input_ids) for r in packed) == sum(len(e.input_ids) for e in examples)
    # Each example's first token is not a label (it would be predicted from the previous example).
    assert sum(r.position_ids.count(0) for r in packed) == len(examples)
    batch = collate(packed, tiny_tokenizer.pad_token_id)
    assert "attention_mask" not in batch and batch["position_ids"].shape == batch["input_ids"].shape
    # The model sees each packed example exactly as if it were alone.
    model = load_model(tiny_model, dtype=torch.float32).eval()
    row = packed[0]
    starts = [i for i, p in enumerate(row.position_ids) if p == 0]
    second = starts[1]
    end = starts[2] if len(starts) > 2 else len(row.input_ids)
    with torch.no_grad():
        ids, positions = batch["input_ids"][:1], batch["position_ids"][:1]
        together = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        alone = model(input_ids=torch.tensor([row.input_ids[second:end]])).logits
    torch.testing.assert_close(together[0, second:end], alone[0], atol=1e-4, rtol=1e-4)


def test_plain_batches_pad_right_with_a_mask(tiny_tokenizer):
    rows = [encode_example(tiny_tokenizer, Example(text=t), 64) for t in ("a b c d e", "a")]
    batch = collate(rows, tiny_tokenizer.pad_token_id, pad_to_multiple_of=8)
    assert batch["input_ids"].shape[1] % 8 == 0
    assert batch["attention_mask"][1].sum() == len(rows[1].input_ids)
    assert (batch["labels"][1, len(rows[1].input_ids) :] == IGNORE).all()


def test_directory_input_and_dataset_path(tmp_path):
    (tmp_path / "a").mkdir()
    write(CHAT, tmp_path / "a" / "train.jsonl", "jsonl")
    (tmp_path / "a" / "README.md").write_text("not data")
    write(PROMPT, tmp_path / "b.parquet", "parquet")
    assert [p.name for p in find_data_files(tmp_path, None)] == ["train.jsonl", "b.parquet"]
    assert [p.name for p in find_data_files(tmp_path, "a")] == ["train.jsonl"]
    assert [p.name for p in find_data_files(tmp_path, "b.parquet")] == ["b.parquet"]
    with pytest.raises(DataError, match="dataset_path 'nope'"):
        find_data_files(tmp_path, "nope")


# ---------------------------------------------------------------- downloads

FAST = DownloadSettings(timeout_s=5, retries=2, backoff_s=0, max_bytes=1024 * 1024)


def test_download_from_urls_then_prepare(tmp_path, data_server, tiny_tokenizer):
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(CHAT), buf)
    url1 = data_server.add("chat.parquet", buf.getvalue().to_pybytes())
    url2 = data_server.add("more.jsonl", "\n".join(json.dumps(r) for r in PROMPT))
    cfg = parse_config(
        {
            "name": "t",
            "model": {"id": "kaito-builtin/tiny-random-llama"},
            "input": {"urls": [url1 + "?download=true", url2]},
            "output": {"path": str(tmp_path / "out")},
            "training_config": {"DatasetConfig": {"schema": "messages"}},
        }
    )
    files = fetch_input(cfg, tmp_path)
    assert [f.name for f in files] == ["000-chat.parquet", "001-more.jsonl"]
    data = prepare(files[:1], cfg.training_config.DatasetConfig, tiny_tokenizer)
    assert data.report.examples == len(CHAT)


@pytest.mark.parametrize(
    ("path", "settings", "reason"),
    [
        ("/files/missing.parquet", FAST, "HTTP 404 Not Found (the URL is wrong"),
        ("/status/403/x.csv", FAST, "HTTP 403 Forbidden (the URL needs credentials"),
        ("/empty/x.jsonl", FAST, "the file is empty"),
        ("/html/x.parquet", FAST, "the server returned text/html, not a data file"),
        ("/huge/x.parquet", FAST, "over the limit of 1048576 bytes (download.max_bytes)"),
        ("/stream/3000000", FAST, "more than 1048576 bytes received"),
        ("/status/503/x.csv", FAST, "HTTP 503 Service Unavailable (gave up after 3 attempts)"),
        (
            "/slow/3/slow.jsonl",
            DownloadSettings(timeout_s=0.3, retries=0, backoff_s=0),
            "timed out after 0.3 s",
        ),
    ],
)
def test_download_failures_name_the_url_and_reason(tmp_path, data_server, path, settings, reason):
    data_server.add("slow.jsonl", "{}\n")
    url = data_server.url(path)
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path, settings)
    assert info.value.url == url
    assert url in str(info.value) and reason in str(info.value)
    assert not list(tmp_path.glob("*.part"))


def test_download_retries_transient_errors(tmp_path, data_server):
    data_server.add("flaky.csv", "text\nhello\n")
    url = data_server.url("/flaky/2/flaky.csv")
    path = download(url, tmp_path, FAST)
    assert path.read_text() == "text\nhello\n"
    assert data_server.hits["/flaky/2/flaky.csv"] == 3


def test_connection_refused_and_secrets_redacted(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.parquet?sv=2024&sig=TOPSECRET&download=true"
    with pytest.raises(DownloadError) as info:
        download(url, tmp_path, DownloadSettings(timeout_s=2, retries=1, backoff_s=0))
    message = str(info.value)
    assert "connection failed" in message and "gave up after 2 attempts" in message
    assert "TOPSECRET" not in message and "sig=***" in message and "/data.parquet" in message
    assert redact_url("https://user:pw@host/x?token=abc&a=1") == "https://host/x?token=***&a=1"
