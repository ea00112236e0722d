"""`python -m agent.cli ...`: the same app as the `edge-inspect` script (the demo, tests and benches run it so)."""

from agent.cli import app

app()
