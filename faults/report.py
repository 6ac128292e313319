"""A run's report: the verdict's figures, and acknowledgements per second with the nemesis
shaded (a PNG, where matplotlib is installed)."""

from __future__ import annotations

from pathlib import Path

from .history import History, Outcome
from .scenarios import Run


def acks_per_second(history: History) -> list[int]:
    """Acknowledgements in each second of the run."""
    seconds = max(1, int(history.ended - history.began) + 1)
    counts = [0] * seconds
    for op in history.ops:
        if op.outcome is Outcome.ACKED and op.answered_at is not None:
            index = int(op.answered_at - history.began)
            if 0 <= index < seconds:
                counts[index] += 1
    return counts


def print_run(run: Run, plot: Path | None = None) -> None:
    verdict, history = run.verdict, run.history
    print(f"== {run.scenario.name}: {'VALID' if verdict.valid else 'INVALID'}")
    print(
        f"   acked {verdict.acked}, refused {verdict.refused}, unknown {verdict.unknown},"
        f" lost {verdict.lost}, doubled {verdict.doubled}"
    )
    converged, resumed = verdict.converged_after_heal, verdict.acks_after_heal
    print(
        f"   longest without an ack {verdict.longest_without_ack:.1f} s;"
        f" first ack {'never' if resumed is None else f'{resumed:.1f} s'} after the heal;"
        f" converged {'never' if converged is None else f'{converged:.1f} s'} after the heal"
    )
    for window in history.windows:
        print(
            f"   {window.name}: {window.start - history.began:.1f} s to"
            f" {window.end - history.began:.1f} s"
        )
    for error in verdict.errors:
        print(f"   ERROR {error}")
    if plot is not None:
        draw(history, plot, run.scenario.name)


def draw(history: History, path: Path, title: str) -> None:
    try:
        import matplotlib  # noqa: PLC0415 (optional: plots only where installed)
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(10, 3))
    counts = acks_per_second(history)
    axes.plot(range(len(counts)), counts, drawstyle="steps-post")
    colours: dict[str, str] = {}
    for window in history.windows:
        first = window.name not in colours
        colour = colours.setdefault(window.name, f"C{len(colours) + 1}")
        axes.axvspan(
            window.start - history.began,
            window.end - history.began,
            alpha=0.25,
            color=colour,
            # One legend entry per kind of nemesis.
            label=window.name if first else None,
        )
    axes.set_xlabel("seconds")
    axes.set_ylabel("acks per second")
    axes.set_title(title)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
