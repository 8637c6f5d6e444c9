"""The training loop that runs on every Ray Train worker (one per GPU; DDP when more than one).

The data order is a pure function of (seed, epoch, rank, world size), so a run resumed from a
checkpoint at step S continues with exactly the batches that step S+1 would have had.
Every `logging_steps` all workers call `ray.train.report` (a barrier in Ray Train); rank 0
attaches a checkpoint (adapter + optimizer + scheduler + counters) when one is due.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kaito_runtime.tuning.config import TrainingArgumentsSection, TuneConfig
from kaito_runtime.tuning.encoding import collate

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
STATE_JSON = "trainer_state.json"


@dataclass(frozen=True)
class Schedule:
    rows_per_rank: int
    micro_batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int


def plan_schedule(num_rows: int, world_size: int, args: TrainingArgumentsSection) -> Schedule:
    """How many optimizer steps an epoch has and how many the run takes (max_steps wins)."""
    per_rank = num_rows // world_size
    if per_rank < 1:
        raise ValueError(
            f"{num_rows} training rows cannot feed {world_size} workers; add data or use fewer workers"
        )
    micro = math.ceil(per_rank / args.per_device_train_batch_size)
    steps_per_epoch = math.ceil(micro / args.gradient_accumulation_steps)
    total = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * steps_per_epoch)
    return Schedule(per_rank, micro, steps_per_epoch, max(1, total))


def epoch_batches(
    num_rows: int,
    epoch: int,
    seed: int,
    shuffle: bool,
    rank: int,
    world_size: int,
    schedule: Schedule,
    batch: int,
) -> list[np.ndarray]:
    """This rank's micro-batches (row indices) for `epoch`: a seeded permutation, strided by rank."""
    order = np.random.default_rng(seed + epoch).permutation(num_rows) if shuffle else np.arange(num_rows)
    mine = order[rank::world_size][: schedule.rows_per_rank]
    return [mine[i : i + batch] for i in range(0, len(mine), batch)]


def checkpoint_due(step: int, total: int, schedule: Schedule, args: TrainingArgumentsSection) -> bool:
    if step >= total:
        return True
    if args.save_strategy == "steps":
        return step % args.save_steps == 0
    if args.save_strategy == "epoch":
        return step % schedule.steps_per_epoch == 0
    return False


def eval_due(step: int, total: int, schedule: Schedule, args: TrainingArgumentsSection) -> bool:
    """Held-out loss at the end, and every `eval_steps` / epoch as `eval_strategy` says."""
    if step >= total:
        return True
    if args.eval_strategy == "steps":
        return step % (args.eval_steps or args.logging_steps) == 0
    if args.eval_strategy == "epoch":
        return step % schedule.steps_per_epoch == 0
    return False


def report_due(step: int, total: int, schedule: Schedule, args: TrainingArgumentsSection) -> bool:
    return (
        step % args.logging_steps == 0
        or checkpoint_due(step, total, schedule, args)
        or (args.eval_strategy != "no" and eval_due(step, total, schedule, args))
    )


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker function. `loop_config` = {"config": TuneConfig dict, "data": ObjectRef}."""
    import ray
    import ray.train
    import ray.train.torch

    config = TuneConfig.model_validate(loop_config["config"])
    data = (
        ray.get(loop_config["data"])
        if isinstance(loop_config["data"], ray.ObjectRef)
        else loop_config["data"]
    )
    ctx = ray.train.get_context()

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        ray.train.report(
            metrics, checkpoint=checkpoint, checkpoint_dir_name=f"checkpoint_{metrics['step']:08d}"
        )

    checkpoint = ray.train.get_checkpoint()
    with contextlib.ExitStack() as stack:
        resume = Path(stack.enter_context(checkpoint.as_directory())) if checkpoint is not None else None
        train(
            config,
            data,
            device=ray.train.torch.get_device(),
            rank=ctx.get_world_rank(),
            world=ctx.get_world_size(),
            report=report,
            resume_dir=resume,
        )


def train(
    config: TuneConfig,
    data: Any,
    *,
    device: Any,
    rank: int = 0,
    world: int = 1,
    report: Callable[[dict[str, Any], Path | None], None] | None = None,
    resume_dir: Path | None = None,
    setup: Any = None,
) -> dict[str, Any]:
    """The training loop of one worker, independent of Ray: `report(metrics, checkpoint_dir)` is
    called on every rank at each report point (`checkpoint_dir` is set on rank 0 when a
    checkpoint is due; it is only valid during the call). `setup` (a ModelSetup) skips loading
    the model (the benchmark builds random-weight models from a config). Returns the last metrics."""
    import torch
    from transformers import get_scheduler

    from kaito_runtime.modeling import load_tokenizer
    from kaito_runtime.tuning.model_setup import build_model

    args = config.training_config.TrainingArguments
    collator_cfg = config.training_config.DataCollator
    torch.manual_seed(args.seed)

    pad_id = getattr(setup, "pad_id", None)
    if pad_id is None:
        pad_id = load_tokenizer(config.model).pad_token_id
    setup = setup or build_model(config, device)
    model = setup.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
        fused=device.type == "cuda" and all(p.dtype == torch.float32 for p in params),
    )
    schedule = plan_schedule(len(data.train), world, args)
    total = schedule.total_steps
    warmup = args.warmup_steps or math.ceil(args.warmup_ratio * total)
    scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=warmup, num_training_steps=total
    )
    use_amp = device.type == "cuda" and setup.compute_dtype in (torch.float16, torch.bfloat16)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and setup.compute_dtype == torch.float16)

    step, tokens_total, elapsed_before, resumed_from = 0, 0, 0.0, 0
    history: list[list[float]] = []
    if resume_dir is not None:
        step, tokens_total, elapsed_before, history = _restore(
            resume_dir, model, optimizer, scheduler, scaler
        )
        resumed_from = step
        log.info("rank %d: resumed from the checkpoint at step %d", rank, step)

    train_model: Any = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=args.ddp_find_unused_parameters,
        )
    train_model.train()

    window_loss, window_micro, window_tokens, window_steps = 0.0, 0, 0, 0
    window_start = time.perf_counter()
    run_start = time.perf_counter()
    last: dict[str, Any] = {}
    while step < total:
        epoch = step // schedule.steps_per_epoch
        batches = epoch_batches(
            len(data.train),
            epoch,
            args.seed,
            config.training_config.DatasetConfig.shuffle_dataset,
            rank,
            world,
            schedule,
            args.per_device_train_batch_size,
        )
        for in_epoch in range(step % schedule.steps_per_epoch, schedule.steps_per_epoch):
            micro = batches[
                in_epoch * args.gradient_accumulation_steps : (in_epoch + 1)
                * args.gradient_accumulation_steps
            ]
            for j, indices in enumerate(micro):
                rows = [data.train[int(i)] for i in indices]
                window_tokens += sum(len(r.input_ids) for r in rows)  # useful (non-padding) tokens
                batch = collate(rows, pad_id, collator_cfg.pad_to_multiple_of)
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                sync = j == len(micro) - 1 or world == 1
                no_sync = train_model.no_sync() if not sync else contextlib.nullcontext()
                with no_sync, torch.autocast(device.type, dtype=setup.compute_dtype, enabled=use_amp):
                    loss = train_model(**batch, use_cache=False).loss / len(micro)
                scaler.scale(loss).backward()
                window_loss += float(loss.detach()) * len(micro)
                window_micro += 1
            scaler.unscale_(optimizer)
            if args.max_grad_norm and args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_steps += 1
            if not report_due(step, total, schedule, args):
                continue
            # Global numbers over the window (all ranks), then report: a barrier for all workers.
            stats = _sum_across_ranks([window_loss, window_micro, window_tokens], world, device)
            seconds = time.perf_counter() - window_start
            tokens_total += int(stats[2])
            metrics: dict[str, Any] = {
                "step": step,
                "total_steps": total,
                "epoch": round(step / schedule.steps_per_epoch, 4),
                "loss": round(float(stats[0] / max(stats[1], 1)), 6),
                "learning_rate": float(scheduler.get_last_lr()[0]),
                "tokens_per_second": round(float(stats[2]) / max(seconds, 1e-9), 2),
                "tokens": tokens_total,
                "eta_seconds": round(seconds / window_steps * (total - step), 1),
                "elapsed_seconds": round(elapsed_before + time.perf_counter() - run_start, 2),
                "resumed_from_step": resumed_from,
                "world_size": world,
            }
            history.append([step, metrics["loss"]])
            metrics["loss_history"] = list(history) if step >= total else None
            if data.eval is not None and eval_due(step, total, schedule, args):
                metrics["eval_loss"] = _evaluate(
                    train_model, data.eval, rank, world, args, pad_id, device, setup, use_amp
                )
            with tempfile.TemporaryDirectory() as tmp:
                ckpt = None
                if rank == 0 and checkpoint_due(step, total, schedule, args):
                    _save(Path(tmp), model, optimizer, scheduler, scaler, metrics, setup, history)
                    ckpt = Path(tmp)
                if report is not None:
                    report(metrics, ckpt)
            last = metrics
            window_loss, window_micro, window_tokens, window_steps = 0.0, 0, 0, 0
            window_start = time.perf_counter()
            if step >= total:
                break
    return last


def _sum_across_ranks(values: list[float], world: int, device: Any) -> Any:
    """Element-wise sums over all ranks (on the device: NCCL reduces only CUDA tensors)."""
    import torch

    stats = torch.tensor(values, dtype=torch.float64)
    if world > 1:
        on_device = stats.to(device)
        torch.distributed.all_reduce(on_device)
        stats = on_device.cpu()
    return stats


def _evaluate(
    model: Any,
    split: Any,
    rank: int,
    world: int,
    args: Any,
    pad_id: int,
    device: Any,
    setup: Any,
    use_amp: bool,
) -> float:
    import torch

    model.eval()
    total_loss, count = 0.0, 0
    with torch.no_grad():
        indices = list(range(rank, len(split), world))
        for i in range(0, len(indices), args.per_device_eval_batch_size):
            batch = collate([split[j] for j in indices[i : i + args.per_device_eval_batch_size]], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=setup.compute_dtype, enabled=use_amp):
                total_loss += float(model(**batch, use_cache=False).loss)
            count += 1
    stats = _sum_across_ranks([total_loss, count], world, device)
    model.train()
    return round(float(stats[0] / max(stats[1], 1)), 6)


def _save(
    directory: Path,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    scaler: Any,
    metrics: dict[str, Any],
    setup: Any,
    history: list[list[float]],
) -> None:
    import torch

    model.save_pretrained(directory)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "step": metrics["step"],
            "tokens": metrics["tokens"],
            "elapsed_seconds": metrics["elapsed_seconds"],
            "history": history,
        },
        directory / STATE_FILE,
    )
    (directory / STATE_JSON).write_text(
        json.dumps(
            {**metrics, "target_modules": setup.target_modules, "quantized_modules": setup.quantized_modules},
            indent=2,
        )
    )


def _restore(
    directory: Path, model: Any, optimizer: Any, scheduler: Any, scaler: Any
) -> tuple[int, int, float, list[list[float]]]:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(directory / "adapter_model.safetensors", device=str(next(model.parameters()).device))
    set_peft_model_state_dict(model, weights)
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    return int(state["step"]), int(state["tokens"]), float(state["elapsed_seconds"]), list(state["history"])
