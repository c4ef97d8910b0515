"""Load a kiln-train run in PyTorch and check it predicts what kiln-train did.

Independent of Kiln's code: windows are rebuilt here from the dataset's
parquet files, scaled with scaler.json, and run through a PyTorch module
whose state_dict is model.safetensors (docs/TRAIN.md).

usage: check_torch_model.py RUN DATASET PREDICTIONS.parquet WINDOW
"""
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file
from torch import nn


class BranchLSTM(nn.Module):
    def __init__(self, F, A, K, H, L, Ha, p):
        super().__init__()
        self.lstm = nn.LSTM(F, H, L, batch_first=True, dropout=p if L > 1 else 0.0)
        self.attr = nn.Sequential(nn.Linear(A, Ha), nn.ReLU()) if A > 0 else None
        joined = H + (Ha if A > 0 else 0)
        self.head = nn.Sequential(nn.Linear(joined, H), nn.ReLU(), nn.Dropout(p), nn.Linear(H, K))

    def forward(self, x, a):
        out, _ = self.lstm(x)
        z = out[:, -1, :]
        if self.attr is not None:
            z = torch.cat([z, self.attr(a)], dim=1)
        return self.head(z)


def main(run, dataset, predictions):
    run, dataset = Path(run), Path(dataset)
    state = json.loads((run / "state.json").read_text())
    scaler = json.loads((run / "scaler.json").read_text())
    shape = state["model"]
    model = BranchLSTM(shape["features"], shape["attributes"], shape["targets"], shape["hidden"],
                       shape["layers"], shape["attribute_hidden"], shape["dropout"])
    model.load_state_dict(load_file(str(run / "model.safetensors")))
    model.eval()
    manifest = json.loads((dataset / "_dataset.json").read_text())
    key_col, date_col = manifest["key_column"], manifest["date_column"]
    feats = [c["name"] for c in scaler["features"]]
    mean = np.array([c["mean"] for c in scaler["features"]])
    std = np.array([c["std"] for c in scaler["features"]])
    t = scaler["targets"][0]
    if shape["attributes"] > 0:
        sys.exit("this check covers runs without attributes")
    preds = pq.read_table(predictions)
    keys = preds.column(key_col).to_pylist()
    dates = preds.column(date_col).to_pylist()
    kiln = np.array(preds.column("prediction").to_pylist())
    index = pq.read_table(dataset / "_index.parquet")
    files = dict(zip(index.column("key").to_pylist(), index.column("file").to_pylist()))
    cache = {}
    xs = []
    for key, date in zip(keys, dates):
        if key not in cache:
            tbl = pq.read_table(dataset / files[key], columns=[date_col] + feats)
            d = tbl.column(date_col).to_pylist()
            x = np.stack([np.array(tbl.column(f).to_pylist(), dtype=float) for f in feats], axis=1)
            cache[key] = ({v: i for i, v in enumerate(d)}, (x - mean) / std)
        pos, x = cache[key]
        e = pos[date]
        xs.append(x[e - WINDOW + 1 : e + 1])
    xb = torch.tensor(np.array(xs), dtype=torch.float32)
    with torch.no_grad():
        out = model(xb, torch.zeros((len(xs), 0))).numpy()[:, 0]
    ours = out * t["std"] + t["mean"]
    err = np.max(np.abs(ours - kiln) / (np.abs(kiln) + 1.0))
    print(f"{len(xs)} windows; max relative difference {err:.2e}")
    if not err < 1e-4:
        sys.exit(f"PyTorch and kiln-train disagree: {err}")


if __name__ == "__main__":
    WINDOW = int(sys.argv[4])
    main(*sys.argv[1:4])
