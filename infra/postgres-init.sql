-- The compose stack's second database: MLflow's backend store (Prefect uses POSTGRES_DB).
CREATE DATABASE mlflow;
