"""Plots as PNG bytes (matplotlib, Agg backend), embedded inline so the HTML needs no other file."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def to_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def loss_curves_png(curves: dict, smoothed: dict | None = None) -> bytes | None:
    if not curves.get("train_steps"):
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(curves["train_steps"], curves["train_loss"], color="#9ab", lw=1, label="train loss (per step)")
    if smoothed and smoothed.get("train_loss"):
        ax.plot(curves["train_steps"], smoothed["train_loss"], color="#1f5fa8", lw=2, label="train loss (smoothed)")
    if curves.get("val_steps"):
        ax.plot(curves["val_steps"], curves["val_loss"], "o-", color="#d2691e", lw=2, label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per supervised token")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def token_accuracy_png(curves: dict) -> bytes | None:
    if not curves.get("train_steps"):
        return None
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(curves["train_steps"], curves["train_token_accuracy"], color="#1f5fa8", lw=1, label="train")
    if curves.get("val_steps"):
        ax.plot(curves["val_steps"], curves["val_token_accuracy"], "o-", color="#d2691e", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("token accuracy (teacher-forced)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)
