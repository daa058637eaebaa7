"""The offline preview: run the real program against a recording fake cloud, then report on it."""
