"""Image policies: every image the estate deploys pinned by digest (where the stack's pack config asks for
it: prod's does), and no LiteLLM below the patched floor or of a known-compromised release.

Images are read where the plan puts them: a container node's ``launch.image``, a serverless template's
``image``, and the scripts remote commands run (a compose file's ``image:`` lines, a unit's ``docker run``).
LiteLLM packages are read from the same scripts (``pip install litellm==...``). A script that carries a
secret reaches the pack redacted (policy/redact.py), so the images of a node whose compose file holds a
secret are not seen here; the defaults they come from are checked in tests/unit/core/test_images.py.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Iterator, List

from pulumi_policy import EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy

from core.images import REFERENCE, litellm_verdict, parse_image
from core.vendors import Vendor
from policy.settings import schema, setting
from policy.stamps import CLOUD_RUN_SERVICE, FLY_MACHINE, GPU_INSTANCE, SERVERLESS_ENDPOINT

REMOTE_COMMAND = "command:remote:Command"
DEFAULTS: Dict[str, Any] = {"require_digest": False}

COMPOSE_IMAGE = re.compile(r"^\s*image:\s*['\"]?([^\s'\"]+)", re.M)
DOCKER_RUN = re.compile(r"\bdocker\s+run\s+(?P<rest>[^\n]+)")
PIP_LITELLM = re.compile(r"\blitellm(\[[a-z,_-]+\])?==(?P<version>[0-9][0-9A-Za-z.+-]*)", re.I)


def _run_image(rest: str) -> Iterator[str]:
    """The image of a ``docker run`` line: the first word that is an image reference with a tag or digest."""
    for word in rest.split():
        if (":" in word or "@" in word) and not word.startswith(("-", "/")) and REFERENCE.match(word):
            yield word
            return


def deployed_images(resource_type: str, props: Dict[str, Any]) -> List[str]:
    """Every image reference this resource makes a machine run."""
    if resource_type == GPU_INSTANCE:
        launch = props.get("launch") if isinstance(props.get("launch"), dict) else {}
        # A VM's launch image is its OS (``ubuntu2404``); a container node's is the image it runs.
        provider = str((props.get("stamps") or {}).get("provider") or "")
        container = provider in {v.value for v in Vendor if v.is_container}
        return [launch["image"]] if container and launch.get("image") else []
    if resource_type == SERVERLESS_ENDPOINT:
        template = props.get("template") if isinstance(props.get("template"), dict) else {}
        return [template["image"]] if template.get("image") else []
    if resource_type == FLY_MACHINE:
        return [props["image"]] if props.get("image") else []
    if resource_type == CLOUD_RUN_SERVICE:
        template = props.get("template") if isinstance(props.get("template"), dict) else {}
        return [c["image"] for c in template.get("containers") or [] if isinstance(c, dict) and c.get("image")]
    if resource_type == REMOTE_COMMAND:
        text = "\n".join(_command_text(props))
        if not text:
            return []
        found = COMPOSE_IMAGE.findall(text) + [i for m in DOCKER_RUN.finditer(text) for i in _run_image(m["rest"])]
        return list(dict.fromkeys(found))
    return []


def _command_text(props: Dict[str, Any]) -> List[str]:
    """What an SSH command runs: its ``create``, and the script it is sent on stdin (the gateway host's deploy
    travels there, ``core.text.RUN_STDIN``)."""
    return [props[k] for k in ("create", "stdin") if isinstance(props.get(k), str)]


def _scripts(resource_type: str, props: Dict[str, Any]) -> List[str]:
    if resource_type == REMOTE_COMMAND:
        return _command_text(props)
    if resource_type == GPU_INSTANCE and isinstance(props.get("launch"), dict):
        return [str(props["launch"].get("onstart") or "")]
    return []


def images_pinned_by_digest(args: ResourceValidationArgs, report_violation) -> None:
    if not setting(args, DEFAULTS, "require_digest"):
        return
    for ref in deployed_images(args.resource_type, args.props):
        try:
            pinned = parse_image(ref).digest is not None
        except ValueError:
            pinned = False
        if not pinned:
            report_violation(f"{args.name}: image {ref} is pinned by its tag only, which its publisher can move; "
                             "pin it by digest (name:tag@sha256:...; scripts/pin-images.sh fills the defaults)")


def is_litellm(ref: str) -> bool:
    try:
        return parse_image(ref).name.rsplit("/", 1)[-1] == "litellm"
    except ValueError:
        return False


def litellm_patched(args: ResourceValidationArgs, report_violation) -> None:
    for ref in deployed_images(args.resource_type, args.props):
        if is_litellm(ref):
            image = parse_image(ref)
            why = litellm_verdict(image.tag)
            if why:
                report_violation(f"{args.name}: image {ref}: {why}")
    for text in _scripts(args.resource_type, args.props):
        for m in PIP_LITELLM.finditer(text):
            why = litellm_verdict(m["version"])
            if why:
                report_violation(f"{args.name}: package litellm=={m['version']}: {why}")


POLICIES = [
    ResourceValidationPolicy(name="images-pinned-by-digest",
                             description="Every image the estate deploys is pinned by digest (where the stack asks).",
                             validate=images_pinned_by_digest, enforcement_level=EnforcementLevel.MANDATORY,
                             config_schema=schema(DEFAULTS, "require_digest")),
    ResourceValidationPolicy(name="litellm-patched",
                             description="No LiteLLM image or package below 1.84.0 or of a known-compromised release.",
                             validate=litellm_patched, enforcement_level=EnforcementLevel.MANDATORY),
]
