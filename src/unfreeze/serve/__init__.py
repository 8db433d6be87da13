"""The HTTP prediction service (FastAPI + uvicorn) and its micro-batcher."""
