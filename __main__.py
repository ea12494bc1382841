"""gpu-estate: load the stack's estate spec, build it, export endpoints, URLs and cost."""
import pulumi

from components.estate import (
    OUTPUT_CAPACITY, OUTPUT_COST, OUTPUT_GATEWAY, OUTPUT_MASTER_KEY, OUTPUT_NODES, OUTPUT_URLS, Estate, EstateArgs,
)
from components.spec import ConfigError, load_spec


def define_estate() -> Estate:
    try:
        spec = load_spec()
    except ConfigError as err:
        raise pulumi.RunError(str(err)) from None  # the key paths and values, without a traceback
    estate = Estate("estate", EstateArgs(spec=spec, project=pulumi.get_project(), stack=pulumi.get_stack()))
    pulumi.export(OUTPUT_NODES, estate.node_outputs())
    pulumi.export(OUTPUT_COST, estate.cost)
    pulumi.export(OUTPUT_CAPACITY, estate.capacity)
    pulumi.export(OUTPUT_URLS, estate.urls)
    if estate.gateway is not None:
        pulumi.export(OUTPUT_GATEWAY, estate.gateway_outputs())
        pulumi.export(OUTPUT_MASTER_KEY, estate.gateway.master_key)  # a secret: `pulumi stack output --show-secrets`
    return estate


define_estate()
