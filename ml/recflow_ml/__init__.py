"""The code that runs inside a recflow training job (SageMaker container contract).

It never imports Airflow or recflow: the same entrypoint runs as a local
subprocess (embedded profile) and in the image built from ``ml/Dockerfile`` on
SageMaker.
"""
