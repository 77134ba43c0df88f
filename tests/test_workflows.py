"""The GitHub workflows pass actionlint (with shellcheck on their scripts where it is installed)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_workflow_passes_actionlint():
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint, "actionlint is missing: it comes with the test extras (pip install -e '.[test]')"
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows, "no workflow found"
    done = subprocess.run([actionlint, *map(str, workflows)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nonexistent_context }}\n")
    done = subprocess.run([actionlint, str(broken)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0


def test_the_profile_workflow_shards_by_seed_and_renders_from_the_merged_records():
    import yaml

    flow = yaml.safe_load((ROOT / ".github" / "workflows" / "profile.yml").read_text())
    jobs = flow["jobs"]
    assert "matrix.seed" in str(jobs["shard"]["steps"]) and "fromJSON(needs.seeds.outputs.matrix)" in str(jobs["shard"]["strategy"])
    merge = " ".join(str(step.get("run", "")) for step in jobs["merge"]["steps"])
    assert "lib.shards merge" in merge and "--from-records" in merge and jobs["merge"]["needs"] == "shard"
    assert all("./.github/actions/setup" in str(jobs[j]["steps"]) for j in ("shard", "merge"))
