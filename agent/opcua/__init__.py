"""The OPC UA server (optional, asyncua): a reduced OPC 40100 Machine Vision model for PLCs and SCADA.

Only `config.py` and `hosting.py` may be imported without asyncua installed; the rest is loaded by
`hosting.start_opcua` when `opcua.enabled` is true. Address space and security: docs/opcua.md.
"""
