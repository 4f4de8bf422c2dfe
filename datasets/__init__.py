"""The kit's data tools: download scripts, the default-data builders and the training of the shipped CNN.

Run the builders as modules from the kit's folder, e.g. `python -m datasets.build_defaults`.
"""
