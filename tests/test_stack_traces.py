"""The stack the SDK records with each resource keeps only the project's own frames, in order, so the
engine's checkpoint (written whole after every step on a diy backend) does not carry the SDK's, asyncio's
and the operator's install paths for every resource. ``tests/test_engine.py`` reads the frames the real
engine stored; these cases pin what is kept."""
import pathlib

import pulumi.runtime.resource as sdk_resource
from pulumi.runtime.proto import source_pb2

from providers import resource
from providers.resource import PROJECT_DIRS, SDK_STACK_ENV, project_frames, project_stack_traces

PROJECT = pathlib.Path("/srv/estate")


def frame(path: str, line: int) -> source_pb2.StackFrame:
    return source_pb2.StackFrame(pc=source_pb2.SourcePosition(uri=pathlib.Path(path).as_uri(), line=line))


def where(trace) -> list:
    return [(f.pc.uri.removeprefix("file://"), f.pc.line) for f in trace.frames]


def test_only_the_project_frames_are_kept_in_their_order():
    trace = source_pb2.StackTrace(frames=[
        frame("/srv/estate/providers/ollama.py", 296),
        frame("/srv/estate/.venv/lib/python3.11/site-packages/pulumi/output.py", 120),  # an apply in the SDK
        frame("/srv/estate/components/estate.py", 269),
        source_pb2.StackFrame(),  # a frame the SDK has no position for
        frame("/srv/estate/__main__.py", 18),
        frame("/home/op/.pyenv/versions/3.11.7/lib/python3.11/asyncio/base_events.py", 640),
        frame("/usr/lib/python3/dist-packages/pulumi/runtime/stack.py", 141),
        frame("/srv/estate-old/__main__.py", 1),  # a sibling directory whose name starts the same
    ])
    kept = project_frames(trace, (PROJECT,))
    assert where(kept) == [("/srv/estate/providers/ollama.py", 296), ("/srv/estate/components/estate.py", 269),
                           ("/srv/estate/__main__.py", 18)]


def test_a_stack_with_no_project_frame_is_left_whole():
    trace = source_pb2.StackTrace(frames=[frame("/opt/lib/site-packages/pulumi_aws/ec2/instance.py", 900),
                                          frame("/opt/lib/asyncio/events.py", 80)])
    assert project_frames(trace, (PROJECT,)) == trace
    assert project_frames(source_pb2.StackTrace(), (PROJECT,)) == source_pb2.StackTrace()


def test_the_project_is_known_by_its_linked_path_too(tmp_path):
    real = tmp_path / "real"
    (real / "components").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    trace = source_pb2.StackTrace(frames=[frame(f"{link}/components/node.py", 81), frame("/usr/lib/x.py", 1)])
    assert project_frames(trace, (real,)) == trace  # the resolved path alone does not see the link's frames
    assert where(project_frames(trace, (real, link))) == [(f"{link}/components/node.py", 81)]
    # This module's own directory is among the project's, as imported and as resolved.
    here = pathlib.Path(resource.__file__).resolve().parent.parent
    assert here in PROJECT_DIRS


def test_the_switch_puts_the_sdk_stack_back():
    current = sdk_resource._get_stack_trace  # a program run under mocks in this process may have set ours
    try:
        assert project_stack_traces({}) is True
        trimmed = sdk_resource._get_stack_trace
        assert trimmed is not resource._SDK_GET_STACK_TRACE and project_stack_traces({}) is True
        assert sdk_resource._get_stack_trace is trimmed  # a second call changes nothing
        assert project_stack_traces({SDK_STACK_ENV: "1"}) is False
        assert sdk_resource._get_stack_trace is resource._SDK_GET_STACK_TRACE
    finally:
        sdk_resource._get_stack_trace = current


def declared(get_stack_trace) -> set:
    """The files of the frames ``get_stack_trace`` records when called as the SDK calls it: from a resource
    constructor chain (three ``__init__`` frames)."""
    class Base:
        def __init__(self):
            self.trace = get_stack_trace()

    class Middle(Base):
        def __init__(self):
            super().__init__()

    class Concrete(Middle):
        def __init__(self):
            super().__init__()

    return {pathlib.Path(f.pc.uri.removeprefix("file://")).name for f in Concrete().trace.frames}


def test_a_resource_declared_here_records_this_file_and_not_pytest():
    assert declared(resource._get_project_stack_trace) == {"test_stack_traces.py"}
    assert len(declared(resource._SDK_GET_STACK_TRACE)) > 3  # pytest's and pluggy's frames were there to drop
