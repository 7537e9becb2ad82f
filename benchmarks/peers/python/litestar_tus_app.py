"""litestar-tus's plugin on a bare Litestar app, endpoint /files, as the benchmark runs it.

The upload directory comes from BENCH_UPLOAD_DIR; run with
`uvicorn litestar_tus_app:app` from this directory in litestar-tus's own venv
(litestar-tus needs Python 3.13 or later, and boto3 even for the file backend: its package imports the S3 backend).
"""

import os

from litestar import Litestar
from litestar_tus import TUSConfig, TUSPlugin

app = Litestar(
    plugins=[TUSPlugin(TUSConfig(upload_dir=os.environ["BENCH_UPLOAD_DIR"], path_prefix="/files", max_size=None))],
    # Litestar refuses bodies over 10 MB by default, which would cut every big PATCH.
    request_max_body_size=None,
)
