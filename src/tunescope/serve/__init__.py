"""`tunescope serve`: a local, read-only web dashboard over the run registry and the run folders.

`run_index` keeps an in-memory table of every registered run and every unfinished (`.partial`) run
folder (`partial_runs`), filtered, sorted and paged on the server; `live` reads a training run's new
metrics records; `security` serves files from inside a run folder and nothing else, and holds the
policies and the token gate; `run_pages` and `cross_run_pages` are the pages,
rendered through `pages` (the templates); `app` is the Starlette
application and `server` binds the socket and starts uvicorn.
"""
