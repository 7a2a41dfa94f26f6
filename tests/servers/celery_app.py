"""A Celery app for the server matrix: the ``track_exposure`` task tracks one exposure.

The broker is kombu's filesystem transport and results go to files, both in CELERY_FOLDER: no broker
server. The provider is created when the worker's main process imports this module, before the
prefork pool forks its child processes.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from exposure_app import track

FOLDER = os.environ["CELERY_FOLDER"]

app = Celery("celery_app")
app.conf.update(
    broker_url="filesystem://",
    broker_transport_options={
        "data_folder_in": FOLDER,
        "data_folder_out": FOLDER,
        "control_folder": f"{FOLDER}/control",  # not ./control
        "polling_interval": 0.1,  # how long the worker may sleep between looks (default 1 s)
    },
    result_backend=f"file://{FOLDER}/results",
    worker_hijack_root_logger=False,
)


@app.task(name="track_exposure")
def track_exposure(user: str) -> dict[str, Any]:
    return track(user)
