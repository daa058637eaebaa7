"""Which release a deploy rolls out: the image built from the commit being deployed, never a tag kept in a file.

CI builds and pushes `<repository>:<sha>` and `<repository>:<sha>-gpu` for every commit it deploys, and runs the
program from that commit's checkout; so the commit's SHA names the image. `MLSTACK_IMAGE_TAG` overrides it for a
run outside a checkout (a source archive) or to redeploy an earlier commit's image; it must be such a SHA too.
"""

import os
import re
import subprocess
from pathlib import Path

from infra.config import StackConfigError

IMAGE_TAG_ENV = "MLSTACK_IMAGE_TAG"
GPU_IMAGE_SUFFIX = "-gpu"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


def deployed_image_tag(project_root: Path = PROJECT_ROOT) -> str:
    """The 40-hex commit SHA whose image this run deploys: `MLSTACK_IMAGE_TAG`, else `git rev-parse HEAD`."""
    override = os.environ.get(IMAGE_TAG_ENV)
    if override is not None:
        if not COMMIT_SHA.match(override):
            raise StackConfigError(
                f"{IMAGE_TAG_ENV}: {override!r} is not a commit SHA; CI tags images with the full 40-character "
                "lower-case SHA of the commit it built (`git rev-parse HEAD`)"
            )
        return override
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=project_root,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise StackConfigError(
            f"{project_root}: cannot run git to find the commit to deploy ({error}); set {IMAGE_TAG_ENV} to the "
            "commit SHA whose image CI pushed"
        ) from None
    sha = result.stdout.strip()
    if result.returncode != 0 or not COMMIT_SHA.match(sha):
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"got {sha!r}"
        raise StackConfigError(
            f"{project_root}: not a git checkout with a commit ({reason}); set {IMAGE_TAG_ENV} to the commit SHA "
            "whose image CI pushed"
        )
    return sha


def service_image_tag(gpu: bool) -> str:
    """The model service's tag: the commit's, with `-gpu` for the CUDA build."""
    return deployed_image_tag() + (GPU_IMAGE_SUFFIX if gpu else "")
