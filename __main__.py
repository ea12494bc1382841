"""gpu-estate: load the stack's estate spec, build it, export endpoints, URLs and cost."""
import signal

import pulumi

from components.estate import (
    OUTPUT_CAPACITY, OUTPUT_COST, OUTPUT_GATEWAY, OUTPUT_MASTER_KEY, OUTPUT_NODES, OUTPUT_SERVERLESS, OUTPUT_URLS, Estate,
    EstateArgs,
)
from components.stack import load_stack
from core.errors import ConfigError


def stop_quietly_when_interrupted() -> None:
    """When the engine fails (a plugin it cannot find, say) its language host interrupts the program, whose
    default answer is two KeyboardInterrupt tracebacks (40 lines) printed under the engine's own error. The
    program exits without them instead; the engine has said what went wrong."""
    def stop(signum, frame):
        raise SystemExit(1)  # unwinds like the interrupt, but Python prints no traceback for it

    signal.signal(signal.SIGINT, stop)


def define_estate() -> Estate:
    try:
        stack = load_stack()
        estate = Estate("estate", EstateArgs(stack=stack))
    except ConfigError as err:
        raise pulumi.RunError(str(err)) from None  # the key paths and values, without a traceback
    pulumi.export(OUTPUT_NODES, estate.node_outputs())
    pulumi.export(OUTPUT_COST, estate.cost)
    pulumi.export(OUTPUT_CAPACITY, estate.capacity)
    pulumi.export(OUTPUT_URLS, estate.urls)
    if estate.serverless:
        pulumi.export(OUTPUT_SERVERLESS, estate.serverless_outputs())
    if estate.services:
        pulumi.export("services", estate.service_outputs())
    if estate.jobs:
        pulumi.export("jobs", {name: job.outputs() for name, job in estate.jobs.items()})
    if estate.gateway is not None:
        pulumi.export(OUTPUT_GATEWAY, estate.gateway_outputs())
        pulumi.export(OUTPUT_MASTER_KEY, estate.gateway.master_key)  # a secret: `pulumi stack output --show-secrets`
    return estate


if __name__ == "__main__":  # run by the language host (the tests run it under mocks by another name)
    stop_quietly_when_interrupted()
define_estate()
