"""Training jobs with the shape of SageMaker's API, and the backends that run them.

``spec`` builds a ``CreateTrainingJob`` request; a backend (``local`` runs the
``ml/`` entrypoint in a subprocess that honours the container contract,
``sagemaker`` calls the real service) takes it and answers
``DescribeTrainingJob``-shaped status; ``jobs.run_training_job`` launches or
re-attaches, streams the log, waits and raises ``recflow.core.errors.TrainingJobFailed``
with the failure's kind; ``jobs.train_on_snapshot`` is the whole train step.

Imports recflow.core, recflow.snapshot (the channels) and recflow_ml (the job's contract, its
hyperparameters and the ``/opt/ml`` layout, declared once there).
"""
