"""The SageMaker training job's input and output layout: its one definition.

Layout under the base directory (``/opt/ml`` on SageMaker, movable with
``SAGEMAKER_BASE_DIR`` for local runs and tests)::

    input/config/hyperparameters.json   hyperparameters, all values strings
    input/config/inputdataconfig.json   the channels
    input/config/resourceconfig.json    the job's hosts: ``current_host``, ``hosts``
    input/data/<channel>/               each channel's files
    model/                              what we save; the platform tars it to model.tar.gz
    output/failure                      why the job failed, read by DescribeTrainingJob
    output/data/                        extra outputs (plots, metrics)
    checkpoints/                        CheckpointConfig.LocalPath: what an earlier attempt of
                                        the job saved is here at start; synced to S3 while it runs
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_BASE_DIR = Path("/opt/ml")
