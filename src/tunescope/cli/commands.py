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
from rich.text import Text

from tunescope.cli.console import RichProgress, console, out, print_error
from tunescope.cli.runs import runs_app
from tunescope.cli.serve import serve as serve_command
from tunescope.config.run_config import SAMPLING_TEMPERATURE, ContaminationConfig, EvalConfig, ModelConfig
from tunescope.core.errors import RunInterrupted, UserError, check_writable_dir, storage_error
from tunescope.core.termination import handle_sigterm, interrupt_exit_code, interrupt_word
from tunescope.store.layout import REPORT_HTML


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
            console.print(f"{interrupt_word()}: the partial run is in {e.partial}; continue it with `{hint}`",
                          markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(interrupt_exit_code()) from None
        except KeyboardInterrupt:
            console.print(interrupt_word(), markup=False, highlight=False)
            raise typer.Exit(interrupt_exit_code()) from None
        except Exception as e:  # a full disk or unwritable place reached outside a recipe's own handling
            err = storage_error(e)
            if err is None:
                raise
            print_error(str(err))
            raise typer.Exit(UserError.exit_code) from None


# The command line that would continue an interrupted run (set by `run` and `train`).
_RESUME_ARGS: list[str] = []

app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Fine-tune small causal LMs, evaluate base vs tuned, analyse and report — every "
                       "number labelled.")
app.add_typer(runs_app, name="runs")
app.command("serve")(serve_command)

SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a config key: --set "
                                                  "training.epochs=1")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing run with the same name.")]


def _resume_args(command: str, config: Path, overrides: list[str] | None) -> list[str]:
    import shlex

    return [command, shlex.quote(str(config)), *(f"--set {shlex.quote(o)}" for o in overrides or [])]


def _load(config: Path | None, overrides: list[str] | None):
    from tunescope.config.loading import load_config

    return load_config(config, overrides or [])


def _print_summary(run_dir: Path) -> None:
    from tunescope.report.summary_table import summary_rows
    from tunescope.store.run_folder import open_run

    table = Table(title=Text(f"tunescope run: {run_dir}"))
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in summary_rows(open_run(run_dir).report or {}):
        table.add_row(Text(str(name)), Text(str(value)))
    out.print(table)
    out.print(f"report: {run_dir / REPORT_HTML}  (also report.md, report.json)")


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
    from tunescope.recipes import run as pipeline

    _RESUME_ARGS[:] = _resume_args("run", config, set_)
    cfg = _load(config, set_)
    with RichProgress() as progress:
        run_dir = pipeline.run(cfg, overwrite=overwrite, progress=progress, resume=resume)
    if run_dir is not None:  # None on the other processes of a distributed launch
        _print_summary(run_dir)


# Helps too long for one line of source are given as strings, not docstrings: typer keeps a docstring's
# line breaks, so a wrapped docstring would change the help that users see.
TRAIN_HELP = ("Train only (no evaluation); writes the adapter, metrics and a report of the training.\n\n"
              "Scales out with no change: accelerate launch --config_file configs/accelerate/ddp_cpu.yaml -m "
              "tunescope.cli train CFG\n(configs/accelerate/ddp_gpu.yaml on GPUs)")


@app.command(help=TRAIN_HELP)
def train(
    config: Annotated[Path, typer.Argument(help="Run config YAML.")],
    set_: SetOpt = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
) -> None:
    from tunescope.recipes import run as pipeline

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
    dtype: Annotated[str, typer.Option(help="Merged weights' dtype: float32, bfloat16 or "
                                            "float16.")] = "float32",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing export "
                                            "folder.")] = False,
) -> None:
    """Export a run's weights: the adapter in PEFT format, or (--merged) a standalone merged model."""
    from tunescope.recipes.export import export_run

    if dtype not in {"float32", "bfloat16", "float16"}:
        raise UserError(f"unknown dtype '{dtype}' (use float32, bfloat16, float16)", where="--dtype")
    path = export_run(run_dir, output, merged=merged, dtype=dtype, overwrite=overwrite)
    out.print(f"{'merged model' if merged else 'adapter'}: {path}")


def _default(section, key: str):
    """A config key's default, so that an option left out means what the key left out of a config means."""
    return section.model_fields[key].default


# The `tunescope eval` options that --heldout-from takes from the run unless they are given.
_RUN_SETTINGS = ("limit", "batch_size", "max_new_tokens", "num_fewshot", "samples", "temperature", "engine")


def _given_options(ctx: typer.Context, names: tuple[str, ...]) -> set[str]:
    """The options typed on the command line (not left at their defaults). Compared by name: the
    enum is click's, and typer may bring its own copy of click."""
    sources = {n: ctx.get_parameter_source(n) for n in names}
    return {n for n, source in sources.items() if source is not None
            and source.name not in ("DEFAULT", "DEFAULT_MAP")}


EVAL_HELP = ("Evaluate a model on benchmarks, or on a run's held-out problems (--heldout-from); prints "
             "lm-evaluation-harness's familiar table.")


@app.command("eval", help=EVAL_HELP)
def eval_(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Alias, hub id or local directory (with "
                                              "--heldout-from: default the base the run trained "
                                              "on).")] = None,
    tasks: Annotated[str | None, typer.Option("--tasks", "-t", help="Comma-separated tasks or groups, e.g. "
                                                 "gsm8k,hellaswag,mmlu_high_school_computer_science or mmlu "
                                                 "(all 57 subjects); heldout with --heldout-from (its "
                                                 "default).")] = None,
    heldout_from: Annotated[Path | None, typer.Option(
        "--heldout-from", metavar="RUN", help="Score a finished run's held-out problems as the task "
                                              "'heldout', as the run scored them: same problems, prompt "
                                              "format, dtype and eval settings (an option given here "
                                              "replaces the run's).")] = None,
    limit: Annotated[str, typer.Option(help="Items per task, or 'all' (eval.limit).")] = str(
        _default(EvalConfig, "limit")),
    batch_size: Annotated[str, typer.Option(help="Batch size or 'auto' (eval.batch_size).")] = str(
        _default(EvalConfig, "batch_size")),
    max_new_tokens: Annotated[int | None, typer.Option(help="Cap on generated tokens per answer (default: "
                                                            "each task's own max_gen_toks; "
                                                            "eval.max_new_tokens).")] = _default(
        EvalConfig, "max_new_tokens"),
    num_fewshot: Annotated[int | None, typer.Option(help="Override the tasks' default shots.")] = _default(
        EvalConfig, "num_fewshot"),
    samples: Annotated[int, typer.Option(help="Self-consistency: answers sampled per question on generation "
                                              "tasks, scored by majority vote as maj@k (1 = "
                                              "greedy).")] = _default(
        EvalConfig, "samples"),
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature with --samples > 1 "
                                                           f"(default {SAMPLING_TEMPERATURE}).")] = _default(
        EvalConfig, "temperature"),
    data_path: Annotated[list[str] | None, typer.Option("--data-path", help="task=PATH: read a task's data "
                                                                  "locally (a group, e.g. mmlu=DIR, serves "
                                                                  "all its subjects).")] = None,
    adapter: Annotated[Path | None, typer.Option(help="A PEFT adapter directory to apply (e.g. "
                                                      "runs/x/adapter).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write results.json and per-sample "
                                                "JSONL here.")] = None,
    dtype: Annotated[str, typer.Option(help="auto (CUDA: bfloat16; CPU: the faster of float32 and bfloat16, "
                                            "measured; bfloat16 must be 1.2× faster), float32, bfloat16 or "
                                            "float16. Scores match a reference run only in the same "
                                            "dtype.")] = _default(
        ModelConfig, "dtype"),
    backend: Annotated[str, typer.Option(help="native (fast), lm-eval (the reference implementation) or vllm "
                                                         "(generation with vLLM on CUDA).")] = "native",
    engine: Annotated[str, typer.Option(help="With --backend native: auto (the native engine on the model "
                                             "families it is verified on, plain transformers otherwise), "
                                             "native, or transformers (model.generate and unbatched "
                                             "forwards: slower, any model).")] = _default(
        EvalConfig, "engine"),
) -> None:
    from tunescope.recipes.evaluate_model import evaluate_model

    paths = _data_paths(data_path)
    settings = dict(limit=None if limit == "all" else limit, batch_size=batch_size,
                    max_new_tokens=max_new_tokens, num_fewshot=num_fewshot, samples=samples,
                    temperature=temperature, engine=engine)
    chosen_dtype: str | None = dtype
    if heldout_from is not None:
        # The run's own settings and dtype stand where no option is given: its responses, item for item.
        given = _given_options(ctx, (*_RUN_SETTINGS, "dtype"))
        settings = {k: v for k, v in settings.items() if k in given}
        chosen_dtype = dtype if "dtype" in given else None
    names = None if tasks is None else [t.strip() for t in tasks.split(",") if t.strip()]
    with RichProgress() as progress:
        shown = evaluate_model(model, names, data_paths=paths, adapter=adapter, output=output,
                               dtype=chosen_dtype, backend=backend, progress=progress,
                               heldout_from=heldout_from, **settings)
    for line in shown.engine_lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # stderr: stdout is the table
    out.print(shown.dtype_line, markup=False, highlight=False, soft_wrap=True)
    out.print(shown.table, markup=False, highlight=False)


def _data_paths(items: list[str] | None) -> dict[str, str]:
    paths = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"'{item}' must look like task=PATH", where="--data-path")
        k, v = (part.strip() for part in item.split("=", 1))
        if not k or not v:
            raise UserError(f"'{item}' has no {'task' if not k else 'path'}; write task=PATH",
                            where="--data-path")
        paths[k] = v
    return paths


CONTAMINATION_HELP = ("Check training data against tasks' items before training: n-gram overlap and "
                      "duplicates. No model loads.")


@app.command(help=CONTAMINATION_HELP)
def contamination(
    data: Annotated[str, typer.Argument(help="Training data: a jsonl/json/csv/parquet file with question and "
                                             "answer fields (or a folder holding a *train* file).")],
    tasks: Annotated[str, typer.Option("--tasks", "-t", help="Comma-separated tasks or groups, as for "
                                       "`tunescope eval`.")],
    data_path: Annotated[list[str] | None, typer.Option(
        "--data-path", help="task=PATH: read a task's data locally (a group, e.g. mmlu=DIR, serves all its "
                            "subjects).")] = None,
    limit: Annotated[str, typer.Option(help="Items per task, or 'all'.")] = "all",
    ngram: Annotated[int, typer.Option(help="Words per n-gram (report.contamination.ngram).")] = _default(
        ContaminationConfig, "ngram"),
    show: Annotated[int, typer.Option(help="Flagged items listed per task (longest overlap "
                                           "first).")] = _default(
        ContaminationConfig, "top_items"),
    question_field: Annotated[str, typer.Option(help="The training file's question field.")] = "question",
    answer_field: Annotated[str, typer.Option(help="The training file's answer field.")] = "answer",
) -> None:
    from tunescope.recipes.contamination import check_file
    from tunescope.report.contamination_view import CHECK_COLUMNS, check_table, flagged_lines

    result = check_file(data, [t.strip() for t in tasks.split(",") if t.strip()],
                        data_paths=_data_paths(data_path), limit=None if limit == "all" else limit,
                        ngram=ngram, question_field=question_field, answer_field=answer_field)
    table = Table(title=f"{result['ngram']}-gram overlap of {data} ({result['train_examples']} training "
                        f"examples)")
    for i, col in enumerate(CHECK_COLUMNS):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in check_table(result):
        table.add_row(*row)
    out.print(table)
    for line in flagged_lines(result, show):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"checked in {result['seconds']:.2f} s; text normalised: {result['normalisation']}",
                  markup=False, highlight=False, soft_wrap=True)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory, e.g. runs/demo.")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Change a report setting: --set report.forgetting_threshold_points=5")] = None,
) -> None:
    """(Re)build report.html, report.md and report.json for a run, and add it to the run registry."""
    from tunescope.recipes.run import write_report

    paths = write_report(run_dir, overrides=set_)
    for kind, path in paths.items():
        out.print(f"{kind}: {path}")


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories, `tunescope eval --output` folders, or "
                                                    "grid folders (each stands for its finished runs).")],
    baseline: Annotated[str | None, typer.Option(
        help="Column the others are tested against: a run (its base evaluation), RUN:tuned, or a column "
             "label such as 'name (tuned)'. Default: the first column.")] = None,
    output: Annotated[Path | None,
                      typer.Option("--output", "-o", help="Folder for comparison.html/.md/.json.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="Change a test setting: --set report.alpha=0.01, --set "
                            "report.bootstrap_resamples=2000")] = None,
) -> None:
    """Compare runs: models × tasks with score ± stderr, the best per row, paired tests against a baseline."""
    from tunescope.recipes import compare as compare_recipe

    paths = compare_recipe.compare(list(runs), baseline=baseline, output=output, overrides=set_)
    for kind, path in paths.items():
        out.print(f"{kind}: {path}")


@app.command()
def grid(
    grid_file: Annotated[Path, typer.Argument(metavar="GRID.yaml", help="Grid file: base config, axes, seeds "
                                              "(see configs/grids/).")],
    set_: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a key of the base config "
                                                   "for every cell: --set training.max_steps=50")] = None,
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
    check_writable_dir(g.folder, where="output_dir")
    if dry_run:
        from tunescope.grid.dryrun import print_dry_run

        print_dry_run(g, out)
        return
    from tunescope.grid.scheduler import run_grid

    try:
        with RichProgress() as progress:
            result = run_grid(g, use_ray=use_ray, ray_address=ray_address, progress=progress)
    except KeyboardInterrupt:
        import shlex

        again = " ".join(["tunescope grid", shlex.quote(str(grid_file)),
                          *(f"--set {shlex.quote(o)}" for o in set_ or [])])
        console.print(f"{interrupt_word()}: the grid's runs are kept in {g.folder} (the running one marked "
                      f"interrupted); continue with `{again}`: finished runs are skipped and the interrupted "
                      "one resumes from its latest checkpoint", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(interrupt_exit_code()) from None
    statuses = result["statuses"].values()
    failed = [s for s in statuses if s.get("status") != "complete"]
    out.print(f"grid {g.name}: {len(statuses) - len(failed)} of {len(statuses)} runs complete"
              + (f", {len(failed)} failed (see the grid report)" if failed else ""))
    for kind, path in result["paths"].items():
        out.print(f"{kind}: {path}")
    if failed:  # a script that runs the grid must see that it is not done
        raise typer.Exit(1)



@app.command()
def demo(
    set_: SetOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite/--no-overwrite", help="Replace runs/demo if it "
                                            "exists.")] = True,
) -> None:
    """Offline demo: LoRA on synthetic grade-school math with SmolLM2-135M-Instruct, then the report."""
    from tunescope.recipes import run as pipeline

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
    handle_sigterm()
    try:
        app()
    except UserError as e:  # raised outside a command (the commands handle their own)
        print_error(str(e))
        sys.exit(UserError.exit_code)
    except KeyboardInterrupt:
        console.print(interrupt_word(), markup=False, highlight=False)
        sys.exit(interrupt_exit_code())


if __name__ == "__main__":
    main()
