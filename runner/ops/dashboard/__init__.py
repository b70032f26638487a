"""`galley dashboard`: a local web page showing what `galley status` and `galley top` show, live.

Stdlib only (http.server and json): nothing to install, nothing added to the worker image, and
the page is three files of our own (static/) with no CDN, so it works offline. Roles:
``guard.py`` who may ask what (token, Host, Origin, CSRF), ``jobs.py`` a job's result object,
``history.py`` the queue depths over the last minutes, ``api.py`` the routes and their JSON,
``server.py`` the HTTP server and its binding rule.
"""
