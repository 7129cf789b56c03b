"""The dashboard's pages: sign-in sessions (an HttpOnly cookie holding a JWT) and the HTML of each page.

The front end's sources live in the repository's `web/` directory (ES modules served as they are; uPlot copied
to `web/vendor` by `make web`); `lakepulse/api/routes/web.py` serves them from the metrics API, same origin.
"""
