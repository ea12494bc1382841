"""``scripts/leftovers.py`` on Fly.io, against the loopback Fly Machines API: an app the stack's services
name that Fly holds and no state does is named and removed whole; one a state holds, or Fly does not know,
is not."""
from providers.fly import FlyMachineProvider
from scripts import leftovers
from tests.mocks import stack_config
from tests.unit.providers.test_fly import fly, props  # noqa: F401  (the loopback Fly, a machine's inputs)


def launch(app):
    return FlyMachineProvider().create(props(app=app))


def test_the_stack_names_its_fly_apps():
    assert leftovers.fly_apps(stack_config("prod")) == ["goblin-chat"]
    assert leftovers.fly_apps(stack_config("sandbox")) == ["goblin-chat-sandbox"]
    assert leftovers.fly_apps(stack_config("dev")) == []


def test_an_app_no_state_holds_is_named_and_terminated_whole(fly):
    launch("goblin-chat")
    launch("goblin-held")
    found = leftovers.fly_leftovers(["goblin-chat", "goblin-held", "never-made"], holds={"goblin-held"}, seen={},
                                    now=1000.0)
    assert [(x.cloud, x.id, x.status) for x in found] == [("fly", "goblin-chat", "1 machines")]
    assert "1 left over" in leftovers.describe(found)
    leftovers.terminate(found[0])
    assert set(fly.apps) == {"goblin-held"}  # the held one untouched
    assert leftovers.fly_leftovers(["goblin-chat"], holds=set(), seen={}, now=1000.0) == []


def test_an_app_that_cannot_be_read_is_not_named(fly, capsys):
    launch("goblin-chat")
    fly.inject("status", count=100, method="GET", path="/v1/apps/goblin-chat", status=503)
    assert leftovers.fly_leftovers(["goblin-chat"], holds=set(), seen={}, now=1000.0) == []
    assert "cannot read app goblin-chat" in capsys.readouterr().err
