"""`dse dashboard`: optuna-dashboard, the Optuna project's web UI (history, Pareto front, parallel
coordinates, importance, trial table), served on a study's storage: the journal file beside the
study, a journal at a path, or a database URL."""
from __future__ import annotations

import sys

from dse.errors import UserInputError, redact
from dse.study import Study


def serve(study: Study, host: str, port: int) -> None:
    """Serve the dashboard of `study` on `host`:`port` until interrupted; the storage must hold the study."""
    if port > 65535:
        raise UserInputError("--port", port, "a TCP port from 1 to 65535")
    try:
        import optuna_dashboard
    except ImportError:
        raise UserInputError("dse dashboard", "optuna-dashboard", "installed: pip install optuna-dashboard "
                             "(or pip install 'dse[scale]')") from None
    storage = study.existing_storage()
    print(f"study {study.spec.name} ({redact(study.url)}): http://{host}:{port}/dashboard/ (Ctrl-C stops it)",
          flush=True)
    try:
        optuna_dashboard.run_server(storage, host=host, port=port)
    except OSError as exc:
        raise UserInputError("--port", port, f"a port free to listen on at {host} ({exc.strerror or exc})") from None
    except KeyboardInterrupt:
        sys.stderr.write("\n")
