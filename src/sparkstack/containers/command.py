"""The container ``create`` command, built from the plan like the native argv:
GPUs, IPC, ulimits, network, mounts, labels, and the environment by name only
(``-e NAME``: the value travels in the CLI's environment, never in argv)."""

from __future__ import annotations

from sparkstack.containers.config import ContainerConfig


def gpu_args(config: ContainerConfig) -> list[str]:
    """docker's ``--gpus all``; podman uses the NVIDIA CDI device instead."""
    if not config.gpus:
        return []
    if config.cli == "podman":
        return ["--device", "nvidia.com/gpu=all"]
    return ["--gpus", "all"]


def published_argv(engine_argv: list[str]) -> list[str]:
    """With a published port the engine must listen on the container's own interface."""
    out = list(engine_argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--host":
            out[i + 1] = "0.0.0.0"
    return out


def create_argv(
    config: ContainerConfig,
    engine_argv: list[str],
    env_names: list[str],
    port: int,
    files: list[str] | None = None,
) -> list[str]:
    """``CLI [global flags] create ... IMAGE ENGINE-ARGV``."""
    args = ["create", "--name", config.name]
    for key, value in config.labels.items():
        args += ["--label", f"{key}={value}"]
    if config.network == "host":
        args += ["--network", "host"]
    else:
        args += ["-p", f"127.0.0.1:{port}:{port}"]
        engine_argv = published_argv(engine_argv)
    args += gpu_args(config)
    if config.ipc_host:
        args += ["--ipc", "host"]
    if config.shm_size:
        args += ["--shm-size", config.shm_size]
    for limit, value in config.ulimits.items():
        args += ["--ulimit", f"{limit}={value}"]
    for mount in config.mounts:
        args += ["-v", mount]
    for path in files or []:  # the engine's input files, at the same path
        args += ["-v", f"{path}:{path}:ro"]
    for name in sorted(env_names):
        args += ["-e", name]
    # The engine's own program as the entrypoint: images differ in theirs (vllm-openai's
    # is `vllm serve`, NGC's a shell), and arguments after the image only append to it.
    args += ["--entrypoint", engine_argv[0]]
    return config.cli_command(*args, *config.run_args, config.image, *engine_argv[1:])
