"""`run_tuning(config)`: data on the driver, training on Ray Train workers, adapter out.

The same function serves the CLI (`kaito-runtime tune`), a KubeRay RayJob entrypoint and
`kaito-workspace run --local`. Relaunching with the same `name` and `storage_path` resumes from
the last checkpoint (a finished run just rewrites its output).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kaito_runtime.tuning.config import ImageOutput, PathOutput, TuneConfig
from kaito_runtime.tuning.errors import DataError, TuningError
from kaito_runtime.tuning.progress import ProgressCallback, ProgressFile

log = logging.getLogger(__name__)


@dataclass
class TuningResult:
    output: str  # the output directory, or the OCI reference pushed
    summary: dict[str, Any]
    checkpoint_path: str
    adapter_dir: Path | None = None  # set when the output is a directory
    digest: str | None = None  # set when the output is an OCI reference
    data_report: dict[str, Any] = field(default_factory=dict)


def _check_output_early(config: TuneConfig) -> Any:
    """Fail on a bad output before any data download or GPU time."""
    if isinstance(config.output, ImageOutput):
        from kaito_runtime import oci

        oci._registry(config.output.image)
        return oci.auth_from_env(config.registry_auth_file)
    return None


def _ensure_ray(address: str | None) -> bool:
    """Connect to `address` (or RAY_ADDRESS); with neither, start a private local Ray bound to
    127.0.0.1 (never attach to some other cluster by accident). True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address)
    else:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(
            address="local", _node_ip_address="127.0.0.1", include_dashboard=True, dashboard_host="127.0.0.1"
        )
    return True


def run_tuning(config: TuneConfig, *, ray_address: str | None = None) -> TuningResult:
    """Fine-tune `config.model` on `config.input`, write the adapter to `config.output`."""
    started = time.monotonic()
    progress = ProgressFile(config.progress_file, log=config.progress_log)
    progress.write("Running", "preparing data")
    try:
        return _run(config, ray_address, progress, started)
    except Exception as exc:
        message = str(exc).strip() or type(exc).__name__
        progress.write("Failed", message[-2000:])
        if isinstance(exc, TuningError):
            raise
        raise TuningError(f"tuning {config.name} failed: {message}") from exc


def _run(config: TuneConfig, ray_address: str | None, progress: ProgressFile, started: float) -> TuningResult:
    import ray

    from kaito_runtime.modeling import load_tokenizer
    from kaito_runtime.tuning.dataset import fetch_input, prepare
    from kaito_runtime.tuning.loop import STATE_JSON, plan_schedule
    from kaito_runtime.tuning.output import build_summary, write_adapter

    for key in config.ignored_settings():
        log.warning("%s is not used by this runtime (accepted for compatibility)", key)
    auth = _check_output_early(config)
    tokenizer = load_tokenizer(config.model)
    with tempfile.TemporaryDirectory(prefix="kaito-tune-") as workdir:
        files = fetch_input(config, Path(workdir))
        data = prepare(files, config.training_config.DatasetConfig, tokenizer)
    workers = config.scaling.num_workers
    if len(data.train) < workers:
        raise DataError(
            f"{len(data.train)} training rows cannot feed {workers} workers; "
            "add data or lower scaling.num_workers"
        )
    schedule = plan_schedule(len(data.train), workers, config.training_config.TrainingArguments)
    progress.write(
        "Running",
        f"data ready ({data.report.train_examples} examples); starting {workers} workers",
        step=0,
        total_steps=schedule.total_steps,
        epoch=0.0,
    )

    started_ray = _ensure_ray(ray_address or config.ray_address)
    try:
        storage = config.run_storage_dir.parent
        storage.mkdir(parents=True, exist_ok=True)
        trainer = build_trainer(config, ray.put(data))
        try:
            result = trainer.fit()
        except Exception as exc:
            raise TuningError(f"tuning {config.name}: training failed: {_root_cause(exc)}") from exc
        if result.checkpoint is None:
            raise TuningError(f"tuning {config.name}: training ended without a checkpoint")
        metrics = dict(result.metrics or {})
        with result.checkpoint.as_directory() as ckpt_dir:
            state = json.loads((Path(ckpt_dir) / STATE_JSON).read_text())
            metrics = {**state, **{k: v for k, v in metrics.items() if v is not None}}
            summary = build_summary(
                config,
                metrics,
                data.report.as_dict(),
                time.monotonic() - started,
                state.get("target_modules"),
            )
            result_kwargs: dict[str, Any] = {}
            if isinstance(config.output, PathOutput):
                out = write_adapter(
                    Path(ckpt_dir), Path(config.output.path).expanduser(), config, tokenizer, summary
                )
                target, result_kwargs["adapter_dir"] = str(out), out
            else:
                from kaito_runtime import oci

                with tempfile.TemporaryDirectory(prefix="kaito-adapter-") as tmp:
                    write_adapter(Path(ckpt_dir), Path(tmp), config, tokenizer, summary)
                    progress.write("Running", f"pushing the adapter to {config.output.image}")
                    result_kwargs["digest"] = oci.push_adapter(
                        tmp,
                        config.output.image,
                        auth,
                        model_name=config.model.id or config.model.path,
                        annotations={"sh.kaito.tuning.method": config.method},
                    )
                target = config.output.image
        progress.write(
            "Succeeded",
            f"adapter written to {target}",
            **{
                k: metrics.get(k)
                for k in ("step", "total_steps", "epoch", "loss", "learning_rate", "tokens_per_second")
            },
            eta_seconds=0,
        )
        log.info(
            "tuning %s done: %s", config.name, json.dumps({k: summary[k] for k in ("steps", "final_loss")})
        )
        return TuningResult(
            output=target,
            summary=summary,
            checkpoint_path=result.checkpoint.path,
            data_report=data.report.as_dict(),
            **result_kwargs,
        )
    finally:
        if started_ray:
            ray.shutdown()


def build_trainer(config: TuneConfig, data_ref: Any) -> Any:
    """The Ray Train V2 TorchTrainer for `config`: one worker per GPU (DDP), checkpoints under
    `storage_path/name` (relaunching with the same name resumes), `max_failures` restarts."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from kaito_runtime.tuning.loop import train_loop_per_worker

    storage = config.run_storage_dir.parent
    storage.mkdir(parents=True, exist_ok=True)
    args = config.training_config.TrainingArguments
    # A worker's ray.train.report waits while its previous report is still unread, and the Train
    # controller reads every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (default 2 s): with reports less than
    # 2 s apart (small models, frequent logging) training would stall. Poll faster unless told.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config.model_dump(mode="json", by_alias=True), "data": data_ref},
        scaling_config=ScalingConfig(
            num_workers=config.scaling.num_workers,
            use_gpu=config.scaling.use_gpu,
            resources_per_worker=config.scaling.resources_per_worker,
        ),
        run_config=RunConfig(
            name=config.name,
            storage_path=str(storage.resolve()),
            failure_config=FailureConfig(max_failures=config.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=args.save_total_limit),
            callbacks=[ProgressCallback(config.progress_file, log=config.progress_log)],
        ),
    )


def _root_cause(exc: BaseException) -> str:
    """The innermost useful message of a Ray Train failure (worker tracebacks are long)."""
    seen = exc
    while seen.__cause__ is not None:
        seen = seen.__cause__
    text = str(seen).strip() or type(seen).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:1000] if lines else type(seen).__name__
