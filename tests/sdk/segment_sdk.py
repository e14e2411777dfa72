"""Sends events to a Sequin server with Segment's own Python SDK (segment-analytics-python).

Usage: python segment_sdk.py HOST WRITE_KEY USERS
Prints a JSON summary; exits 1 if the SDK reported any error.
"""

import json
import sys

import segment.analytics as analytics

host, write_key, users = sys.argv[1], sys.argv[2], int(sys.argv[3])
errors = []
analytics.write_key = write_key
analytics.host = host
analytics.gzip = True  # Segment's SDKs may compress; the server must accept it
analytics.max_retries = 2
analytics.on_error = lambda error, items: errors.append(repr(error))

sent = 0
for u in range(users):
    user = f"sdk-user-{u}"
    anon = f"sdk-anon-{u}"
    # Anonymous browsing, then sign-up: identify links the anonymous id to the user.
    analytics.page(anonymous_id=anon, category="shop", name="pricing", properties={"plan": "pro"})
    analytics.track(anonymous_id=anon, event="product_view", properties={"product_id": u % 3})
    analytics.identify(user_id=user, anonymous_id=anon, traits={"plan": "free"})
    analytics.track(user_id=user, event="checkout_start", properties={"step": 1})
    sent += 4
    if u % 2 == 0:
        analytics.track(user_id=user, event="purchase", properties={"amount": 10.5 + u})
        sent += 1
    analytics.screen(user_id=user, name="receipt")
    analytics.group(user_id=user, group_id="acme", traits={"size": 12})
    analytics.alias(previous_id=f"old-{u}", user_id=user)
    sent += 3

analytics.flush()
analytics.shutdown()
print(json.dumps({"sent": sent, "errors": errors}))
sys.exit(1 if errors else 0)
