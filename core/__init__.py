"""The estate's pure layer: no Pulumi resources, and no imports from components, providers or policy.

- ``kinds``: one record per workload kind (image, ports, data path, health check, GPU need).
- ``spec``: the stack file as typed models; ``errors``: key-path errors; ``rules``: cross-key checks.
- ``config``: reading a stack (file, ``pulumi.Config``, secrets) once into a ``Stack``.
- ``catalog``: GPU, model and price tables from assets/; ``demand``: VRAM, disk and RAM arithmetic.
- ``pricing``: placement and cost; ``topology``: the plan derived once (tunnels, upstreams, requests).
- ``stamps``: what nodes carry for the policy pack; ``text`` and ``templates``: hashes, scripts, assets.
"""
