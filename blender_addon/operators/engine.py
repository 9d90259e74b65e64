"""Engine connection operators: test (version + device), start and stop the local engine."""

from __future__ import annotations

import bpy

from .. import engine_link, jobs
from ..preferences import engine_settings
from .common import WAIT, finish


def _session(context):
    return context.window_manager.likeness


class LIKENESS_OT_test_connection(bpy.types.Operator):
    """Connect to the engine (starting the local one if needed) and show its version and device"""

    bl_idname = "likeness.test_connection"
    bl_label = "Test Connection"
    bl_options = {"REGISTER"}

    wait: WAIT

    def execute(self, context):
        settings = engine_settings(context)
        _session(context).engine_status = f"Connecting to the {settings.describe()}..."

        def work(task):
            task.report("connecting", 0.0)
            h = engine_link.client_for(settings).check_compatible()
            return f"Connected: Likeness engine {h.engine_version} on {h.device} (API v{h.api_version})"

        def done(task):
            _session(bpy.context).engine_status = task.result

        def failed(task):
            _session(bpy.context).engine_status = f"Not connected: {task.error}"

        task = jobs.submit("connect", "Test connection", work, done, failed)
        result = finish(self, task, self.wait, "Testing the engine connection...")
        if self.wait and task.state == "succeeded":
            self.report({"INFO"}, task.result)
        return result


class LIKENESS_OT_stop_engine(bpy.types.Operator):
    """Stop the local engine this Blender session started (it starts again when next needed)"""

    bl_idname = "likeness.stop_engine"
    bl_label = "Stop Local Engine"
    bl_options = {"REGISTER"}

    def execute(self, context):
        stopped = engine_link.stop_local_engine()
        _session(context).engine_status = "Local engine stopped" if stopped else "No local engine was running"
        self.report({"INFO"}, _session(context).engine_status)
        return {"FINISHED"}


CLASSES = (LIKENESS_OT_test_connection, LIKENESS_OT_stop_engine)
