"""One pydantic config model per flow. Prefect renders them as forms; the CLI is generated from them."""
