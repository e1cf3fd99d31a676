"""Rule files the rule tests share."""

# Errors above 5 in a minute fire after 2 minutes pending; below 2 they resolve. Tests vary
# ``for`` and ``interval`` with str.replace.
THRESHOLD = """
rules:
  - name: many-errors
    type: threshold
    kinds: [error]
    window: 60s
    interval: 60s
    for: 120s
    condition: {op: ">", value: 5}
    recovery: {op: "<", value: 2}
    notify: [hook]
"""
