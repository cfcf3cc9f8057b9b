"""The wire contracts' bodies and renderings, without HTTP: the API serves them, webhook delivery
sends them, the CLI checks its flags against them."""
