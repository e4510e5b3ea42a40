"""Runs one entry point's command line many times in one process, as the shell would run
it once each (`cli.run`, its usage errors and exit codes), and reports what each printed
on stderr and the status it exited with. Starting TensorFlow once instead of per case
keeps a table-driven test of bad input fast.

    python tests/cli_driver.py experiments.pretrain CASES.json RESULTS.json

CASES.json is a list of argument lists; RESULTS.json gets [{"code", "stderr"}, ...].
"""

import contextlib
import importlib
import io
import json
import pathlib
import sys
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import flags  # noqa: E402

from experiments import cli  # noqa: E402


def main(module_name: str, cases_path: str, results_path: str) -> None:
    module = importlib.import_module(module_name)
    results = []
    for argv in json.loads(pathlib.Path(cases_path).read_text()):
        flags.FLAGS.unparse_flags()
        sys.argv = [module_name, *argv]
        stderr, code = io.StringIO(), None
        with contextlib.redirect_stderr(stderr):
            try:
                cli.run(module.main)
            except SystemExit as exit:
                code = exit.code
            except BaseException:  # what the shell would show: a traceback and status 1
                traceback.print_exc()
                code = 1
        results.append({"code": 0 if code is None else code, "stderr": stderr.getvalue()})
    pathlib.Path(results_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
