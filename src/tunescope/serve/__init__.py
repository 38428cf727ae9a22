"""`tunescope serve`: a local, read-only web dashboard over the run registry and the run folders.

`run_index` keeps an in-memory table of every registered run and every unfinished (`.partial`) run
folder, filtered, sorted and paged on the server; `live` reads a training run's new metrics records;
`files` serves files from inside a run folder and nothing else; `app` is the Starlette application
and `server` binds the socket and starts uvicorn.
"""
