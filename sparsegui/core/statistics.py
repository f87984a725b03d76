"""The per-tensor table out of SparseGUI: CSV for spreadsheets, and a Netron attachment so Netron shows
SparseGUI's numbers on its graph (open the model in Netron, then drop the ``.json`` file on it)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from sparsegui.core.errors import ExportError
from sparsegui.core.export.atomic import write_text_atomic
from sparsegui.core.inspection import ModelReport
from sparsegui.core.names import qualify
from sparsegui.core.sizes import LAYOUTS

CSV_COLUMNS = ("name", "shape", "dtype", "numel", "zeros", "sparsity", "norm_removed")


def tensor_rows(report: ModelReport) -> list[dict[str, Any]]:
    """One row per tensor (tied tensors once, under their canonical name), in model order."""
    rows = []
    for module in report.modules:
        for t in module.tensors:
            if t.alias_of is not None:
                continue
            norm = t.norm_removed
            row: dict[str, Any] = {
                "name": qualify(module.name, t.name), "shape": "x".join(map(str, t.shape)), "dtype": t.dtype,
                "numel": t.numel, "zeros": t.zeros, "sparsity": t.sparsity,
                "norm_removed": None if norm is None or not math.isfinite(norm) else norm,
            }
            if t.sizes is not None:
                row.update({f"bytes_{k}": v for k, v in t.sizes.to_json().items()})
            if t.nm_compliance is not None:
                row["nm_compliance"] = t.nm_compliance
            rows.append(row)
    return rows


def stats_csv(report: ModelReport) -> str:
    rows = tensor_rows(report)
    columns = list(CSV_COLUMNS)
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n", restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()


def netron_attachment(report: ModelReport) -> dict[str, Any]:
    """Netron's ``netron:attachment`` file: metrics per tensor (``kind: "tensor"``, ``target`` the tensor's
    name as Netron shows a PyTorch/safetensors checkpoint) and for the model."""
    metrics: list[dict[str, Any]] = []
    for row in tensor_rows(report):
        target = row["name"]
        metrics.append({"kind": "tensor", "target": target, "name": "sparsity", "value": row["sparsity"],
                        "type": "percentage"})
        metrics.append({"kind": "tensor", "target": target, "name": "zeros", "value": row["zeros"]})
        if row["norm_removed"] is not None:
            metrics.append({"kind": "tensor", "target": target, "name": "norm removed",
                            "value": row["norm_removed"], "type": "percentage"})
        if "nm_compliance" in row:
            metrics.append({"kind": "tensor", "target": target, "name": f"{report.nm} compliance",
                            "value": row["nm_compliance"], "type": "percentage"})
        for layout in LAYOUTS:
            value = row.get(f"bytes_{layout}")
            if value is not None:
                metrics.append({"kind": "tensor", "target": target, "name": f"bytes ({layout})", "value": value})
    model = [{"kind": "model", "target": "", "name": "sparsity", "value": report.sparsity, "type": "percentage"},
             {"kind": "model", "target": "", "name": "parameters", "value": report.parameters},
             {"kind": "model", "target": "", "name": "zeros", "value": report.zeros}]
    metadata = [{"kind": "model", "target": "", "name": "sparsity by", "value": "SparseGUI"}]
    return {"signature": "netron:attachment", "metadata": metadata, "metrics": model + metrics}


def write_stats(report: ModelReport, path: str | Path) -> Path:
    """Write the table as CSV (``.csv``) or a Netron attachment (``.json``), atomically."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        text = stats_csv(report)
    elif suffix == ".json":
        text = json.dumps(netron_attachment(report), indent=1) + "\n"
    else:
        raise ExportError(f"{path}: statistics are written as .csv or as a Netron attachment .json")
    return write_text_atomic(path, text)
