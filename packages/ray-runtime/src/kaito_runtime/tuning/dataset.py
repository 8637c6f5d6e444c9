"""From `input` to tokenized train/eval splits, on the driver, before any GPU time is spent.

Steps: fetch (URLs, a directory or an OCI artifact) -> read files -> detect the schema ->
convert rows -> apply the chat template and loss mask -> shuffle (seeded) -> split -> pack.
Bad rows are counted and reported; a dataset with no usable rows is a `DataError`.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kaito_runtime.tuning.config import DatasetSection, ImageInput, PathInput, TuneConfig, UrlsInput
from kaito_runtime.tuning.encoding import Encoded, encode_example, pack
from kaito_runtime.tuning.errors import DataError
from kaito_runtime.tuning.formats import FileRows, is_data_file, read_rows
from kaito_runtime.tuning.schema import normalize

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


class TokenizedSplit:
    """Encoded rows stored as flat int32 arrays plus offsets: compact to ship to Ray workers."""

    def __init__(self, rows: list[Encoded]) -> None:
        lengths = np.array([len(r.input_ids) for r in rows], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        total = int(lengths.sum())

        def flat(get: Any) -> np.ndarray:
            return np.fromiter((x for r in rows for x in get(r)), dtype=np.int32, count=total)

        self.input_ids = flat(lambda r: r.input_ids)
        self.labels = flat(lambda r: r.labels)
        self.packed = bool(rows) and rows[0].position_ids is not None
        self.position_ids = flat(lambda r: r.position_ids or []) if self.packed else None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> Encoded:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        positions = self.position_ids[a:b].tolist() if self.position_ids is not None else None
        return Encoded(self.input_ids[a:b].tolist(), self.labels[a:b].tolist(), positions)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_label_tokens(self) -> int:
        return int((self.labels != -100).sum())


@dataclass
class DataReport:
    """What was read and what was usable; logged and written into training_summary.json."""

    files: list[str] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    schema: str = ""
    rows: int = 0
    bad_rows: int = 0
    problems: list[str] = field(default_factory=list)
    examples: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    train_rows: int = 0
    train_tokens: int = 0
    train_label_tokens: int = 0
    packed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreparedData:
    train: TokenizedSplit
    eval: TokenizedSplit | None
    report: DataReport


def fetch_input(config: TuneConfig, workdir: Path) -> list[Path]:
    """Local data files for `config.input` (downloading or pulling them into `workdir`)."""
    source = config.input
    if isinstance(source, UrlsInput):
        from kaito_runtime.tuning.download import download_all

        return download_all(source.urls, workdir / "downloads", config.download)
    if isinstance(source, PathInput):
        root = Path(source.path).expanduser()
        if not root.exists():
            raise DataError(f"input.path {root}: does not exist; mount the data volume or fix the path")
    else:
        assert isinstance(source, ImageInput)
        from kaito_runtime import oci

        root = oci.pull_data(source.image, workdir / "image", oci.auth_from_env(config.registry_auth_file))
    return find_data_files(root, config.training_config.DatasetConfig.dataset_path)


def find_data_files(root: Path, dataset_path: str | None) -> list[Path]:
    """`root/dataset_path` if that is a file, else every parquet/jsonl/json/csv file below it."""
    base = root / dataset_path if dataset_path else root
    if base.is_file():
        return [base]
    if not base.is_dir():
        raise DataError(f"DatasetConfig.dataset_path {dataset_path!r}: not found under the input ({root})")
    files = sorted(p for p in base.rglob("*") if is_data_file(p))
    if not files:
        raise DataError(f"input {base}: no .parquet, .jsonl, .json or .csv file found")
    return files


def prepare(files: list[Path], cfg: DatasetSection, tokenizer: PreTrainedTokenizerBase) -> PreparedData:
    """Read, convert, encode, shuffle, split and (optionally) pack; raise DataError if nothing is usable."""
    report = DataReport()
    rows: list[dict[str, Any]] = []
    for path in files:
        read: FileRows = read_rows(path, cfg.format)
        report.files.append(path.name)
        report.formats.append(read.format)
        report.rows += len(read.rows) + read.bad_rows
        report.bad_rows += read.bad_rows
        report.problems += [f"{path.name} {p}" for p in read.problems]
        rows += read.rows
    if cfg.max_rows is not None:
        rows = rows[: cfg.max_rows]
    if not rows:
        raise DataError(f"no usable rows in {', '.join(report.files)}: {_problems(report)}")
    normalized = normalize(rows, cfg)
    report.schema = normalized.schema.name
    report.bad_rows += normalized.bad_rows
    report.problems += normalized.problems
    encoded: list[Encoded] = []
    for i, example in enumerate(normalized.examples):
        try:
            encoded.append(encode_example(tokenizer, example, cfg.max_seq_length, cfg.train_on_inputs))
        except ValueError as exc:
            report.bad_rows += 1
            if len(report.problems) < 10:
                report.problems.append(f"example {i}: {exc}")
    report.examples = len(encoded)
    if not encoded:
        raise DataError(
            f"no usable rows: {report.rows} rows read from {', '.join(report.files)}, all unusable "
            f"(schema {report.schema}); {_problems(report)}"
        )
    if cfg.shuffle_dataset:
        random.Random(cfg.shuffle_seed).shuffle(encoded)
    n_train = (
        len(encoded) if cfg.train_test_split >= 1 else max(1, round(len(encoded) * cfg.train_test_split))
    )
    if cfg.train_test_split < 1 and n_train == len(encoded) and len(encoded) > 1:
        n_train -= 1
    train, held_out = encoded[:n_train], encoded[n_train:]
    report.train_examples, report.eval_examples = len(train), len(held_out)
    if cfg.packing:
        train = pack(train, cfg.max_seq_length)
        held_out = pack(held_out, cfg.max_seq_length) if held_out else []
        random.Random(cfg.shuffle_seed).shuffle(train)
        report.packed = True
    train_split = TokenizedSplit(train)
    report.train_rows = len(train_split)
    report.train_tokens = train_split.num_tokens
    report.train_label_tokens = train_split.num_label_tokens
    if report.bad_rows:
        log.warning(
            "%d of %d rows skipped; first problems: %s", report.bad_rows, report.rows, report.problems[:5]
        )
    log.info(
        "data: %d rows (%s, schema %s) -> %d train / %d eval examples, %d train tokens%s",
        report.rows,
        ",".join(sorted(set(report.formats))),
        report.schema,
        report.train_examples,
        report.eval_examples,
        report.train_tokens,
        f", packed into {report.train_rows} rows" if cfg.packing else "",
    )
    return PreparedData(train_split, TokenizedSplit(held_out) if held_out else None, report)


def _problems(report: DataReport) -> str:
    if not report.problems:
        return "the files hold no rows"
    return f"{report.bad_rows} bad rows, e.g. " + "; ".join(report.problems[:3])
