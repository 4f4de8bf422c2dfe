"""Tools for the teaching staff: the student release, and the grader of untrusted submissions.

Nothing in asgn3 imports this package, and the student kit made by `python -m staff.release` does not
contain it: the hidden checks of the grader live here.
"""
