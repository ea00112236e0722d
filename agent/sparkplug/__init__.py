"""The optional Sparkplug B edge node (`sparkplug.enabled`): the box as an edge node, each camera a device, every
stored result a DDATA, for Ignition and other Sparkplug hosts. `hosting.py` is what the daemon calls; the session
is `node.py`. Topics, metrics and commands: docs/integration.md, "Sparkplug B".
"""
