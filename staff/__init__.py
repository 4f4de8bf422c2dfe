"""Tools for the teaching staff: the student release, and the grader of untrusted submissions.

    python -m staff.release OUT_DIR                      the student kit (and OUT_DIR.zip)
    python -m staff.grade assignment3.zip --json results.json     one submission (run as root on Linux
                                                                  for the full sandbox)
    python -m staff.grade --batch SUBMISSIONS_DIR --csv gradebook.csv   a folder of zips, on Dask (resumable)
    python -m staff.similarity SUBMISSIONS_DIR --csv pairs.csv --html pairs.html   similar pairs
    python -m staff.gradescope asgn3_autograder.zip             the Gradescope autograder bundle
    python -m staff.sweep --seeds 200                           margins of the hidden checks

What the assignment is (notebooks, questions, points, graded functions) is asgn3/assignment.py's.
Modules: markers (the START/END regions and their stubs), release, grade (the Grader and the command
line), submission (the kit a submission runs in), questions/ (each question's hidden checks), judging
(checks, comparisons, bounds), protocol (the job files between the grader and its runner), runner (the
worker, trusted or in the sandbox), sandbox (run untrusted code: the threat model and its levels), jail
(the supervisor of one run), landlock and seccomp (what a run may touch and call), uids (fresh uids per
run), procs (processes and IPC objects from /proc), safezip (refuse unsafe zips, find the submission's
asgn3), report (table, JSON, CSV), batch (a folder on Dask), gradescope (the bundle and its grading
there), similarity (the similarity report), sweep (the checks of the reference over many seeds: worst
error, bound, margin).
Nothing in asgn3 imports this package, and the student kit does not contain it.
"""
