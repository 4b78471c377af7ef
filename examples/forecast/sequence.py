"""An LSTM forecaster for the same Seattle data, trained with PyTorch, served from ONNX, compared honestly.

    pip install torch          # where you train (a job, a lab machine); the serving function needs
    pip install 'nubes[onnx]'  # only onnxruntime
    python examples/forecast/sequence.py

The path from PyTorch to the registry, end to end:

1. cut the raw daily rows into 14-day windows with :func:`nubes.ml.sequence.windows` (the same
   windowing the predict route applies to raw rows, so training and serving agree);
2. train a small LSTM (32 hidden units) on the windows that end before the held-out final months;
3. ``SequenceModel.from_torch(net, features=..., window=14, scale=..., target_scale=...)`` exports it
   to ONNX, checks the graph (operator allow-list, size, no external data) and runs it once;
4. ``app.models.register(...)``: the same registry, digest and HMAC checks as scikit-learn models;
5. ``POST /_nubes/models/temp-max-lstm/predict`` with raw daily rows answers one forecast per row
   that ends a full window.

Both forecasters are scored on the same held-out days (the last 20% of days with a next-day value,
the holdout of the gradient-boosting model trained by ``POST /train``): the script prints the RMSE
and MAE of the LSTM (from the served predictions), of gradient boosting and of the naive forecast
"tomorrow = today", whatever they are.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("NUBES_LOG_LEVEL", "warning")

from nubes.core.loader import load_app
from nubes.testing import Client

HERE = Path(__file__).resolve().parent
FEATURES = ["temp_max", "temp_min", "precipitation", "wind"]
WINDOW = 14
MODEL = "temp-max-lstm"


def fit_lstm(X: Any, y: Any, *, epochs: int = 300, seed: int = 0) -> Any:
    """A one-layer LSTM and a linear head, trained full-batch with Adam on standardised windows."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)

    class Forecaster(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = torch.nn.LSTM(len(FEATURES), 32, batch_first=True)
            self.head = torch.nn.Linear(32, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return self.head(out[:, -1, :])

    net = Forecaster()
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    xs, ys = torch.tensor(X), torch.tensor(y).reshape(-1, 1)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(net(xs), ys)
        loss.backward()
        optimiser.step()
    return net.eval()


def main() -> int:
    import numpy as np
    import polars as pl

    from nubes.ml.metrics import regression_metrics
    from nubes.ml.sequence import SequenceModel, windows

    app = load_app(f"{HERE / 'app.py'}:app")
    client = Client(app)
    trained = client.post("/train")
    assert trained.status_code == 200, trained.text
    boosting = trained.json()
    start = boosting["holdout"]["from"]  # the first held-out day (its target is the day after)

    raw = app.storage.get("datasets/seattle_weather.parquet")
    frame = pl.read_parquet(raw).sort("date").with_columns(pl.col("temp_max").shift(-1).alias("next"))
    train_rows = frame.filter(pl.col("date") < pl.lit(start).str.to_date())
    stats = {c: (float(train_rows[c].mean()), float(train_rows[c].std())) for c in FEATURES}
    target_stats = (float(train_rows["next"].mean()), float(train_rows["next"].std()))
    X, y = windows(train_rows, FEATURES, WINDOW, target="next", order_by="date")
    Xs = np.stack([(X[:, :, i] - stats[c][0]) / stats[c][1] for i, c in enumerate(FEATURES)], axis=2).astype(np.float32)
    ys = ((y - target_stats[0]) / target_stats[1]).astype(np.float32)
    net = fit_lstm(Xs, ys)

    model = SequenceModel.from_torch(net, features=FEATURES, window=WINDOW, order_by="date", columns={"date": "date"},
                                     scale=stats, target_scale=target_stats, target="temp_max (next day)")
    mv = app.models.register(MODEL, model, tags=["lstm", "onnx"], inputs=["weather"])

    # serve: the held-out days and the 13 days before the first one, as raw rows
    first = frame.with_row_index().filter(pl.col("date") >= pl.lit(start).str.to_date())["index"][0]
    request = frame.slice(first - (WINDOW - 1)).filter(pl.col("next").is_not_null()).drop("next")
    served = client.post(f"/_nubes/models/{MODEL}/predict", content=json.dumps(
        request.with_columns(pl.col("date").cast(pl.String)).to_dicts()).encode(), headers={"content-type": "application/json"})
    assert served.status_code == 200, served.text
    predictions = served.json()["predictions"][WINDOW - 1:]
    truth = frame.slice(first).filter(pl.col("next").is_not_null())
    assert len(predictions) == truth.height == boosting["holdout"]["days"] and None not in predictions
    lstm = regression_metrics(truth["next"], predictions)
    naive = boosting["naive"]
    gb = boosting["gradient_boosting"]
    print(f"held-out days: {truth.height} ({start} .. {boosting['holdout']['to']}); LSTM version {mv.version}, "
          f"{len(X)} training windows of {WINDOW} days, ops {','.join(model.graph['ops'])}")
    print(f"{'forecast':<26}{'RMSE':>8}{'MAE':>8}")
    for label, m in (("LSTM (ONNX, served)", lstm), ("gradient boosting", gb), ("naive: tomorrow = today", naive)):
        print(f"{label:<26}{m['rmse']:>8.3f}{m['mae']:>8.3f}")
    print(json.dumps({"lstm": lstm, "gradient_boosting": gb, "naive": naive, "days": truth.height}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
