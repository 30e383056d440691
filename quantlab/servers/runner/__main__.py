"""Run ``quantlab.runner`` as ``__main__`` (same arguments); see :mod:`quantlab.servers.runner`."""
import runpy

runpy.run_module("quantlab.runner", run_name="__main__", alter_sys=True)
