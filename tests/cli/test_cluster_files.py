"""The cluster files (``cluster/``) agree with the project: they parse, the images build on Ray's
image of the pinned Ray version with the project's constraints, the image names and ``docker
build`` commands match, the runtime environment ships the package without the heavy directories,
and every ``dclr`` command they run is a valid command line.

The images cannot be built in the development sandbox (no registry access), so the Dockerfiles
are checked here by reading them. No Ray session is started.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import distributed_clr
from distributed_clr.cli import build_parser
from distributed_clr.cli.options import config_from

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
DOCKERFILES = {"cpu": CLUSTER / "Dockerfile", "gpu": CLUSTER / "Dockerfile.gpu"}
CONSTRAINTS = {"cpu": "constraints/cpu.txt", "gpu": "constraints/gpu.txt"}


# --- helpers ----------------------------------------------------------------------------------


def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a pip constraints file."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


def python_tag() -> str:
    """``py311`` for the Python version the project is checked against (mypy's)."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["python_version"]
    return "py" + version.replace(".", "")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, f"{dockerfile}: a continuation line at the end"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def resolved(dockerfile: Path) -> list[tuple[str, str]]:
    """The instructions with ``${ARG}`` replaced by the ARG defaults (build arguments not given)."""
    defaults: dict[str, str] = {}
    out = []
    for name, args in instructions(dockerfile):
        if name == "ARG" and "=" in args:
            key, value = args.split("=", 1)
            defaults.setdefault(key.strip(), value.strip().strip('"'))

        def substitute(match: re.Match[str]) -> str:
            key = match.group(1) or match.group(2)
            assert key in defaults, f"{dockerfile}: ${key} has no default"
            return defaults[key]

        out.append((name, re.sub(r"\$\{(\w+)\}|\$(\w+)", substitute, args)))
    return out


def base_image(dockerfile: Path) -> str:
    froms = [args.split()[0] for name, args in resolved(dockerfile) if name == "FROM"]
    assert len(froms) == 1, f"{dockerfile}: expected one FROM, found {froms}"
    return froms[0]


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    assert path.is_file(), ".dockerignore is missing at the repository root"
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: a pattern matches the path or one of its parents (``*`` within one path
    element, ``**`` across any number); the last matching pattern wins, ``!`` re-includes."""

    def regex(pattern: str) -> re.Pattern[str]:
        special = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        pieces = re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/"))
        parts = [special.get(piece, re.escape(piece)) for piece in pieces]
        return re.compile("".join(parts) + "$")

    elements = relative.split("/")
    prefixes = ["/".join(elements[: i + 1]) for i in range(len(elements))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        compiled = regex(pattern.lstrip("!"))
        if any(compiled.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def cluster_yamls() -> dict[str, Any]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(CLUSTER.glob("*.yaml"))}


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


COMMAND_KEYS = re.compile(r"entrypoint|command|args|\w+_commands")
"""Keys whose values are command lines: a RayJob's entrypoint, a container's command and args,
the launcher's ``*_commands`` lists."""


def yaml_commands(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if COMMAND_KEYS.fullmatch(str(key)):
                yield from strings(value)
            else:
                yield from yaml_commands(value)
    elif isinstance(node, list):
        for value in node:
            yield from yaml_commands(value)


def readme_commands() -> list[str]:
    """The shell command lines in cluster/README.md's code blocks, continuations joined."""
    text = (CLUSTER / "README.md").read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S):
        pending = ""
        for raw in block.splitlines():
            line = raw.rstrip()
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            if (pending + line).strip():
                commands.append(pending + line)
            pending = ""
    return commands


def dclr_argv(command: str) -> list[str] | None:
    """The ``dclr`` part of a command line (after ``ray job submit ... --``, say), or None."""
    argv = shlex.split(command, comments=True)
    return argv[argv.index("dclr") :] if "dclr" in argv else None


def strict_parser() -> argparse.ArgumentParser:
    """``dclr``'s parser, refusing abbreviated flags: the files spell every flag in full, so that
    a flag added later cannot make one of their commands ambiguous."""
    parser = build_parser()
    pending = [parser]
    while pending:
        current = pending.pop()
        current.allow_abbrev = False
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return parser


def parse_dclr(argv: list[str], where: str) -> argparse.Namespace:
    assert argv[0] == "dclr"
    try:
        args = strict_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{where}: not a valid dclr command line: {shlex.join(argv)}")
    if all(hasattr(args, name) for name in ("preset", "config", "overrides")):
        config_from(args)  # every --set key exists and every value is valid
    return args


# --- the files parse --------------------------------------------------------------------------


def test_cluster_yaml_files_parse() -> None:
    files = cluster_yamls()
    assert {"ray-cluster-aws.yaml", "kuberay-rayjob.yaml", "runtime_env.yaml"} <= set(files)
    for name, content in files.items():
        assert isinstance(content, dict), name


def test_launcher_config_is_valid_for_ray_cluster_launcher() -> None:
    """Against the launcher's own JSON schema (read from the Ray package, Ray not imported)."""
    import jsonschema

    spec = importlib.util.find_spec("ray")
    assert spec is not None
    assert spec.submodule_search_locations is not None
    schema_path = Path(next(iter(spec.submodule_search_locations))) / "autoscaler/ray-schema.json"
    config = yaml.safe_load((CLUSTER / "ray-cluster-aws.yaml").read_text())
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    assert config["head_node_type"] in config["available_node_types"]


def test_nothing_installs_from_a_repository_url() -> None:
    """The images carry the package; no YAML value pip-installs from a URL."""
    for name, content in cluster_yamls().items():
        for text in strings(content):
            assert "git+" not in text, f"{name}: {text}"
            assert "pip install" not in text, f"{name}: {text}"


# --- the images -------------------------------------------------------------------------------


def test_constraint_files_pin_the_same_ray() -> None:
    cpu, gpu = (pins(ROOT / CONSTRAINTS[kind]) for kind in ("cpu", "gpu"))
    assert cpu["ray"] == gpu["ray"]
    assert "torch" not in gpu, "the GPU constraints must leave the image's CUDA torch alone"


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_image_builds_on_rays_image_of_the_pinned_version(kind: str) -> None:
    ray_version = pins(ROOT / CONSTRAINTS["cpu"])["ray"]
    image = base_image(DOCKERFILES[kind])
    repository, _, tag = image.partition(":")
    assert repository == "rayproject/ray", image
    version, python, platform = tag.split("-", 2)
    assert version == ray_version, f"{image}: constraints/cpu.txt pins ray=={ray_version}"
    assert python == python_tag(), image
    if kind == "cpu":
        assert platform == "cpu", image
    else:
        assert re.fullmatch(r"cu\d+|gpu", platform), image


def pip_installs(dockerfile: Path) -> list[list[str]]:
    """The argument lists of the ``pip install`` commands of the RUN instructions."""
    found = []
    for name, args in resolved(dockerfile):
        if name == "RUN":
            for command in args.split("&&"):
                argv = shlex.split(command)
                if argv[:2] == ["pip", "install"]:
                    found.append(argv[2:])
    return found


def test_readme_names_the_base_images_the_dockerfiles_use() -> None:
    named = set(re.findall(r"rayproject/ray:[\w.\-]+", (CLUSTER / "README.md").read_text()))
    assert named == {base_image(path) for path in DOCKERFILES.values()}


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_image_installs_the_package_with_its_constraints(kind: str) -> None:
    installs = pip_installs(DOCKERFILES[kind])
    package = [argv for argv in installs if any(re.fullmatch(r"\.(\[[\w,]+\])?", a) for a in argv)]
    assert len(package) == 1, f"{DOCKERFILES[kind].name}: one pip install of the package"
    argv = package[0]
    assert argv[argv.index("-c") + 1] == CONSTRAINTS[kind], argv
    assert "-e" not in argv, "install the package, not a link to it"
    assert "--editable" not in argv, "install the package, not a link to it"
    other = CONSTRAINTS["gpu" if kind == "cpu" else "cpu"]
    assert not any(other in argv for argv in installs), f"{DOCKERFILES[kind].name} uses {other}"


def test_cpu_image_installs_torchs_cpu_build_at_the_pinned_version() -> None:
    """From PyTorch's CPU index (PyPI's Linux wheel brings the CUDA libraries), version from
    cpu.txt, before the package, so that the package install keeps it."""
    installs = pip_installs(DOCKERFILES["cpu"])
    torch = [
        i for i, argv in enumerate(installs) if any(re.fullmatch(r"torch(==.+)?", a) for a in argv)
    ]
    assert torch, "no pip install of torch"
    argv = installs[torch[0]]
    assert argv[argv.index("--index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert argv[argv.index("-c") + 1] == CONSTRAINTS["cpu"], "torch's version comes from cpu.txt"
    package = next(i for i, argv in enumerate(installs) if "-c" in argv and ".[lhco]" in argv)
    assert torch[0] < package


def test_gpu_image_installs_a_cuda_torch_matching_its_base_image() -> None:
    """One CUDA variant for the base image and torch's wheel index, cpu.txt's torch version,
    installed before the package."""
    cuda = base_image(DOCKERFILES["gpu"]).rsplit("-", 1)[1]
    assert re.fullmatch(r"cu\d+", cuda), "name the CUDA variant, not the -gpu alias"
    installs = pip_installs(DOCKERFILES["gpu"])
    torch = pins(ROOT / CONSTRAINTS["cpu"])["torch"]
    first = installs[0]
    assert f"torch=={torch}" in first, first
    assert first[first.index("--index-url") + 1] == f"https://download.pytorch.org/whl/{cuda}"
    assert not any("torch" in arg for argv in installs[1:] for arg in argv)


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_image_copies_only_what_exists_and_is_in_the_build_context(kind: str) -> None:
    patterns = dockerignore_patterns()
    copied = []
    for name, args in resolved(DOCKERFILES[kind]):
        if name in {"COPY", "ADD"}:
            sources = [word for word in args.split() if not word.startswith("--")][:-1]
            copied += [source.rstrip("/") for source in sources]
    assert {"pyproject.toml", "README.md", "distributed_clr", CONSTRAINTS[kind]} <= {
        *copied,
        *(f"{source}/{Path(CONSTRAINTS[kind]).name}" for source in copied),
    }
    for source in copied:
        path = ROOT / source
        assert path.exists(), f"{DOCKERFILES[kind].name} copies {source}, which does not exist"
        assert not dockerignored(source, patterns), f".dockerignore excludes {source}"
        files = path.rglob("*") if path.is_dir() else [path]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if file.is_file() and "__pycache__" not in relative:
                assert not dockerignored(relative, patterns), f".dockerignore excludes {relative}"


def test_dockerignore_keeps_environments_outputs_and_history_out() -> None:
    patterns = dockerignore_patterns()
    for path in [".venv/bin/python", ".git/HEAD", "mlflow.db", "mlruns/0/meta.yaml",
                 "ray_results/run/x", "demo_data/raw/shard.parquet", "studies/s/report.md",
                 "distributed_clr/__pycache__/x.pyc"]:  # fmt: skip
        assert dockerignored(path, patterns), f".dockerignore lets {path} in"


def test_the_matcher_tells_excluded_paths_from_kept_ones() -> None:
    """The Docker matcher of these tests, on cases whose answers Docker's rules fix."""
    assert dockerignored("studies/x", ["studies"])
    assert not dockerignored("distributed_clr/studies/x.py", ["studies"])
    assert dockerignored("distributed_clr/studies/__pycache__/a.pyc", ["**/__pycache__"])
    assert not dockerignored("a.db", ["*.db", "!a.db"])


def test_image_names_match_the_dockerfiles_and_the_package_version() -> None:
    """Every image the YAML files run and every `docker build` in cluster/ is
    ``<registry>/dclr:<package version>-<cpu|gpu>``, built from the Dockerfile of its kind."""
    expected_tag = re.compile(
        rf"[\w.\-/:]+/dclr:{re.escape(distributed_clr.__version__)}-(cpu|gpu)"
    )
    files = cluster_yamls()
    launcher = files["ray-cluster-aws.yaml"]["docker"]
    job = files["kuberay-rayjob.yaml"]["spec"]["rayClusterSpec"]
    pods = [job["headGroupSpec"], *job["workerGroupSpecs"]]
    images = [c["image"] for pod in pods for c in pod["template"]["spec"]["containers"]]
    for image in [launcher["image"], *images]:
        match = expected_tag.fullmatch(image)
        assert match, f"{image}: not <registry>/dclr:{distributed_clr.__version__}-<kind>"
        assert match.group(1) == "gpu", f"{image}: GPU workers need the GPU image"
    assert job["rayVersion"] == pins(ROOT / CONSTRAINTS["cpu"])["ray"]

    sources = [CLUSTER / "README.md", *CLUSTER.glob("*.yaml"), *DOCKERFILES.values()]
    builds = [
        (path.name, shlex.split(line.split("docker build", 1)[1], comments=True))
        for path in sources
        for line in path.read_text().splitlines()
        if re.match(r"\s*(#\s*)?docker build ", line)  # a command line, or one in a comment
    ]
    assert len(builds) >= 4
    for name, argv in builds:
        dockerfile, tag = argv[argv.index("-f") + 1], argv[argv.index("-t") + 1]
        match = expected_tag.fullmatch(tag)
        assert match, f"{name}: docker build -t {tag}"
        assert dockerfile == DOCKERFILES[match.group(1)].relative_to(ROOT).as_posix(), (
            f"{name}: {tag} built from {dockerfile}"
        )
        assert argv[-1] == ".", f"{name}: build from the repository root"


# --- the runtime environment ------------------------------------------------------------------


def runtime_env() -> dict[str, Any]:
    env = yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())
    assert isinstance(env, dict)
    return env


def test_runtime_env_is_a_valid_ray_runtime_env() -> None:
    from ray.runtime_env import RuntimeEnv

    env = runtime_env()
    RuntimeEnv(**env)  # Ray's own validation (env_vars of strings, excludes a list, ...)
    # Ray takes an unknown field for a plugin's and ignores it: a misspelt field would be lost.
    assert set(env) <= RuntimeEnv.known_fields, set(env) - RuntimeEnv.known_fields
    assert env["working_dir"] == "."
    assert env["env_vars"]["DCLR_PROGRESS"] == "0"
    assert "pip" not in env, "the image has the dependencies"
    assert "py_modules" not in env, "the job imports the shipped working copy"


def test_runtime_env_ships_the_package_and_leaves_the_heavy_directories() -> None:
    """What Ray would upload: the excludes read with Ray's own matcher; a path is left out when
    it or one of its directories matches (Ray does not descend into an excluded directory)."""
    from ray._private.thirdparty.pathspec import PathSpec

    spec = PathSpec.from_lines("gitwildmatch", runtime_env()["excludes"])
    for path in [".venv", ".venv/bin/python", ".git", ".git/HEAD", "mlflow.db", "mlruns",
                 "ray_results", "demo_data", "studies", "mlartifacts",
                 "distributed_clr/__pycache__"]:  # fmt: skip
        assert spec.match_file(path), f"runtime_env.yaml ships {path}"
    package = [
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "distributed_clr").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert len(package) > 50
    for path in ["pyproject.toml", "tune_spaces/temperature_latent.yaml", *package]:
        parents = [path.rsplit("/", n)[0] for n in range(path.count("/") + 1)]
        assert not any(spec.match_file(p) for p in parents), f"runtime_env.yaml leaves out {path}"


# --- the dclr commands ------------------------------------------------------------------------


def test_rayjob_entrypoint_is_a_valid_dclr_command() -> None:
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "dclr"
    args = build_parser().parse_args(argv[1:])
    assert args.handler.__name__ == "_cmd_pretrain"
    assert args.workers == 4
    assert args.gpu
    # Every key it sets exists (renamed keys would fail here, naming their new place).
    config = config_from(args)
    assert config.ray.num_workers == 4
    assert config.ray.use_gpu
    assert config.train.optimizer.name == "lars"


def test_every_dclr_command_in_the_cluster_files_parses() -> None:
    found = 0
    for name, content in cluster_yamls().items():
        for text in yaml_commands(content):
            argv = dclr_argv(text)
            if argv is not None:
                parse_dclr(argv, name)
                found += 1
    for command in readme_commands():
        argv = dclr_argv(command)
        if argv is not None:
            parse_dclr(argv, f"cluster/README.md: {command.strip()}")
            found += 1
    assert found >= 3


def test_an_invalid_dclr_command_is_caught() -> None:
    """The check above fails on a wrong flag and on an unknown --set key."""
    with pytest.raises(pytest.fail.Exception):
        parse_dclr(["dclr", "pretrain", "--data", "/d", "--no-such-flag"], "here")
    with pytest.raises(pytest.fail.Exception):
        parse_dclr(["dclr", "pretrain", "--data", "/d", "--worker", "2"], "abbreviated")
    with pytest.raises(Exception, match="latnet_dim"):
        parse_dclr(["dclr", "pretrain", "--data", "/d", "--set", "model.latnet_dim=3"], "here")
    assert dclr_argv("ray job submit --address http://h:8265 -- dclr embed --help  # x") == [
        "dclr",
        "embed",
        "--help",
    ]
