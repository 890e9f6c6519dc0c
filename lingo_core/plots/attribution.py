"""Figures for attributions, as plain functions the dashboard and the CLI reuse.

Plotly figures for interactive views (tracks, heat maps with the sequence letters, the prompt's
share); ``logomaker`` sequence logos (matplotlib) where a logo is the convention: the IG
per-nucleotide scores drawn on the sequence letters, and the mean-centred ISM matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..attribution_results import BASES, Attribution, IGResult, ISMResult
from ..runs import atomic_write_text

METHOD_COLOURS = {"IG": "#1f77b4", "ISM": "#d62728"}


def _scaled(values: np.ndarray) -> np.ndarray:
    """Values divided by their largest magnitude (to overlay methods with different scales)."""
    peak = float(np.max(np.abs(values))) if len(values) else 0.0
    return values / peak if peak > 0 else values


def _motif_shapes(fig: go.Figure, motifs: Optional[Sequence[tuple[int, int, str]]]) -> None:
    for start, end, name in motifs or []:
        fig.add_vrect(x0=start - 0.5, x1=end - 0.5, fillcolor="gold", opacity=0.25, line_width=0,
                      annotation_text=name, annotation_position="top left")


def attribution_track_figure(
    result: Attribution, normalise: bool = True, motifs: Optional[Sequence[tuple[int, int, str]]] = None
) -> go.Figure:
    """Per-nucleotide IG and ISM along the sequence (bars), optionally scaled to a peak of 1; motifs shaded."""
    positions = np.arange(len(result.sequence))
    fig = go.Figure()
    tracks = {"IG": None if result.ig is None else result.ig.nucleotide, "ISM": None if result.ism is None else result.ism.nucleotide}
    for name, values in tracks.items():
        if values is None:
            continue
        shown = _scaled(values) if normalise else values
        fig.add_bar(
            x=positions, y=shown, name=name, marker_color=METHOD_COLOURS[name],
            customdata=np.stack([list(result.sequence), values], axis=1),
            hovertemplate="position %{x} (%{customdata[0]})<br>" + name + " %{customdata[1]:.4f}<extra></extra>",
        )
    corr = result.correlation()
    subtitle = f"Pearson r = {corr['pearson']:.2f}" if corr["pearson"] is not None else ""
    _motif_shapes(fig, motifs)
    fig.update_layout(
        title=f"{result.id}: attribution to '{result.target_name}' (log-odds){' - ' + subtitle if subtitle else ''}",
        xaxis_title="position (0-based)",
        yaxis_title="attribution / max |attribution|" if normalise else "attribution (log-odds)",
        barmode="group",
        bargap=0.1,
        template="plotly_white",
    )
    return fig


def attribution_heatmap_figure(result: Attribution, normalise: bool = True) -> go.Figure:
    """One heat-map row per method over the positions, each cell showing its sequence letter."""
    rows, names = [], []
    if result.ig is not None:
        rows.append(_scaled(result.ig.nucleotide) if normalise else result.ig.nucleotide)
        names.append("IG")
    if result.ism is not None:
        rows.append(_scaled(result.ism.nucleotide) if normalise else result.ism.nucleotide)
        names.append("ISM")
    z = np.array(rows)
    letters = np.array([list(result.sequence)] * len(rows))
    limit = float(np.abs(z).max()) if z.size else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=z, x=np.arange(len(result.sequence)), y=names, text=letters, texttemplate="%{text}",
            colorscale="RdBu_r", zmid=0, zmin=-limit, zmax=limit,
            hovertemplate="position %{x} (%{text})<br>%{y}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(title=f"{result.id}: per-nucleotide attribution to '{result.target_name}'",
                      xaxis_title="position (0-based)", template="plotly_white")
    return fig


def ism_heatmap_figure(ism: ISMResult, centred: bool = False) -> go.Figure:
    """The L x 4 ISM matrix (bases x positions); the x axis shows the reference letters, reference cells marked."""
    matrix = ism.centred if centred else ism.matrix
    length = len(ism.sequence)
    marks = np.where(np.array([[base == ref for ref in ism.sequence] for base in BASES]), "•", "")
    limit = float(np.abs(matrix).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=matrix.T, x=np.arange(length), y=list(BASES), text=marks, texttemplate="%{text}",
            colorscale="RdBu_r", zmid=0, zmin=-limit, zmax=limit,
            colorbar_title="Δ log-odds" if not centred else "centred",
            hovertemplate="position %{x}, base %{y}<br>%{z:.4f}<extra></extra>",
        )
    )
    fig.update_xaxes(tickmode="array", tickvals=np.arange(length), ticktext=list(ism.sequence), tickangle=0,
                     tickfont_size=9 if length > 60 else 12)
    fig.update_layout(
        title=f"in-silico mutagenesis: change in '{ism.target_name}' log-odds (• = reference base)",
        xaxis_title="sequence", yaxis_title="mutated to", template="plotly_white",
    )
    return fig


def prompt_contribution_figure(ig: IGResult) -> go.Figure:
    """IG attribution of every language-prefix token, next to the whole sequence's total."""
    prompt = ig.prompt_tokens
    labels = [f"{i}: {token}" for i, (token, _) in enumerate(prompt)] + ["sequence (all tokens)"]
    values = [score for _, score in prompt] + [ig.sequence_total]
    colours = ["#7f7f7f"] * len(prompt) + [METHOD_COLOURS["IG"]]
    fig = go.Figure(go.Bar(x=labels, y=values, marker_color=colours))
    fig.update_layout(
        title=f"language prefix vs sequence: prompt {ig.prompt_total:+.3f}, sequence {ig.sequence_total:+.3f} "
        f"log-odds (prompt {ig.prompt_share:.0%} of |attribution|; baseline '{ig.baseline}')",
        yaxis_title="IG attribution (log-odds)", template="plotly_white",
    )
    return fig


def ig_logo(ig: Union[IGResult, Attribution], ax=None):
    """Sequence logo of the IG scores: each reference letter drawn with height = its attribution."""
    import logomaker

    ig = ig.ig if isinstance(ig, Attribution) else ig
    frame = logomaker.saliency_to_matrix(seq=ig.sequence, values=ig.nucleotide, alphabet=BASES + "N" if "N" in ig.sequence else None)
    frame = frame[[c for c in frame.columns if c in BASES]]
    logo = logomaker.Logo(frame, ax=ax, color_scheme="classic")
    logo.ax.set_ylabel("IG (log-odds)")
    logo.ax.set_xlabel("position")
    return logo


def ism_logo(ism: Union[ISMResult, Attribution], ax=None):
    """Sequence logo of the mean-centred ISM matrix: bases the target prefers stand above the axis."""
    import logomaker

    ism = ism.ism if isinstance(ism, Attribution) else ism
    frame = pd.DataFrame(ism.centred, columns=list(BASES))
    frame.index.name = "pos"
    logo = logomaker.Logo(frame, ax=ax, color_scheme="classic")
    logo.ax.set_ylabel("ISM, centred (log-odds)")
    logo.ax.set_xlabel("position")
    return logo


def logo_figure(result: Attribution, width_per_nt: float = 0.12):
    """A matplotlib figure with the IG and ISM logos stacked (the methods present)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [m for m in ("ig", "ism") if getattr(result, m) is not None]
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, width_per_nt * len(result.sequence)), 2.2 * len(panels)), squeeze=False)
    for ax, method in zip(axes[:, 0], panels):
        (ig_logo if method == "ig" else ism_logo)(result, ax=ax)
    fig.suptitle(f"{result.id}: attribution to '{result.target_name}'")
    fig.tight_layout()
    return fig


def write_html(
    results: Union[Attribution, Sequence[Attribution]],
    path: Union[str, Path],
    motifs: Optional[Sequence[tuple[int, int, str]]] = None,
) -> Path:
    """All plotly figures of one or more results in one self-contained HTML file (plotly.js inlined once)."""
    results = [results] if isinstance(results, Attribution) else list(results)
    figures: list[go.Figure] = []
    for result in results:
        figures += [attribution_track_figure(result, motifs=motifs), attribution_heatmap_figure(result)]
        if result.ism is not None:
            figures.append(ism_heatmap_figure(result.ism))
        if result.ig is not None:
            figures.append(prompt_contribution_figure(result.ig))
    parts = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    path = Path(path)
    # whole or absent: written under a temporary name and renamed (never a half-written file)
    atomic_write_text(path, "<html><head><meta charset='utf-8'></head><body>" + "\n".join(parts) + "</body></html>")
    return path
