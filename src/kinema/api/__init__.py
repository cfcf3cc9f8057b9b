"""The HTTP API (FastAPI). Thin: parse, call the service, render. Never imports torch."""
