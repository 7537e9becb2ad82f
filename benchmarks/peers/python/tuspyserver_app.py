"""tuspyserver's router on a bare FastAPI app, endpoint /files, as the benchmark runs it.

The upload directory comes from BENCH_UPLOAD_DIR; run with
`uvicorn tuspyserver_app:app` from this directory in tuspyserver's own venv.
"""

import os

from fastapi import FastAPI
from tuspyserver import create_tus_router

app = FastAPI()
app.include_router(create_tus_router(prefix="files", files_dir=os.environ["BENCH_UPLOAD_DIR"]))
