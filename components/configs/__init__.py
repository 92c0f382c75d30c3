"""Pure renderers: settings (and data files) in, each tool's own config text out.

Nothing here touches Pulumi, so tests feed the output to the real binaries
(promtool, amtool, blackbox_exporter) unchanged.
"""
