"""Draw a load-test report's latency distributions (needs the ``plot`` extra: matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NEEDS_MATPLOTLIB = "--plot needs matplotlib: pip install matplotlib (the plot extra)"


def can_plot() -> bool:
    """Whether matplotlib imports: checked before a run, not after it."""
    try:
        import matplotlib  # noqa: PLC0415, F401
    except ImportError:
        return False
    return True


def plot_report(report: dict[str, Any], path: Path) -> None:
    # Optional (the plot extra), and its backend must be chosen before pyplot loads.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name, label in (
        ("ack", "ack (send to own ack)"),
        ("fanout", "fan-out (send to last client)"),
    ):
        points = report["cdf_ms"][name]
        if points:
            axes.plot([ms for _, ms in points], [p for p, _ in points], marker=".", label=label)
    axes.set_xscale("symlog", linthresh=1.0)
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("percentile")
    parameters = report["parameters"]
    axes.set_title(
        f"ws-counter loadtest: {parameters['clients']} clients, "
        f"{report['increments_acked']} increments, correct={report['correct']}"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
