"""Run one script in the sandbox and print the RunResult as JSON (the sandbox tests run this at each level).

python probe_driver.py KIT_DIR JOB_DIR SCRIPT [LIMITS_JSON]
"""

import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout: staff/ is not installed

from staff.sandbox import Limits, isolation, run_untrusted  # noqa: E402

if __name__ == "__main__":
    limits = Limits(**json.loads(sys.argv[4])) if len(sys.argv) > 4 else Limits()
    result = run_untrusted(sys.argv[1], sys.argv[2], sys.argv[3], limits)
    print(json.dumps({"level": isolation(), **dataclasses.asdict(result)}))
