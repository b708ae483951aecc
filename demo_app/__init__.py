"""The demo: a Pyramid app, a Flask app, a reference collector, and the runner.

``python -m demo_app`` (what ``make demo`` runs) starts the whole pipeline on
this machine — collector, publishers, both apps as real HTTP servers — drives
a burst of requests at the apps and checks that every event they put reached
the collector. ``python -m demo_app.collector`` runs the collector alone.
"""
