"""The PNG plot of a run's training curves (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

from gperc_core.train.metrics import read_jsonl


def _numbers(record: dict, *keys: str) -> bool:
    """True when ``record`` holds real numbers at every key of ``keys`` (a corrupted line may not)."""
    return all(isinstance(record.get(k), (int, float)) and not isinstance(record.get(k), bool) for k in keys)


def plot_curves(metrics_path: str | Path, out_path: str | Path, title: str = "") -> Path | None:
    """Draw training loss per step, validation loss and accuracy per epoch and the test accuracy of the
    best weights (a star at the step they were chosen) from ``metrics.jsonl`` into ``out_path`` (PNG);
    returns the path, or ``None`` when there is nothing to plot yet. Runs written before the
    validation split (``split: "eval"`` records) plot their evaluations the same way."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    records = list(read_jsonl(metrics_path))
    train = [r for r in records if r.get("split") == "train" and _numbers(r, "step", "loss")]
    evals = [r for r in records if r.get("split") in ("validation", "eval") and _numbers(r, "step", "loss", "accuracy")]
    tests = [r for r in records if r.get("split") == "test" and _numbers(r, "step", "accuracy")]
    if not train and not evals:
        return None
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
    if evals:
        ax_loss.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="validation loss")
        ax_acc.plot([r["step"] for r in evals], [r["accuracy"] for r in evals], "o-", color="C2",
                    label="validation accuracy")
    if tests:
        last = tests[-1]
        at = last["best_step"] if _numbers(last, "best_step") else last["step"]
        ax_acc.plot([at], [last["accuracy"]], "*", color="C3", markersize=12, label="test accuracy (best weights)")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    if evals or tests:
        ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path
