"""`sparkstack bench`: load any OpenAI-compatible endpoint, measure what users feel
(TTFT, inter-token latency, end-to-end latency, throughput) from timestamps taken
on every streamed chunk and token counts from the server's ``usage``, and write a
run directory with per-request rows, a summary, plots and a report."""
