"""The documentation (README.md and docs/*.md) says only what the code does.

Covers: every command in a shell block of the pages is exercised, or the test fails naming it:
- `predictive-autoscaler` (also `.venv/bin/…` and `python -m autoscaler`): the whole argument list
  goes through the real parser (`autoscaler.cli.build_parser`), every input file it names exists,
  and the command runs for real when it is quick: `--help`, and runs that fit no forecast model
  (`simulate` of the HPA and the oracle alone on the bundled trace, `backtest` of the baselines);
- `make`: the target is in the Makefile;
- `python SCRIPT` and `python -m MODULE`: the file exists, and its arguments go through the script's
  own argparse parser (stopped right after parsing); a script without a parser takes no arguments;
- `pytest`: the test files exist; `bash SCRIPT`: the script exists and `bash -n` accepts it;
- `kubectl`, `helm`, `docker`: listed in `EXERCISED`, which names the test that runs each one (or
  what it runs) — that test must exist — or in `NOT_RUNNABLE_HERE` with the reason;
- `jq` and `read` only reshape the output of a command that is itself checked.
A command of any other program fails the test. `kubectl annotate` commands and YAML blocks carrying
`predictive-autoscaler.io/` annotations must be accepted by `autoscaler.config.parse_annotations`.

Also: every fenced block declares its language; every relative link and picture resolves, anchors
included; every repository path named in the text (`autoscaler/…`, `tests/…`, `deploy/…`) exists;
docs/annotations.md has a section for every annotation key `autoscaler/config.py` knows, and each
row of its error table gives the key and message `parse_annotations` gives; README.md stays under
250 lines.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from autoscaler.cli import build_parser, main
from autoscaler.config import ANNOTATION_DEFAULTS, PREFIX, AnnotationError, parse_annotations

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
OTHER_LANGUAGES = {"yaml", "json", "text"}
CLI = {"predictive-autoscaler", ".venv/bin/predictive-autoscaler"}
PYTHON = {"python", "python3", ".venv/bin/python"}
PYTEST = {"pytest", ".venv/bin/pytest"}
PLUMBING = {"jq", "read"}
SHELL_KEYWORDS = {"while", "until", "for", "if", "then", "else", "fi", "do", "done"}
SEPARATORS = {"|", "||", "&&", ";", "&"}
ASSIGNMENT = re.compile(r"[A-Za-z_]\w*=.*", flags=re.DOTALL)
# Flags whose file is written, not read: it need not exist beforehand.
OUTPUT_DESTS = {"plot", "timeline"}
# Policies and models a quick run may use: none of them fits a forecast model.
QUICK_POLICIES = {"hpa", "oracle"}
QUICK_MODELS = {"naive", "seasonal-naive"}

# Each cluster or image command of the docs → the test that runs it (as `path::name[param]`), and
# what that test does with it.
EXERCISED: dict[str, tuple[str, str]] = {
    "kubectl apply -k deploy/": (
        "tests/test_deploy.py::test_renders_with_every_namespaced_object_placed[base]",
        "renders the base as `kubectl apply -k` would and validates every object",
    ),
    "kubectl apply -k my-cluster/": (
        "tests/test_deploy.py::test_renders_with_every_namespaced_object_placed[all-components]",
        "renders an overlay of the base with every component, as the docs' my-cluster/ is",
    ),
    "kubectl delete -k my-cluster/": (
        "tests/test_deploy.py::test_renders_with_every_namespaced_object_placed[all-components]",
        "renders the objects `delete -k` removes: those `apply -k` made",
    ),
    "kubectl apply -k deploy/examples/agent/": (
        "tests/test_deploy.py::test_example_agent_is_opted_in_validly",
        "renders the example and checks its annotations with the controller's parser",
    ),
    "kubectl apply -k deploy/examples/agent-hpa/": (
        "tests/test_deploy.py::test_example_agent_is_opted_in_validly",
        "renders the example and checks its annotations with the controller's parser",
    ),
    "kubectl -n predictive-autoscaler rollout status deploy/predictive-autoscaler": (
        "tests/test_fakekube.py::test_kubectl[rollout-status]",
        "runs `kubectl rollout status deploy/…` against the fake API server",
    ),
    "kubectl -n predictive-autoscaler get leases": (
        "tests/test_deploy.py::test_replicas_share_shards_on_the_leases_the_role_names",
        "checks the shard Leases' namespace and names are those the controller is given",
    ),
    "kubectl -n agents annotate deploy support-agent predictive-autoscaler.io/enabled=true "
    "predictive-autoscaler.io/metrics=cpu,requests predictive-autoscaler.io/target-requests-per-pod=2 "
    "predictive-autoscaler.io/dry-run=true": (
        "tests/test_controller.py::test_kubectl_sees_and_steers_the_controller",
        "annotates a Deployment with the real kubectl and the controller follows",
    ),
    "kubectl -n agents get events --field-selector involvedObject.name=support-agent": (
        "tests/test_fakekube.py::test_kubectl[get-events]",
        "runs `kubectl get events` against the fake API server",
    ),
    "kubectl -n agents get deploy support-agent -o "
    "jsonpath={.metadata.annotations.predictive-autoscaler\\.io/status}": (
        "tests/test_controller.py::test_kubectl_sees_and_steers_the_controller",
        "reads the status annotation with `kubectl get -o jsonpath`",
    ),
    "kubectl get hpa -A -o json": (
        "tests/test_fakekube.py::test_kubectl[get-hpa]",
        "runs `kubectl get hpa` against the fake API server",
    ),
    'kubectl -n $ns patch hpa $name --type merge -p {"spec":{"minReplicas":$floor},"metadata":'
    '{"annotations":{"predictive-autoscaler.io/original-min-replicas":null}}}': (
        "tests/test_fakekube.py::test_kubectl[patch-merge]",
        "runs a `kubectl patch --type merge` against the fake API server",
    ),
    "kubectl create namespace predictive-autoscaler": (
        "tests/test_fakekube.py::test_kubectl[create-namespace]",
        "runs `kubectl create namespace` against the fake API server",
    ),
    "kubectl label namespace predictive-autoscaler pod-security.kubernetes.io/enforce=restricted "
    "pod-security.kubernetes.io/enforce-version=latest": (
        "tests/test_fakekube.py::test_kubectl[label-namespace]",
        "runs the same `kubectl label namespace` against the fake API server",
    ),
    "kubectl delete namespace predictive-autoscaler": (
        "tests/test_fakekube.py::test_kubectl[delete-namespace]",
        "runs `kubectl delete namespace` against the fake API server",
    ),
    "helm install predictive-autoscaler deploy/chart -n predictive-autoscaler "
    "--set image.repository=registry.example.com/platform/predictive-autoscaler --set image.tag=0.1.0 "
    "--set prometheus.url=http://kube-prometheus-stack-prometheus.monitoring.svc:9090 "
    "--set serviceMonitor.enabled=true --set prometheusRule.enabled=true "
    "--set dashboards.enabled=true": (
        "tests/test_helm.py::test_helm_installs_what_kubectl_apply_k_installs[every-optional-part]",
        "installs the chart with Helm's library, every optional part on, and compares it with kubectl's",
    ),
    "helm install predictive-autoscaler deploy/chart -n predictive-autoscaler "
    "--set watchNamespaces={agents,payments}": (
        "tests/test_helm.py::test_helm_installs_what_kubectl_apply_k_installs[namespaced]",
        "installs the chart with Helm's library watching listed namespaces",
    ),
    "helm upgrade predictive-autoscaler deploy/chart -n predictive-autoscaler --reuse-values "
    "--set image.tag=0.2.0": (
        "tests/test_helm.py::test_upgrade_with_new_settings_rolls_the_pods",
        "upgrades a release with Helm's library and checks the rollout",
    ),
    "helm uninstall predictive-autoscaler -n predictive-autoscaler": (
        "tests/test_helm.py::test_uninstall_removes_every_object_and_the_release",
        "uninstalls with Helm's library: every object and the release record go",
    ),
    "kubectl predictive": (
        "tests/cli/test_cli_status.py::test_kubectl_plugin",
        "runs the plugin through the real kubectl against the fake API server",
    ),
    "kubectl predictive -n shop": (
        "tests/cli/test_cli_status.py::test_kubectl_plugin",
        "runs exactly this through the real kubectl (with --context) and checks the rows",
    ),
    "kubectl predictive shop/web": (
        "tests/cli/test_cli_status.py::test_one_workload_shows_details_and_history",
        "the plugin is `status` (test_kubectl_plugin); this runs `status shop/web`",
    ),
    "kubectl predictive shop/statefulset/web": (
        "tests/cli/test_cli_status.py::test_statefulset_by_kind",
        "the plugin is `status` (test_kubectl_plugin); this runs `status shop/statefulset/web`",
    ),
    "kubectl predictive -o wide": (
        "tests/cli/test_cli_status.py::test_wide_adds_columns",
        "the plugin is `status` (test_kubectl_plugin); this runs `status -o wide`",
    ),
    "kubectl predictive --watch --interval 5s": (
        "tests/cli/test_cli_status.py::test_watch_prints_again_on_change",
        "the plugin is `status` (test_kubectl_plugin); this runs `status --watch` as a process",
    ),
    "docker build --build-arg BASE_IMAGE=python:3.11-slim-bookworm "
    "-t registry.example.com/platform/predictive-autoscaler:0.1.0 .": (
        "tests/test_image.py::test_help_runs_as_the_numeric_non_root_user",
        "builds the Dockerfile (on the local base image) and runs the image",
    ),
}

# Commands no test can run, and why.
NOT_RUNNABLE_HERE: dict[str, str] = {
    "docker push registry.example.com/platform/predictive-autoscaler:0.1.0": (
        "pushes to the reader's own registry"
    ),
}


# --- reading the pages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Command:
    """One simple command of a shell block: the program and its arguments, quotes removed."""

    page: Path
    line: int
    argv: tuple[str, ...]
    env: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return " ".join(self.argv)

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.key}"


def fenced_blocks(page: Path) -> list[Block]:
    blocks: list[Block] = []
    opened: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if line.startswith("```"):
            if opened is None:
                opened, body = (number, line[3:].strip()), []
            else:
                blocks.append(Block(page, opened[0], opened[1], tuple(body)))
                opened = None
        elif opened is not None:
            body.append(line)
    assert opened is None, f"{page.relative_to(ROOT)}:{opened[0]}: fenced block never closed"
    return blocks


def _words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def _carry(text: str) -> str | None:
    """What joins a shell text to its next line if the command goes on there (a newline inside an
    open quote, a space after a trailing pipe, a separator inside an open loop); None if it ends."""
    try:
        words = _words(text)
    except ValueError:
        return "\n"
    if words and words[-1] in SEPARATORS - {";"}:
        return " "
    opened = sum(w in {"while", "until", "for", "if"} for w in words)
    return None if opened == sum(w in {"done", "fi"} for w in words) else " ; "


def logical_lines(block: Block) -> Iterator[tuple[int, str]]:
    """The block's commands as the shell reads them: `$ ` prompts stripped (with prompts, the other
    lines are output), continuations joined, open quotes and loops carried to the next line."""
    prompted = any(line.startswith("$ ") for line in block.lines)
    buffer, start = "", 0
    for offset, raw in enumerate(block.lines, start=block.line + 1):
        line = raw
        if not buffer:
            if prompted and not line.startswith("$ "):
                continue
            line = line.removeprefix("$ ")
            start = offset
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        carry = _carry(buffer)
        if carry is None:
            if buffer.strip():
                yield start, buffer
            buffer = ""
        else:
            buffer += carry
    assert not buffer, f"{block.page.relative_to(ROOT)}:{start}: command never ends"


def commands_of(block: Block) -> list[Command]:
    found: list[Command] = []
    for line, text in logical_lines(block):
        words: list[str] = []
        for word in [*_words(text), ";"]:
            if word in SEPARATORS:
                assignments = 0
                while assignments < len(words) and ASSIGNMENT.fullmatch(words[assignments]):
                    assignments += 1
                env, argv = tuple(words[:assignments]), tuple(words[assignments:])
                if argv:
                    found.append(Command(block.page, line, argv, env))
                words = []
            elif not (word in SHELL_KEYWORDS and not words):
                words.append(word)
    return found


def all_blocks() -> list[Block]:
    return [block for page in PAGES for block in fenced_blocks(page)]


def all_commands() -> list[Command]:
    return [c for b in all_blocks() if b.language in SHELL_LANGUAGES for c in commands_of(b)]


def _unique(commands: list[Command]) -> list[Command]:
    seen: dict[str, Command] = {}
    for command in commands:
        seen.setdefault(command.key, command)
    return list(seen.values())


COMMANDS = _unique(all_commands())


def program(command: Command) -> str:
    return command.argv[0]


def cli_args(command: Command) -> list[str] | None:
    """The arguments of a `predictive-autoscaler` command, None for another program."""
    if program(command) in CLI:
        return list(command.argv[1:])
    if program(command) in PYTHON and command.argv[1:3] == ("-m", "autoscaler"):
        return list(command.argv[3:])
    return None


def category(command: Command) -> str:
    name = program(command)
    if cli_args(command) is not None:
        return "cli"
    if name == "make":
        return "make"
    if name in PYTHON:
        return "python"
    if name in PYTEST:
        return "pytest"
    if name == "bash":
        return "bash"
    if name in {"kubectl", "helm", "docker"}:
        return "cluster"
    if name in PLUMBING:
        return "plumbing"
    return "none"


def ids(commands: list[Command]) -> list[Any]:
    return [pytest.param(c, id=f"{c.page.name}:{c.line}:{c.key[:60]}") for c in commands]


def of_category(name: str) -> list[Any]:
    return ids([c for c in COMMANDS if category(c) == name])


# --- every command is in a category -------------------------------------------------------------


def test_the_pages_hold_commands_of_every_kind() -> None:
    kinds = {category(c) for c in COMMANDS}
    assert {"cli", "make", "python", "cluster"} <= kinds, kinds


@pytest.mark.parametrize("command", ids(COMMANDS))
def test_every_command_is_in_a_category(command: Command) -> None:
    assert category(command) != "none", f"{command}: no test exercises this kind of command"


def test_every_fenced_block_says_its_language() -> None:
    unknown = [
        f"{b.page.relative_to(ROOT)}:{b.line}: ```{b.language}"
        for b in all_blocks()
        if b.language not in SHELL_LANGUAGES | OTHER_LANGUAGES
    ]
    assert unknown == [], "a block without a known language hides its commands from this test"


# --- predictive-autoscaler ------------------------------------------------------------------------


class _Exit(Exception):
    def __init__(self, code: object) -> None:
        super().__init__(code)
        self.code = code


def parse(args: list[str]) -> argparse.Namespace:
    """`args` through the real parser; a usage error fails the test with argparse's message."""
    try:
        return build_parser().parse_args(args)
    except SystemExit as exc:
        raise _Exit(exc.code) from None


def is_quick(args: list[str], parsed: argparse.Namespace) -> bool:
    if parsed.command == "simulate":
        return (
            parsed.trace is None
            and set(parsed.policy) <= QUICK_POLICIES
            and not parsed.sweep
            and not parsed.plot
        )
    if parsed.command == "backtest":
        return parsed.prometheus_url is None and {m.value for m in parsed.model} <= QUICK_MODELS
    return False


@pytest.mark.parametrize("command", of_category("cli"))
def test_cli_command_parses_names_existing_files_and_runs_when_quick(
    command: Command, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = cli_args(command)
    assert args is not None
    if {"--help", "-h", "--version"} & set(args):
        with pytest.raises(SystemExit) as done:
            main(args)
        assert done.value.code == 0, f"{command}: exit {done.value.code}"
        assert capsys.readouterr().out.strip(), f"{command}: printed nothing"
        return
    try:
        parsed = parse(args)
    except _Exit as exc:
        pytest.fail(f"{command}: the parser refuses it (exit {exc.code}): {capsys.readouterr().err}")
    for dest, value in vars(parsed).items():
        if isinstance(value, Path) and dest not in OUTPUT_DESTS:
            assert (ROOT / value).exists(), f"{command}: --{dest} {value} does not exist"
    if is_quick(args, parsed):
        assert main(args) == 0, f"{command}: {capsys.readouterr().err}"
        assert capsys.readouterr().out.strip(), f"{command}: printed nothing"


def test_a_bad_flag_fails_the_parse() -> None:
    with pytest.raises(_Exit):
        parse(["simulate", "--no-such-flag"])


# --- make ---------------------------------------------------------------------------------------


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.MULTILINE))


@pytest.mark.parametrize("command", of_category("make"))
def test_make_target_exists(command: Command) -> None:
    targets = [a for a in command.argv[1:] if not a.startswith("-") and "=" not in a]
    assert targets, f"{command}: no target named"
    missing = set(targets) - make_targets()
    assert not missing, f"{command}: the Makefile has no target {sorted(missing)}"


# --- python scripts and modules -----------------------------------------------------------------


class _Parsed(Exception):
    """Raised right after a script's parser has accepted its arguments."""


@contextlib.contextmanager
def stop_after_parsing(argv: list[str]) -> Iterator[None]:
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        original(self, *args, **kwargs)
        raise _Parsed

    saved_argv = sys.argv
    argparse.ArgumentParser.parse_args = parse_then_stop  # type: ignore[method-assign]
    sys.argv = argv
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
        sys.argv = saved_argv


@pytest.mark.parametrize("command", of_category("python"))
def test_python_script_exists_and_parses_its_arguments(command: Command) -> None:
    argv = list(command.argv[1:])
    if argv[:1] == ["-m"]:
        module, args = argv[1], argv[2:]
        source = ROOT / (module.replace(".", "/") + ".py")
    else:
        module, args = "", argv[1:]
        source = ROOT / argv[0]
    assert source.is_file(), f"{command}: {source.relative_to(ROOT)} does not exist"
    if "argparse" not in source.read_text():
        assert args == [], f"{command}: {source.relative_to(ROOT)} reads no arguments"
        return
    with stop_after_parsing([str(source), *args]), pytest.raises(_Parsed):
        run_as_main(module, source)


def run_as_main(module: str, source: Path) -> None:
    """`python -m module` (when given) or `python source`, in this process."""
    if module:
        # Other tests import the module first; running it again as __main__ is what is meant here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "'.*' found in sys.modules", RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=False)
    else:
        runpy.run_path(str(source), run_name="__main__")


# --- pytest, bash --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", of_category("pytest"))
def test_pytest_paths_exist(command: Command) -> None:
    paths = [a.split("::")[0] for a in command.argv[1:] if not a.startswith("-")]
    assert paths, f"{command}: no test named"
    for path in paths:
        assert (ROOT / path).exists(), f"{command}: {path} does not exist"


@pytest.mark.parametrize("command", of_category("bash"))
def test_bash_script_exists_and_parses(command: Command) -> None:
    script = ROOT / command.argv[1]
    assert script.is_file(), f"{command}: {command.argv[1]} does not exist"
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, f"{command}: {checked.stderr}"


# --- kubectl, helm, docker ----------------------------------------------------------------------


@pytest.mark.parametrize("command", of_category("cluster"))
def test_cluster_command_is_exercised_by_a_named_test(command: Command) -> None:
    if command.key in NOT_RUNNABLE_HERE:
        return
    assert command.key in EXERCISED, (
        f"{command}: add it to EXERCISED with the test that runs it, or to NOT_RUNNABLE_HERE"
    )


@pytest.mark.parametrize(("key", "where"), [(k, v[0]) for k, v in EXERCISED.items()])
def test_each_exercising_test_exists_and_the_command_is_still_documented(key: str, where: str) -> None:
    match = re.fullmatch(r"(?P<path>[^:]+)::(?P<name>\w+)(\[(?P<param>[\w-]+)\])?", where)
    assert match is not None, where
    source = (ROOT / match["path"]).read_text()
    assert f"def {match['name']}(" in source, f"{where}: no such test"
    if match["param"]:
        assert re.search(rf"""(id=|Rendering\(|Case\()\s*"{re.escape(match["param"])}\"""", source), (
            f"{where}: no case {match['param']}"
        )
    assert key in {c.key for c in COMMANDS}, f"{key}: no page shows it any more; drop it here"


def test_commands_not_runnable_here_are_still_documented() -> None:
    documented = {c.key for c in COMMANDS}
    assert set(NOT_RUNNABLE_HERE) <= documented


@pytest.mark.parametrize(
    "command", ids([c for c in COMMANDS if c.argv[:1] == ("kubectl",) and "annotate" in c.argv])
)
def test_annotate_commands_give_valid_annotations(command: Command) -> None:
    given = {
        key: value
        for key, _, value in (a.partition("=") for a in command.argv)
        if key.startswith(PREFIX) and value
    }
    assert given, f"{command}: annotates nothing of ours"
    assert parse_annotations(given) is not None, f"{command}: does not opt the workload in"


# --- YAML annotation examples ------------------------------------------------------------------


def _annotation_maps(node: object) -> Iterator[dict[str, str]]:
    if isinstance(node, dict):
        ours = {str(k): str(v) for k, v in node.items() if str(k).startswith(PREFIX)}
        if ours:
            yield ours
        for value in node.values():
            yield from _annotation_maps(value)
    elif isinstance(node, list):
        for item in node:
            yield from _annotation_maps(item)


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(b, id=f"{b.page.name}:{b.line}")
        for b in all_blocks()
        if b.language == "yaml" and any(PREFIX in line for line in b.lines)
    ],
)
def test_yaml_annotation_examples_are_valid(block: Block) -> None:
    maps = list(_annotation_maps(yaml.safe_load("\n".join(block.lines))))
    assert maps, f"{block.page.name}:{block.line}: no annotations found"
    for found in maps:
        opted_in = {PREFIX + "enabled": "true", **found}
        assert parse_annotations(opted_in) is not None


# --- annotations reference ------------------------------------------------------------------------

ANNOTATIONS_PAGE = ROOT / "docs" / "annotations.md"


def test_annotations_page_has_a_section_for_every_key() -> None:
    headings = set(re.findall(r"^### `([^`]+)`", ANNOTATIONS_PAGE.read_text(), flags=re.MULTILINE))
    keys = {*ANNOTATION_DEFAULTS, "metric.<name>", "status"}
    assert keys - headings == set(), "keys without a section"
    assert headings - keys == {"original-min-replicas"}, "sections for keys the code does not know"


def error_rows() -> list[Any]:
    text = ANNOTATIONS_PAGE.read_text()
    table = text[text.index("## Errors, by example") :]
    rows = []
    for line in table.splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 3 and cells[0].startswith("`"):
            given = re.findall(r"`([^`]+)`", cells[0])
            rows.append(pytest.param(given, cells[1].strip("`"), cells[2].strip("`"), id=cells[0]))
    return rows


def test_the_error_table_is_there() -> None:
    assert len(error_rows()) >= 10


@pytest.mark.parametrize(("given", "key", "problem"), error_rows())
def test_annotation_error_example_is_what_the_parser_says(
    given: list[str], key: str, problem: str
) -> None:
    written = {PREFIX + "enabled": "true"}
    for item in given:
        parsed = yaml.safe_load(item)
        assert isinstance(parsed, dict), item
        assert len(parsed) == 1, item
        ((name, value),) = parsed.items()
        written[PREFIX + str(name)] = str(value)
    with pytest.raises(AnnotationError) as refused:
        parse_annotations(written)
    assert (refused.value.key, refused.value.problem) == (PREFIX + key, problem)


# --- links and pictures -----------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def links() -> list[Any]:
    found = []
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
        text = re.sub(r"`[^`\n]*`", "", text)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"[a-z]+:", target):
                found.append(pytest.param(page, target, id=f"{page.name}->{target}"))
    return found


def test_the_pages_link_to_each_other() -> None:
    assert len(links()) >= 20


@pytest.mark.parametrize(("page", "target"), links())
def test_relative_link_resolves(page: Path, target: str) -> None:
    path, _, anchor = target.partition("#")
    resolved = (page.parent / path).resolve() if path else page
    assert resolved.exists(), f"{page.relative_to(ROOT)}: {target} does not exist"
    if anchor:
        assert resolved.suffix == ".md", target
        assert anchor in anchors(resolved), f"{page.relative_to(ROOT)}: no heading for #{anchor}"


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Running in a cluster: `run`", "running-in-a-cluster-run"),
        ("`metric.<name>`", "metricname"),
        ("AI agents: scale on what keeps them busy", "ai-agents-scale-on-what-keeps-them-busy"),
        ("Errors, by example", "errors-by-example"),
    ],
)
def test_slug_follows_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


# --- files named in the text -------------------------------------------------------------------

REPO_PATH = re.compile(
    r"`((?:autoscaler|forecasting|tests|bench|scripts|deploy|dashboards|examples|docs)/[^`\s]*)`"
)


def named_files() -> list[Any]:
    found = {
        (page, name)
        for page in PAGES
        for name in REPO_PATH.findall(page.read_text())
        if not any(c in name for c in "*<…")
    }
    return [pytest.param(page, name, id=f"{page.name}:{name}") for page, name in sorted(found)]


def test_the_pages_name_files() -> None:
    assert len(named_files()) >= 50


@pytest.mark.parametrize(("page", "name"), named_files())
def test_a_file_the_text_names_exists(page: Path, name: str) -> None:
    assert (ROOT / name).exists(), f"{page.relative_to(ROOT)} names {name}, which does not exist"


# --- README -------------------------------------------------------------------------------------


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES


def test_readme_shows_the_agent_demo_picture() -> None:
    assert "](docs/agent-demo.png)" in (ROOT / "README.md").read_text()
