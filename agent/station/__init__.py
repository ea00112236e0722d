"""The technician's station: an HTTP server inside the daemon (live view and review now; recalibration later).

`config.py` is the `station` config section, `auth.py` passwords, sessions and login rate limits, `audit.py` the
audit log, `live.py` the `LiveBoard` the daemon feeds with inspected frames, `backend.py` what the daemon must
provide, `app.py` the FastAPI factory (routes in `routes_auth.py`, `routes_live.py`, `routes_review.py` and
`pages.py`, guards in `guards.py`; the review API's input and views in `review_input.py` and `review_view.py`),
`server.py` uvicorn on its own thread. Static pages live in `static/`.
"""
