"""Loops an API process runs beside its HTTP server: webhook delivery and housekeeping."""
