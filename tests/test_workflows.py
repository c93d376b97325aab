"""The GitHub workflows are valid (checked offline against the vendored GitHub-workflow
schema of check-jsonschema) and keep the deployment's promises: least permissions, one
deployment at a time, the CPU build of torch, the weights cache, and `make book`."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
CHECK = Path(sys.executable).parent / "check-jsonschema"


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
    )


def load(name: str) -> dict:
    text = (ROOT / ".github" / "workflows" / name).read_text()
    data = yaml.safe_load(text)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_is_valid(path):
    done = lint(path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "breakage,needle",
    [
        (lambda w: w["jobs"]["build"].pop("runs-on"), "runs-on"),
        (lambda w: w["jobs"]["build"]["steps"][0].update({"uses": 7}), "uses"),
        (lambda w: w.update({"permissions": {"pages": "sometimes"}}), "sometimes"),
    ],
    ids=["job-without-runs-on", "uses-not-a-string", "bad-permission"],
)
def test_a_broken_workflow_fails_the_lint(tmp_path, breakage, needle):
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    breakage(workflow)
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(workflow))
    done = lint(broken)
    assert done.returncode != 0
    assert needle in done.stdout + done.stderr


def test_the_deployment_keeps_its_promises():
    pages = load("pages.yml")
    assert pages["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    assert pages["concurrency"]["group"]
    assert pages["on"]["push"]["branches"] == ["main"] and "workflow_dispatch" in pages["on"]
    build = pages["jobs"]["build"]
    assert "download.pytorch.org/whl/cpu" in build["env"]["PIP_EXTRA_INDEX_URL"]
    uses = {step.get("uses", "").split("@")[0]: step for step in build["steps"]}
    assert uses["actions/setup-python"]["with"]["python-version"] == "3.11"
    assert uses["actions/cache"]["with"]["path"] == "weights"
    assert "src/superposition" in uses["actions/cache"]["with"]["key"]
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    assert any(step.get("run") == "make book" for step in build["steps"])
    deploy = pages["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")


def test_pull_requests_run_what_ci_runs():
    test = load("test.yml")
    assert "pull_request" in test["on"]
    assert test["permissions"] == {"contents": "read"}
    steps = test["jobs"]["test"]["steps"]
    assert any(step.get("run") == "bash .ci/run" for step in steps)
