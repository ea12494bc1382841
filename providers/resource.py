"""The base of this project's dynamic resources: the SDK's ``pulumi.dynamic.Resource``, with the outputs a
subclass names kept secret, registered through the one SDK workaround a program needs
(``providers/sdk_workarounds.py``: the pickler's wrappers, which otherwise fail a program of a few hundred
dynamic resources with ``RecursionError``)."""
from __future__ import annotations

from typing import Optional, Tuple

import pulumi
from pulumi.dynamic import Resource

from providers.sdk_workarounds import pickler_left_as_found


class DynamicResource(Resource):
    """``pulumi.dynamic.Resource`` that leaves the pickler as it found it, and keeps the outputs a subclass
    names in ``SECRET_OUTPUTS`` secret in state whatever its inputs were."""

    SECRET_OUTPUTS: Tuple[str, ...] = ()

    def __init__(self, provider, name: str, props: dict, opts: Optional[pulumi.ResourceOptions] = None):
        if self.SECRET_OUTPUTS:
            opts = pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=list(self.SECRET_OUTPUTS)))
        with pickler_left_as_found():
            super().__init__(provider, name, props, opts)
