"""will.py PORT PROTOCOL CLIENT_ID WILL_TOPIC WILL_PAYLOAD MODE

Connects with a QoS 1 will and prints CONNECTED. MODE `hold` then keeps the
connection open until the process is killed (the test SIGKILLs it, so the
socket goes away without a DISCONNECT and the will must be published);
MODE `disconnect` disconnects normally (no will) and prints DISCONNECTED."""

import sys
import time

from common import Client, fail


def main():
    port, protocol, client_id, topic, payload, mode = sys.argv[1:7]
    client = Client(protocol, client_id, will=(topic, payload, 1))
    client.connect(int(port))
    print("CONNECTED", flush=True)
    if mode == "hold":
        # Bounded, so a forgotten process cannot outlive the test run for long.
        time.sleep(60)
        fail("was not killed within 60s")
    elif mode == "disconnect":
        client.disconnect()
        print("DISCONNECTED", flush=True)
    else:
        fail(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
