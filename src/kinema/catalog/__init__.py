"""The model catalog, torch-free: every model's spec, the models a deployment serves, and the plan
that turns a request into pipeline arguments. The API and the service read it to check requests;
the engine reads it to run them."""
