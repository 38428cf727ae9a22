"""The `tunescope` command line. Every user error ends as one line on stderr and exit code 2."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tunescope.cli_console import RichProgress, console, out, print_error
from tunescope.cli_runs import runs_app
from tunescope.config import SAMPLING_TEMPERATURE, EvalConfig, ModelConfig
from tunescope.errors import RunInterrupted, UserError, storage_error
from tunescope.run_layout import REPORT_HTML


class _Group(typer.core.TyperGroup):
    """Turns what the user can fix into one line and exit 2, inside the command, so the same happens
    under `tunescope` and under typer's test runner; and says where an interrupted run was left
    (typer itself turns Ctrl-C into a bare exit 130 before `main` could)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            print_error(str(e))
            raise typer.Exit(UserError.exit_code) from None
        except RunInterrupted as e:
            hint = f"tunescope {' '.join(_RESUME_ARGS)} --resume" if _RESUME_ARGS else "--resume"
            console.print(f"interrupted: the partial run is in {e.partial}; continue it with `{hint}`",
                          markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except KeyboardInterrupt:
            console.print("interrupted", markup=False, highlight=False)
            raise typer.Exit(130) from None
        except Exception as e:  # a full disk or unwritable place reached outside a recipe's own handling
            err = storage_error(e)
            if err is None:
                raise
            print_error(str(err))
            raise typer.Exit(UserError.exit_code) from None


# The command line that would continue an interrupted run (set by `run` and `train`).
_RESUME_ARGS: list[str] = []

app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune small causal LMs, evaluate base vs tuned, analyse and report — every number labelled.")
app.add_typer(runs_app, name="runs")

SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a config key: --set training.epochs=1")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run with the same name.")]


def _resume_args(command: str, config: Path, overrides: list[str] | None) -> list[str]:
    import shlex

    return [command, shlex.quote(str(config)), *(f"--set {shlex.quote(o)}" for o in overrides or [])]


def _load(config: Path | None, overrides: list[str] | None):
    from tunescope.config_loading import load_config

    return load_config(config, overrides or [])


def _print_summary(run_dir: Path) -> None:
    from tunescope.report.summary_table import summary_rows
    from tunescope.run_record import open_run

    table = Table(title=f"tunescope run: {run_dir}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in summary_rows(open_run(run_dir).report or {}):
        table.add_row(name, value)
    out.print(table)
    out.print(f"report: [bold]{run_dir / REPORT_HTML}[/]  (also report.md, report.json)")


Resume = Annotated[bool, typer.Option(
    "--resume", help="Continue an interrupted run (its .<name>.partial folder) from its latest checkpoint "
                     "(training.checkpoint_every); starts a new run if there is none.")]


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="Run config YAML (see configs/).")],
    set_: SetOpt = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
) -> None:
    """Whole pipeline: base evaluation → training → tuned evaluation → report."""
    from tunescope import pipeline

    _RESUME_ARGS[:] = _resume_args("run", config, set_)
    cfg = _load(config, set_)
    with RichProgress() as progress:
        run_dir = pipeline.run(cfg, overwrite=overwrite, progress=progress, resume=resume)
    if run_dir is not None:  # None on the other processes of a distributed launch
        _print_summary(run_dir)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Run config YAML.")],
    set_: SetOpt = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
) -> None:
    """Train only (no evaluation); writes the adapter, metrics and a report of the training.

    Scales out with no change: accelerate launch --config_file configs/accelerate/ddp_cpu.yaml -m tunescope.cli train CFG
    (configs/accelerate/ddp_gpu.yaml on GPUs)
    """
    from tunescope import pipeline

    _RESUME_ARGS[:] = _resume_args("train", config, set_)
    cfg = _load(config, (set_ or []) + ["eval.tasks=[]"])
    with RichProgress() as progress:
        run_dir = pipeline.run(cfg, overwrite=overwrite, progress=progress, resume=resume)
    if run_dir is not None:
        _print_summary(run_dir)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A trained run directory, e.g. runs/demo.")],
    merged: Annotated[bool, typer.Option("--merged", help="Fold the adapter into the base weights: a plain "
                                         "transformers model (safetensors), loadable without peft.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: RUN/export/merged or "
                                                "RUN/export/adapter.")] = None,
    dtype: Annotated[str, typer.Option(help="Merged weights' dtype: float32, bfloat16 or float16.")] = "float32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing export folder.")] = False,
) -> None:
    """Export a run's weights: the adapter in PEFT format, or (--merged) a standalone merged model."""
    from tunescope.export import export_run

    if dtype not in {"float32", "bfloat16", "float16"}:
        raise UserError(f"unknown dtype '{dtype}' (use float32, bfloat16, float16)", where="--dtype")
    path = export_run(run_dir, output, merged=merged, dtype=dtype, overwrite=overwrite)
    out.print(f"{'merged model' if merged else 'adapter'}: {path}")


def _default(section, key: str):
    """A config key's default, so that an option left out means what the key left out of a config means."""
    return section.model_fields[key].default


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option("--model", "-m", help="Alias, hub id or local directory.")],
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="Comma-separated tasks or groups, e.g. gsm8k,hellaswag,mmlu_high_school_computer_science "
                                                 "or mmlu (all 57 subjects).")],
    limit: Annotated[str, typer.Option(help="Items per task, or 'all' (eval.limit).")] = str(_default(EvalConfig, "limit")),
    batch_size: Annotated[str, typer.Option(help="Batch size or 'auto' (eval.batch_size).")] = str(
        _default(EvalConfig, "batch_size")),
    max_new_tokens: Annotated[int | None, typer.Option(help="Cap on generated tokens per answer (default: each task's "
                                                            "own max_gen_toks; eval.max_new_tokens).")] = _default(
        EvalConfig, "max_new_tokens"),
    num_fewshot: Annotated[int | None, typer.Option(help="Override the tasks' default shots.")] = _default(
        EvalConfig, "num_fewshot"),
    samples: Annotated[int, typer.Option(help="Self-consistency: answers sampled per question on generation "
                                              "tasks, scored by majority vote as maj@k (1 = greedy).")] = _default(
        EvalConfig, "samples"),
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature with --samples > 1 "
                                                           f"(default {SAMPLING_TEMPERATURE}).")] = _default(
        EvalConfig, "temperature"),
    data_path: Annotated[list[str] | None, typer.Option("--data-path", help="task=PATH: read a task's data locally (a group, e.g. "
                                                                  "mmlu=DIR, serves all its subjects).")] = None,
    adapter: Annotated[Path | None, typer.Option(help="A PEFT adapter directory to apply (e.g. runs/x/adapter).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write results.json and per-sample JSONL here.")] = None,
    dtype: Annotated[str, typer.Option(help="auto (CUDA: bfloat16; CPU: the faster of float32 and bfloat16, measured; "
                                            "bfloat16 must be 1.2× faster), float32, bfloat16 or float16. Scores "
                                            "match a reference run only in the same dtype.")] = _default(
        ModelConfig, "dtype"),
    backend: Annotated[str, typer.Option(help="native (fast), lm-eval (the reference implementation) or vllm "
                                                         "(generation with vLLM on CUDA).")] = "native",
    engine: Annotated[str, typer.Option(help="With --backend native: auto (the native engine on the model families it "
                                             "is verified on, plain transformers otherwise), native, or transformers "
                                             "(model.generate and unbatched forwards: slower, any model).")] = _default(
        EvalConfig, "engine"),
) -> None:
    """Evaluate a model on benchmarks; prints lm-evaluation-harness's familiar table."""
    from tunescope.eval_recipe import evaluate_model

    paths = {}
    for item in data_path or []:
        if "=" not in item:
            raise UserError(f"'{item}' must look like task=PATH", where="--data-path")
        k, v = item.split("=", 1)
        paths[k.strip()] = v.strip()
    with RichProgress() as progress:
        shown = evaluate_model(
            model, [t.strip() for t in tasks.split(",") if t.strip()], data_paths=paths, adapter=adapter,
            output=output, dtype=dtype, backend=backend, progress=progress, limit=None if limit == "all" else limit,
            batch_size=batch_size, max_new_tokens=max_new_tokens, num_fewshot=num_fewshot, samples=samples,
            temperature=temperature, engine=engine)
    for line in shown.engine_lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # stderr: stdout is the table
    out.print(shown.dtype_line, markup=False, highlight=False, soft_wrap=True)
    out.print(shown.table, markup=False, highlight=False)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory, e.g. runs/demo.")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Change a report setting: --set report.forgetting_threshold_points=5")] = None,
) -> None:
    """(Re)build report.html, report.md and report.json for a run, and add it to the run registry."""
    from tunescope.pipeline import write_report

    paths = write_report(run_dir, overrides=set_)
    for kind, path in paths.items():
        out.print(f"{kind}: {path}")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories, `tunescope eval --output` folders, or grid "
                                                    "folders (each stands for its finished runs).")],
    baseline: Annotated[str | None, typer.Option(
        help="Column the others are tested against: a run (its base evaluation), RUN:tuned, or a column "
             "label such as 'name (tuned)'. Default: the first column.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder for comparison.html/.md/.json.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Change a test setting: --set report.alpha=0.01, --set report.bootstrap_resamples=2000")] = None,
) -> None:
    """Compare runs: models × tasks with score ± stderr, the best per row, paired tests against a baseline."""
    from tunescope import compare_recipe

    paths = compare_recipe.compare(list(runs), baseline=baseline, output=output, overrides=set_)
    for kind, path in paths.items():
        out.print(f"{kind}: {path}")


@app.command()
def grid(
    grid_file: Annotated[Path, typer.Argument(metavar="GRID.yaml", help="Grid file: base config, axes, seeds "
                                              "(see configs/grids/).")],
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a key of the base config for "
                                                   "every cell: --set training.max_steps=50")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the runs and the estimated time and cost; "
                                          "run nothing.")] = False,
    use_ray: Annotated[bool, typer.Option("--ray", help="Run the cells as Ray tasks (a local Ray cluster, or "
                                          "the one RAY_ADDRESS names).")] = False,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Join the Ray cluster at HOST:PORT "
                                                    "(implies --ray).")] = None,
) -> None:
    """Experiment grid: models × methods × data sizes × seeds, with seed noise in every comparison."""
    from tunescope.grid.spec import load_grid

    g = load_grid(grid_file, set_ or [])
    if dry_run:
        from tunescope.grid.dryrun import print_dry_run

        print_dry_run(g, out)
        return
    from tunescope.grid.runner import run_grid

    with RichProgress() as progress:
        result = run_grid(g, use_ray=use_ray, ray_address=ray_address, progress=progress)
    statuses = result["statuses"].values()
    failed = [s for s in statuses if s.get("status") != "complete"]
    out.print(f"grid {g.name}: {len(statuses) - len(failed)} of {len(statuses)} runs complete"
              + (f", {len(failed)} failed (see the grid report)" if failed else ""))
    for kind, path in result["paths"].items():
        out.print(f"{kind}: {path}")



@app.command()
def demo(
    set_: SetOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace runs/demo if it exists.")] = True,
) -> None:
    """Offline demo: LoRA on synthetic grade-school math with SmolLM2-135M-Instruct, then the report."""
    from tunescope import pipeline

    with RichProgress() as progress:
        run_dir = pipeline.demo(set_, overwrite=overwrite, progress=progress)
    _print_summary(run_dir)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a connection to the hub's host opens (assumed yes behind a proxy, which this cannot test)."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def main() -> None:
    # Our own progress bars replace the libraries' per-file ones; their warnings go to the log level.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=os.environ.get("TUNESCOPE_LOG", "WARNING"))
    # Without a network the hub client retries each request for half a minute, logging every try; a
    # moment's check up front turns that into offline mode: cached weights still load, and anything
    # uncached fails at once with one line. The demo needs no hub at all, so it is not probed.
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    if os.environ.get("HF_HUB_OFFLINE") is None and set(sys.argv[1:2]) & {"run", "train", "eval", "export"} \
            and not _hub_reachable():
        os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TUNESCOPE_HUB_UNREACHABLE="1")
    # Library deprecation notices are for library authors, not for someone running a fine-tune.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        app()
    except UserError as e:  # raised outside a command (the commands handle their own)
        print_error(str(e))
        sys.exit(UserError.exit_code)
    except KeyboardInterrupt:
        console.print("interrupted", markup=False, highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
