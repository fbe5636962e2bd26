"""FastAPI glue: the only part of the kit that knows the web framework."""
