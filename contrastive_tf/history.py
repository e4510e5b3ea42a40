"""The per-epoch metrics of a run across its resumes, in `history.csv` on any filesystem
`storage` reaches. Keras' CSVLogger appends to local files only (on gs:// it fails), so
`HistoryLog` rewrites the whole file, which is small, after every epoch."""

from __future__ import annotations

import csv
import io
import math
import os

import keras

from contrastive_tf import storage


def _rows(path: str | os.PathLike) -> list[dict[str, str]]:
    if not storage.exists(path):
        return []
    return list(csv.DictReader(io.StringIO(storage.read_text(path), newline="")))


class HistoryLog(keras.callbacks.Callback):
    """Adds a row per epoch to the CSV file `path`: `epoch`, then the logged metrics by name,
    "NA" where an epoch did not log one. Each write replaces the file whole."""

    def __init__(self, path: str | os.PathLike):
        super().__init__()
        self.path = storage.location(path)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": str(epoch), **{name: str(float(value)) for name, value in (logs or {}).items()}}
        rows = [*_rows(self.path), row]
        names = ["epoch", *sorted({name for each in rows for name in each} - {"epoch"})]
        text = io.StringIO()
        writer = csv.DictWriter(text, names, restval="NA", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        storage.write_text(self.path, text.getvalue())


def read_history(path: str | os.PathLike) -> dict[str, list[float]]:
    """The per-epoch metrics of the whole run, across resumes, from the CSV log."""
    # One row per epoch, the latest where a resumed run repeated an epoch.
    rows = list({row["epoch"]: row for row in _rows(path)}.values())
    # "NA" marks a metric not logged from the first epoch on (e.g. no validation data).
    names = [name for name in (rows[0] if rows else {}) if name != "epoch" and rows[0][name] != "NA"]
    return {name: [float(row[name]) if row[name] != "NA" else math.nan for row in rows] for name in names}
