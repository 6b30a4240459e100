"""Pushes one gauge through Python's prometheus_client, the way Python batch jobs do.

    pusher.py URL push|pushadd|delete JOB VALUE [NAME=VALUE...]

Basic-auth credentials come from PUSH_USER and PUSH_PASSWORD when set. Exit status 0 on success; on failure the
exception's type and text are printed on stderr and the status is 1.
"""
import os
import sys

from prometheus_client import CollectorRegistry, Gauge, delete_from_gateway, push_to_gateway, pushadd_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler


def main():
    url, action, job, value = sys.argv[1:5]
    grouping = dict(pair.split("=", 1) for pair in sys.argv[5:])
    registry = CollectorRegistry()
    Gauge("e2e_value", "The value an end-to-end spec pushed.", registry=registry).set(float(value))
    user = os.environ.get("PUSH_USER")
    if user:
        def handler(url, method, timeout, headers, data):
            return basic_auth_handler(url, method, timeout, headers, data, user, os.environ["PUSH_PASSWORD"])
    else:
        handler = default_handler
    try:
        if action == "push":
            push_to_gateway(url, job=job, registry=registry, grouping_key=grouping, handler=handler)
        elif action == "pushadd":
            pushadd_to_gateway(url, job=job, registry=registry, grouping_key=grouping, handler=handler)
        elif action == "delete":
            delete_from_gateway(url, job=job, grouping_key=grouping, handler=handler)
        else:
            raise ValueError("unknown action %r" % action)
    except Exception as error:  # the spec reads what the user would see
        print("%s: %s" % (type(error).__name__, error), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
