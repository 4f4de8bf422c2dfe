"""Tools for the teaching staff: the student release, and the grader of untrusted submissions.

    python -m staff.release OUT_DIR                      the student kit (and OUT_DIR.zip)
    python -m staff.grade assignment3.zip --json results.json     one submission (run as root on Linux
                                                                  for the full sandbox)
    python -m staff.grade SUBMISSIONS_DIR --csv gradebook.csv     a folder of zips, in parallel

Modules: markers (the START/END regions and their stubs), release, safezip (refuse unsafe zips),
sandbox (run untrusted code), runner (the worker the sandbox runs), checks (the hidden checks), grade.
Nothing in asgn3 imports this package, and the student kit does not contain it.
"""
