"""Several machines on Ray, the engine vLLM itself uses across nodes: bringing up
the Ray head and workers, checking nodes before a spanning model starts, watching
them while it runs, and splitting a model's memory per node."""
