"""How a grading is reported: Gradescope-shaped entries, the text table (batch gradebooks: staff/batch.py).

The questions, their titles and their order are the manifest's (asgn3/assignment.py).
"""

from asgn3.assignment import QUESTIONS, question


def test_entry(check, fraction, text):
    """One Gradescope test entry: name, score, max_score, output (and the question, for the gradebook)."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    return {
        "name": f"{check.question} {question(check.question).title}: {check.name}",
        "score": round(check.points * fraction, 2),
        "max_score": check.points,
        "status": "passed" if fraction == 1.0 else "failed",
        "output": text,
        "question": check.question,
    }


def regular_maximum(result):
    """The most a result's tests give without extra credit (100 for a whole grading)."""
    return sum(t["max_score"] for t in result["tests"] if not question(t["question"]).extra_credit)


def question_scores(result):
    """{question key: [score, max_score]} from a result dict, every question of the manifest."""
    totals = {q.key: [0.0, 0.0] for q in QUESTIONS}
    for test in result["tests"]:
        totals[test["question"]][0] += test["score"]
        totals[test["question"]][1] += test["max_score"]
    return totals


def format_table(result, title=""):
    """The result as a text table: one line per check, then the questions and the total."""
    lines = [title] if title else []
    width = max([len(t["name"]) for t in result["tests"]] + [20])
    lines.append(f"{'check':<{width}}  {'points':>11}  result")
    for test in result["tests"]:
        failures = [line for line in test["output"].splitlines() if not line.endswith(" OK")]
        why = f"  {failures[0][:100]}" if test["status"] != "passed" and failures else ""
        lines.append(
            f"{test['name']:<{width}}  {test['score']:>5g} / {test['max_score']:<3g}  {test['status']}{why}"
        )
    for key, (score, maximum) in question_scores(result).items():
        if maximum:
            extra = " (extra credit)" if question(key).extra_credit else ""
            lines.append(f"{key} {question(key).title}{extra}: {score:g} / {maximum:g}")
    # Extra credit adds to the score, not to the maximum (on Gradescope too: its total is set to 100).
    lines.append(f"TOTAL: {result['score']:g} / {regular_maximum(result):g}")
    lines.append(result["output"])
    return "\n".join(lines)
