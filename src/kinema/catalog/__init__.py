"""The model catalog, torch-free: every model's spec and the models a deployment serves
(`registry`), the plan that turns a request into pipeline arguments (`plan`), and what a loaded
model offers the worker (`runner.ClipRunner`). The API and the service read it to check requests;
the worker and the engine read it to run them."""
